// Release manifests: signing, canonical bytes and ids, the sealed payload (cross-checked with an
// independent @noble implementation of docs/protocol.md §1), and every refusal as a typed error.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { gcm } from '@noble/ciphers/aes.js'
import { canonicalize } from '../../src/core/canonical.js'
import { ChunkTable } from '../../src/core/chunk-table.js'
import { ShoalError } from '../../src/core/errors.js'
import { generateKeyPair, keyPairFromSecret, type KeyPair } from '../../src/core/keys.js'
import { createRoot, decodeRoot, verifyRoot } from '../../src/core/root.js'
import { signHead, decodeHead, verifyHead } from '../../src/core/head.js'
import { encodeEnvelope, signEnvelope } from '../../src/core/signed.js'
import {
  buildManifest, decodeManifest, verifyManifest, openPayload, manifestId, manifestTable, checkRelativePath, checkSymlinkTarget, validatePackageName, validateVersion,
  ManifestExpiredError, PayloadDecryptError, InvalidPathError, MAX_MANIFEST_BYTES,
  type ManifestPayload, type ManifestBody, type FileEntry
} from '../../src/core/manifest.js'
import { code, thrown } from '../helpers/errors.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const now = new Date('2026-06-01T00:00:00Z')
const later = new Date('2027-06-01T00:00:00Z')
const contentKey = new Uint8Array(32).fill(7)
const hex = (c: string): string => c.repeat(64)


const rootKeys = [generateKeyPair(), generateKeyPair()]
const publisherKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()]
const onlineKeys = [generateKeyPair()]
const root = createRoot({ rootKeys, rootThreshold: 1, publisherKeys, publisherThreshold: 2, onlineKeys, expires: later })

const payload: ManifestPayload = {
  files: [
    { path: 'bin', type: 'dir', mode: 0o755, size: 0 },
    { path: 'bin/x', type: 'file', mode: 0o755, size: 10, sha256: hex('a'), chunks: [{ index: 0, key: hex('b'), size: 6 }, { index: 1, key: hex('d'), size: 4 }] },
    { path: 'empty', type: 'file', mode: 0o644, size: 0, sha256: hex('e'), chunks: [] },
    { path: 'link', type: 'symlink', mode: 0o777, size: 0, target: 'bin/x' },
    { path: 'same', type: 'file', mode: 0o600, size: 6, sha256: hex('f'), chunks: [{ index: 0, key: hex('b'), size: 6 }] }
  ],
  hooks: { postinstall: 'echo installed\n' },
  notes: 'first release'
}
const chunks = [{ cid: hex('c'), size: 40 }, { cid: hex('1'), size: 34 }]

type BuildArgs = Parameters<typeof buildManifest>[0]
function build (o: Partial<BuildArgs> = {}) {
  return buildManifest({
    package: 'app', version: '1.2.3', seq: 1, channel: 'stable', created: now, expires: later,
    chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, chunks, payload, contentKey, signers: publisherKeys.slice(0, 2), ...o
  })
}

/** The payload seal of docs/protocol.md §1, re-implemented with @noble only. */
function sealRaw (plain: Uint8Array, key: Uint8Array, b: { package: string, version: string, seq: number, channel: string }, nonce = new Uint8Array(12).fill(3)): ManifestBody['payload'] {
  const k = hkdf(sha256, key, undefined, enc.encode('shoal/v1/manifest-payload'), 32)
  const aad = enc.encode(`{"channel":${JSON.stringify(b.channel)},"package":${JSON.stringify(b.package)},"seq":${b.seq},"version":${JSON.stringify(b.version)}}`)
  return { alg: 'aes-256-gcm', nonce: Buffer.from(nonce).toString('base64'), ciphertext: Buffer.from(gcm(k, nonce, aad).encrypt(plain)).toString('base64') }
}

/** A manifest whose payload skipped the builder's checks: what a stolen publisher key could sign. */
function hostile (files: unknown, signers: KeyPair[] = publisherKeys.slice(0, 2)) {
  const body = structuredClone(decodeManifest(build().bytes).signed)
  body.payload = sealRaw(enc.encode(JSON.stringify({ files })), contentKey, body)
  return decodeManifest(encodeEnvelope(signEnvelope('manifest', body, signers)))
}

describe('manifest', () => {
  it('builds canonical bytes that decode, verify and open to the same payload', () => {
    const m = build()
    expect(m.id).toBe(createHash('sha256').update(m.bytes).digest('hex'))
    expect(manifestId(m.bytes)).toBe(m.id)
    expect(dec.decode(m.bytes)).toBe(canonicalize(m.manifest))
    const back = decodeManifest(m.bytes)
    expect(back).toEqual(m.manifest)
    verifyManifest(back, root, now, { expectPackage: 'app', expectChannel: 'stable' })
    expect(openPayload(back, contentKey)).toEqual(payload)
    const text = dec.decode(m.bytes)
    for (const secret of ['bin/x', hex('b'), 'echo installed', 'first release']) expect(text).not.toContain(secret)
  })

  it('lets go of the decoded bytes once verified (a large manifest is held through its download), and verifies again all the same', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const m = build()
    let bytes: Uint8Array | undefined = Uint8Array.from(m.bytes) // its own ArrayBuffer, referenced only here
    const decoded = decodeManifest(bytes)
    const held = new WeakRef(bytes.buffer)
    bytes = undefined
    verifyManifest(decoded, root, now)
    // WeakRefs stay alive through the job that made them: collect in a later one.
    await new Promise(resolve => setTimeout(resolve, 0))
    gc()
    expect(held.deref()).toBeUndefined()
    // Verifying again encodes the body again: still the same signed bytes, still good.
    verifyManifest(decoded, root, now)
    expect(code(() => verifyManifest(decoded, root, later))).toBe('ERR_EXPIRED')
  })

  it('manifestTable keeps what a download and an install read, not the sealed payload or the signatures', () => {
    const m = build({ rollout: { formatVersion: 1, rings: [{ ring: 'canary', approval: true }] } }).manifest
    const t = manifestTable(m)
    const { chunks, ...rest } = t.signed
    expect(rest).toEqual({ package: 'app', version: '1.2.3', rollout: m.signed.rollout })
    expect(chunks).toBeInstanceOf(ChunkTable) // compact: src/core/chunk-table.ts
    expect([...chunks]).toEqual(m.signed.chunks)
    expect(Object.keys(t)).toEqual(['signed'])
    expect(manifestTable(build().manifest).signed).not.toHaveProperty('rollout')
  })

  it('seals the payload exactly as specified (independent @noble implementation)', () => {
    const m = build().manifest.signed
    const k = hkdf(sha256, contentKey, undefined, enc.encode('shoal/v1/manifest-payload'), 32)
    const aad = enc.encode('{"channel":"stable","package":"app","seq":1,"version":"1.2.3"}')
    const plain = gcm(k, Buffer.from(m.payload.nonce, 'base64'), aad).decrypt(Buffer.from(m.payload.ciphertext, 'base64'))
    expect(dec.decode(plain)).toBe(canonicalize(payload))
    // And the other way round: a payload sealed by the spec opens with openPayload.
    const body = structuredClone(m)
    body.payload = sealRaw(enc.encode(canonicalize(payload)), contentKey, body)
    expect(openPayload(decodeManifest(encodeEnvelope(signEnvelope('manifest', body, publisherKeys))), contentKey)).toEqual(payload)
    // A fresh random nonce each time.
    expect(build().manifest.signed.payload.nonce).not.toBe(m.payload.nonce)
  })

  it('refuses below threshold, wrong keys, wrong package or channel', () => {
    expect(code(() => verifyManifest(build({ signers: [publisherKeys[0]!] }).manifest, root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyManifest(build({ signers: [generateKeyPair(), generateKeyPair()] }).manifest, root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyManifest(build({ signers: [...rootKeys, ...onlineKeys] }).manifest, root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    verifyManifest(build({ signers: [publisherKeys[2]!, publisherKeys[0]!] }).manifest, root, now)
    const m = build().manifest
    expect(code(() => verifyManifest(m, root, now, { expectPackage: 'other' }))).toBe('ERR_WRONG_PACKAGE')
    expect(code(() => verifyManifest(m, root, now, { expectChannel: 'beta' }))).toBe('ERR_WRONG_PACKAGE')
  })

  it('counts a duplicated signature once and ignores a bad one beside enough good ones', () => {
    const one = build({ signers: [publisherKeys[0]!] }).manifest
    expect(code(() => verifyManifest({ ...one, signatures: [one.signatures[0]!, one.signatures[0]!] }, root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    const m = decodeManifest(build().bytes)
    m.signatures.unshift({ keyid: publisherKeys[2]!.keyid, sig: Buffer.alloc(64, 9).toString('base64') })
    verifyManifest(decodeManifest(encodeEnvelope(m)), root, now)
  })

  it('refuses an expired manifest (grace applies) and one checked against an expired root', () => {
    const m = build({ created: new Date('2026-05-01T00:00:00Z'), expires: new Date('2026-05-31T23:59:00Z') }).manifest
    const err = thrown(() => verifyManifest(m, root, now))
    expect(err).toBeInstanceOf(ManifestExpiredError)
    expect(err.code).toBe('ERR_EXPIRED')
    verifyManifest(m, root, now, { graceSeconds: 61 })
    expect(code(() => verifyManifest(m, root, now, { graceSeconds: 60 }))).toBe('ERR_EXPIRED')
    expect(code(() => verifyManifest(build({ expires: new Date('2030-01-01T00:00:00Z') }).manifest, root, new Date('2028-01-01T00:00:00Z')))).toBe('ERR_EXPIRED')
  })

  it('refuses every tampered field of the signed body, and reordered chunks', () => {
    const base = JSON.parse(dec.decode(build().bytes))
    const edits: Array<(s: any) => void> = [ // eslint-disable-line @typescript-eslint/no-explicit-any
      s => { s.package = 'other' }, s => { s.version = '1.2.4' }, s => { s.seq = 2 }, s => { s.channel = 'beta' },
      s => { s.created = '2026-01-01T00:00:00Z' }, s => { s.expires = '2099-01-01T00:00:00Z' },
      s => { s.chunker.avgSize = 8192 }, s => { s.rollout = { formatVersion: 1, rings: [{ ring: 'canary', approval: true }] } },
      s => { s.chunks.reverse() }, s => { s.chunks[0].size = 41 }, s => { s.chunks[1].cid = hex('2') }, s => { s.chunks.pop() },
      s => { s.payload.nonce = Buffer.alloc(12, 1).toString('base64') },
      s => { s.payload.ciphertext = Buffer.from(Buffer.from(s.payload.ciphertext, 'base64').map((b: number, i: number) => i === 0 ? b ^ 1 : b)).toString('base64') }
    ]
    for (const edit of edits) {
      const copy = structuredClone(base)
      edit(copy.signed)
      const m = decodeManifest(enc.encode(canonicalize(copy)))
      expect(code(() => verifyManifest(m, root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    }
    // The rollout policy is signed like everything else.
    const withRollout = build({ rollout: { formatVersion: 1, rings: [{ ring: 'canary', notBefore: '2026-06-01T00:00:00Z' }] } })
    verifyManifest(decodeManifest(withRollout.bytes), root, now)
    const r = JSON.parse(dec.decode(withRollout.bytes))
    r.signed.rollout.rings[0].ring = 'broad'
    expect(code(() => verifyManifest(decodeManifest(enc.encode(canonicalize(r))), root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
  })

  it('refuses malformed input with typed errors: one spelling per manifest, caps before parsing', () => {
    const good = build().bytes
    const base = JSON.parse(dec.decode(good))
    const variant = (edit: (x: any) => void): Uint8Array => { const c = structuredClone(base); edit(c); return enc.encode(canonicalize(c, { numbers: 'any' })) } // eslint-disable-line @typescript-eslint/no-explicit-any
    const text = dec.decode(good)
    const cases: Array<[string, Uint8Array, string]> = [
      ['pretty-printed', enc.encode(JSON.stringify(base, null, 2)), 'ERR_DECODE'],
      ['keys out of order', enc.encode(JSON.stringify({ signed: base.signed, signatures: base.signatures })), 'ERR_DECODE'],
      ['duplicate key', enc.encode(text.replace('"seq":1,', '"seq":1,"seq":1,')), 'ERR_DECODE'],
      ['escaped letter', enc.encode(text.replace('"package":"app"', '"package":"\\u0061pp"')), 'ERR_DECODE'],
      ['number spelling', enc.encode(text.replace('"seq":1,', '"seq":1.0,')), 'ERR_DECODE'],
      ['trailing newline', enc.encode(text + '\n'), 'ERR_DECODE'],
      ['unknown field', variant(x => { x.signed.extra = true }), 'ERR_DECODE'],
      ['unknown payload field', variant(x => { x.signed.payload.tag = '' }), 'ERR_DECODE'],
      ['wrong _type', variant(x => { x.signed._type = 'root' }), 'ERR_DECODE'],
      ['unknown formatVersion', variant(x => { x.signed.formatVersion = 2 }), 'ERR_DECODE'],
      ['unknown algorithm', variant(x => { x.signed.payload.alg = 'chacha20-poly1305' }), 'ERR_DECODE'],
      ['missing chunks', variant(x => { delete x.signed.chunks }), 'ERR_DECODE'],
      ['repeated blob', variant(x => { x.signed.chunks.push(x.signed.chunks[0]) }), 'ERR_DECODE'],
      ['blob too small', variant(x => { x.signed.chunks[0].size = 29 }), 'ERR_DECODE'],
      ['upper-case cid', variant(x => { x.signed.chunks[0].cid = hex('C') }), 'ERR_DECODE'],
      ['bad package', variant(x => { x.signed.package = 'App' }), 'ERR_DECODE'],
      ['bad channel', variant(x => { x.signed.channel = '-x' }), 'ERR_DECODE'],
      ['bad version', variant(x => { x.signed.version = '1.2' }), 'ERR_DECODE'],
      ['seq 0', variant(x => { x.signed.seq = 0 }), 'ERR_DECODE'],
      ['negative seq', variant(x => { x.signed.seq = -3 }), 'ERR_DECODE'],
      ['fractional seq', variant(x => { x.signed.seq = 1.5 }), 'ERR_DECODE'],
      ['unsafe seq', enc.encode(text.replace('"seq":1,', '"seq":9007199254740993,')), 'ERR_DECODE'],
      ['unsafe chunk size', enc.encode(text.replace('"size":40', '"size":18014398509481984')), 'ERR_DECODE'],
      ['fraction in rollout', variant(x => { x.signed.rollout = { percent: 12.5 } }), 'ERR_DECODE'],
      ['rollout without formatVersion', variant(x => { x.signed.rollout = { rings: [{ ring: 'canary', approval: true }] } }), 'ERR_DECODE'],
      ['rollout ring with two gates', variant(x => { x.signed.rollout = { formatVersion: 1, rings: [{ ring: 'canary', approval: true, notBefore: '2026-06-01T00:00:00Z' }] } }), 'ERR_DECODE'],
      ['rollout ring listed twice', variant(x => { x.signed.rollout = { formatVersion: 1, rings: [{ ring: 'a', approval: true }, { ring: 'a', approval: true }] } }), 'ERR_DECODE'],
      ['chunker out of order', variant(x => { x.signed.chunker.minSize = 70000 }), 'ERR_DECODE'],
      ['short nonce', variant(x => { x.signed.payload.nonce = Buffer.alloc(8).toString('base64') }), 'ERR_DECODE'],
      ['non-canonical base64', variant(x => { x.signed.payload.ciphertext = 'A'.repeat(21) + 'B==' }), 'ERR_DECODE'],
      ['ciphertext shorter than a tag', variant(x => { x.signed.payload.ciphertext = Buffer.alloc(15).toString('base64') }), 'ERR_DECODE'],
      ['expires before created', variant(x => { x.signed.expires = '2020-01-01T00:00:00Z' }), 'ERR_DECODE'],
      ['not an envelope', enc.encode('[]'), 'ERR_DECODE'],
      ['empty', new Uint8Array(0), 'ERR_DECODE'],
      ['oversize', new Uint8Array(MAX_MANIFEST_BYTES + 1).fill(0x7b), 'ERR_OVERSIZE']
    ]
    for (const [name, bytes, want] of cases) {
      try { decodeManifest(bytes) } catch (err) { expect(err, name).toBeInstanceOf(ShoalError); expect((err as ShoalError).code, name).toBe(want); continue }
      throw new Error(`${name}: accepted`)
    }
    for (const len of [1, 10, good.length >> 1, good.length - 1]) expect(code(() => decodeManifest(good.subarray(0, len)))).toBe('ERR_DECODE')
  })

  it('turns random bytes and mutations of a valid file into typed errors, never a forgery', () => {
    const good = build().bytes
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => { code(() => decodeManifest(b)); return true }), { numRuns: 1500 })
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => { code(() => decodeManifest(enc.encode(s))); return true }), { numRuns: 500 })
    fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const m = Uint8Array.from(good); m[i] = m[i]! ^ x
      try { verifyManifest(decodeManifest(m), root, now) } catch (err) { expect(err).toBeInstanceOf(ShoalError); return true }
      return false // a mutation that still verifies would be a forgery
    }), { numRuns: 3000 })
    // Splices of two valid manifests' bytes (same keys, different content) never verify either.
    const other = build({ version: '1.2.4', seq: 2 }).bytes
    fc.assert(fc.property(fc.integer({ min: 1, max: Math.min(good.length, other.length) - 1 }), (cut) => {
      const m = Buffer.concat([good.subarray(0, cut), other.subarray(cut)])
      if (m.equals(Buffer.from(other)) || m.equals(Buffer.from(good))) return true // a cut where the two agree
      try { verifyManifest(decodeManifest(m), root, now) } catch (err) { expect(err).toBeInstanceOf(ShoalError); return true }
      return false
    }), { numRuns: 500 })
  })

  it('refuses a payload under the wrong content key or moved to another release', () => {
    const m = build().manifest
    const err = thrown(() => openPayload(m, new Uint8Array(32).fill(8)))
    expect(err).toBeInstanceOf(PayloadDecryptError)
    expect(err.code).toBe('ERR_PAYLOAD_DECRYPT')
    expect(code(() => openPayload(m, new Uint8Array(16)))).toBe('ERR_INVALID_ARGUMENT')
    // The publisher re-signs release 1.2.4 around 1.2.3's sealed payload: the AAD no longer matches.
    const body = { ...build({ version: '1.2.4', seq: 2 }).manifest.signed, payload: m.signed.payload }
    const moved = decodeManifest(encodeEnvelope(signEnvelope('manifest', body, publisherKeys)))
    verifyManifest(moved, root, now)
    expect(code(() => openPayload(moved, contentKey))).toBe('ERR_PAYLOAD_DECRYPT')
  })

  it('refuses unsafe paths wherever they come from', () => {
    const bad = ['', '/x', '/etc/passwd', '../x', 'a/../../b', 'a/..', './a', 'a/./b', 'a//b', 'a/', 'a\\b', '..\\x', 'a\0b', 'a\nb', 'a\x7fb',
      'a\ud800b', 'x'.repeat(4097), `${'y'.repeat(256)}/z`, 'é'.repeat(2049)]
    for (const p of bad) {
      expect(thrown(() => checkRelativePath(p)), JSON.stringify(p)).toBeInstanceOf(InvalidPathError)
      const files = [{ path: p, type: 'dir', mode: 0o755, size: 0 }]
      // The builder refuses to sign it; an endpoint refuses it if a stolen key signed it anyway.
      expect(code(() => build({ payload: { files: files as FileEntry[] } }))).toBe('ERR_INVALID_PATH')
      expect(code(() => openPayload(hostile(files), contentKey))).toBe('ERR_INVALID_PATH')
    }
    for (const p of ['a', 'a/b.c/d-e_f', '.hidden', 'a..b', '...', 'ü/日本', 'x'.repeat(255), `${'x'.repeat(255)}/${'y'.repeat(255)}`]) checkRelativePath(p)
  })

  it('refuses symlinks that leave the tree and entries under a file or symlink', () => {
    for (const [path, target] of [['l', '../x'], ['a/l', '../../x'], ['l', '/etc'], ['l', ''], ['a/b/l', 'c/../../../../x'], ['l', 'a\0b']] as const) {
      expect(code(() => checkSymlinkTarget(path, target)), `${path} -> ${target}`).toBe('ERR_INVALID_PATH')
    }
    for (const [path, target] of [['l', 'x'], ['a/l', '../x'], ['a/b/l', '../../x'], ['l', './x/.'], ['l', 'a//b']] as const) checkSymlinkTarget(path, target)
    const link = { path: 'l', type: 'symlink', mode: 0o777, size: 0, target: 'd' }
    const under = { path: 'l/passwd', type: 'file', mode: 0o644, size: 0, sha256: hex('a'), chunks: [] }
    expect(code(() => openPayload(hostile([link, under]), contentKey))).toBe('ERR_INVALID_PATH')
    expect(code(() => openPayload(hostile([{ ...under, path: 'f' }, { ...under, path: 'f/g' }]), contentKey))).toBe('ERR_INVALID_PATH')
    expect(code(() => openPayload(hostile([{ ...link, target: '../../etc' }]), contentKey))).toBe('ERR_INVALID_PATH')
  })

  it('validates every payload field', () => {
    const file = (o: Record<string, unknown> = {}) => ({ path: 'f', type: 'file', mode: 0o644, size: 6, sha256: hex('a'), chunks: [{ index: 0, key: hex('b'), size: 6 }], ...o })
    const cases: Array<[string, unknown, string]> = [
      ['listed twice', [file(), file()], 'ERR_INVALID_PATH'],
      ['out of order', [file({ path: 'g' }), file()], 'ERR_INVALID_PATH'],
      ['UTF-16 order is not byte order', [file({ path: '\u{1f600}' }), file({ path: '\uff21' })], 'ERR_INVALID_PATH'],
      ['chunk index past the table', [file({ chunks: [{ index: 2, key: hex('b'), size: 6 }] })], 'ERR_DECODE'],
      ['negative chunk index', [file({ chunks: [{ index: -1, key: hex('b'), size: 6 }] })], 'ERR_DECODE'],
      ['sizes do not add up', [file({ size: 7 })], 'ERR_DECODE'],
      ['empty chunk', [file({ size: 0, chunks: [{ index: 0, key: hex('b'), size: 0 }] })], 'ERR_DECODE'],
      ['one index, two keys', [file(), file({ path: 'g', chunks: [{ index: 0, key: hex('c'), size: 6 }] })], 'ERR_DECODE'],
      ['mode beyond 0o7777', [file({ mode: 0o10000 })], 'ERR_DECODE'],
      ['fractional mode', [file({ mode: 420.5 })], 'ERR_DECODE'],
      ['missing sha256', [file({ sha256: undefined })], 'ERR_DECODE'],
      ['file with a target', [file({ target: 'x' })], 'ERR_DECODE'],
      ['dir with chunks', [{ path: 'd', type: 'dir', mode: 0o755, size: 0, chunks: [] }], 'ERR_DECODE'],
      ['dir with a size', [{ path: 'd', type: 'dir', mode: 0o755, size: 1 }], 'ERR_DECODE'],
      ['symlink without target', [{ path: 'l', type: 'symlink', mode: 0o777, size: 0 }], 'ERR_DECODE'],
      ['unknown type', [{ path: 'p', type: 'fifo', mode: 0o644, size: 0 }], 'ERR_DECODE'],
      ['unknown field', [file({ owner: 'root' })], 'ERR_DECODE'],
      ['not a list', { f: file() }, 'ERR_DECODE']
    ]
    for (const [name, files, want] of cases) {
      expect(code(() => openPayload(hostile(files), contentKey)), name).toBe(want)
      expect(code(() => build({ payload: { files } as ManifestPayload })), name).toBe(want)
    }
    expect(code(() => build({ payload: { ...payload, hooks: { preinstall: 'x', postrm: 'y' } as ManifestPayload['hooks'] } }))).toBe('ERR_DECODE')
    expect(code(() => build({ payload: { ...payload, notes: 'x'.repeat(1024 * 1024 + 1) } }))).toBe('ERR_DECODE')
  })

  it('validates names, versions and arguments before signing', () => {
    for (const n of ['app', 'a', '0day', 'my-app.core_2', 'x'.repeat(128)]) expect(validatePackageName(n)).toBe(n)
    for (const n of ['', 'App', '-x', '.x', '_x', 'a b', 'a/b', 'x'.repeat(129), 'é']) expect(code(() => validatePackageName(n)), n).toBe('ERR_INVALID_ARGUMENT')
    for (const v of ['0.0.0', '1.2.3', '10.20.30', '1.0.0-rc.1', '1.0.0-alpha+build.5', '1.0.0+20130313144700']) expect(validateVersion(v)).toBe(v)
    for (const v of ['1', '1.2', '01.2.3', '1.2.3-', '1.2.3-01', 'v1.2.3', '1.2.3 ', '1.2.3+', `1.2.3-${'a'.repeat(130)}`]) expect(code(() => validateVersion(v)), v).toBe('ERR_INVALID_ARGUMENT')
    const bad: Array<Partial<BuildArgs>> = [
      { package: 'App' }, { channel: 'Stable' }, { version: 'latest' }, { seq: 0 }, { seq: 2 ** 53 }, { seq: 1.5 },
      { expires: new Date('2020-01-01T00:00:00Z') }, { created: new Date(NaN) },
      { chunker: { minSize: 10, avgSize: 5, maxSize: 20 } }, { chunks: [{ cid: 'xyz', size: 40 }] }, { chunks: [{ cid: hex('c'), size: 10 }] },
      { contentKey: new Uint8Array(31) }
    ]
    for (const o of bad) expect(code(() => build(o)), JSON.stringify(o)).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => build({ chunks: [chunks[0]!, chunks[0]!] }))).toBe('ERR_DECODE') // the same blob twice in the table
  })
})

describe('worked example of docs/protocol.md §1 (byte for byte)', () => {
  // Keys from fixed secrets 01…01, 02…02, 03…03; the content key of docs/protocol.md §4.6; the blob of
  // its example 1; payload nonce 000102…0b. Ed25519 is deterministic, so every byte is reproducible.
  const rootKey = keyPairFromSecret(new Uint8Array(32).fill(1))
  const pubKey = keyPairFromSecret(new Uint8Array(32).fill(2))
  const onKey = keyPairFromSecret(new Uint8Array(32).fill(3))
  const ck = Buffer.from('6d47c7b73606dd0708573051a7352c0213ef64beb2dfccff2058fe02f31e7631', 'hex')

  it('reproduces root.json, the manifest and the head', () => {
    expect([rootKey.keyid, pubKey.keyid, onKey.keyid]).toEqual([
      '5c0f04a2d76b28225e41faed1f259b925b365f2be6833b97cf993e4f85436019',
      'cacd4b437fbc1f006147fda371323cf4a0060c3474f40e3f1ec1d278826b6ed6',
      'da1158d5e945cb54c3a35ca8f1d6a327b1a305920754894115dab05e68059bfb'])
    const r = createRoot({ rootKeys: [rootKey], rootThreshold: 1, publisherKeys: [pubKey], publisherThreshold: 1, onlineKeys: [onKey], expires: new Date('2027-01-01T00:00:00Z') })
    const rootBytes = encodeEnvelope(r)
    expect(rootBytes.length).toBe(1103)
    expect(manifestId(rootBytes)).toBe('2f88a2d07d8c38429973542b6ff8c8382befe15710d749bc760c3e900e5c8f56')
    verifyRoot(decodeRoot(rootBytes), now)

    const files: FileEntry[] = [{ path: 'hello.txt', type: 'file', mode: 420, size: 13, sha256: createHash('sha256').update('hello, shoal\n').digest('hex'), chunks: [{ index: 0, key: 'a3accbe58a575a7a73612a80615c87dff245e6b7ee80546dd1dc387bf5ab1df6', size: 13 }] }]
    const plain = canonicalize({ files })
    expect(plain.length).toBe(249)
    const ids = { package: 'hello', version: '1.0.0', seq: 1, channel: 'stable' }
    const body: ManifestBody = {
      _type: 'manifest', formatVersion: 1, ...ids, created: '2026-01-01T00:00:00Z', expires: '2027-01-01T00:00:00Z',
      chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, chunks: [{ cid: 'bac5a97742cbea4896ab5009718da874f5360d090db036dae3358565b326b824', size: 43 }],
      payload: sealRaw(enc.encode(plain), ck, ids, Buffer.from('000102030405060708090a0b', 'hex'))
    }
    const mBytes = encodeEnvelope(signEnvelope('manifest', body, [pubKey]))
    expect(mBytes.length).toBe(953)
    expect(manifestId(mBytes)).toBe('4ab725ecd8960619d01794036c0fe087ba8c0eb131ecd9f5ef8b8b374e32da9a')
    const m = decodeManifest(mBytes)
    verifyManifest(m, r, now)
    expect(openPayload(m, ck)).toEqual({ files })

    const h = signHead({ channel: 'stable', seq: 1, issued: new Date('2026-06-01T00:00:00Z'), expires: new Date('2026-06-02T00:00:00Z'), packages: { hello: { manifest: manifestId(mBytes), seq: 1, version: '1.0.0' } }, signers: [onKey] })
    expect(h.bytes.length).toBe(453)
    expect(h.id).toBe('d0ffcd9b688a85bc441ebed5929503fad912b2fb29c055dea782a818bed8b43b')
    verifyHead(decodeHead(h.bytes), r, new Date('2026-06-01T12:00:00Z'))
  })
})
