// Signed metadata: canonical JSON, root, manifest. Every refusal is a typed error.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { canonicalize } from '../../src/core/canonical.js'
import { generateKeyPair, decodePrivateKeyFile, encodePrivateKeyFile } from '../../src/core/keys.js'
import { createRoot, decodeRoot, verifyRoot, verifyRootUpdate } from '../../src/core/root.js'
import { encodeEnvelope, signEnvelope } from '../../src/core/signed.js'
import { buildManifest, decodeManifest, openPayload, verifyManifest, checkRelativePath, type ManifestPayload } from '../../src/core/manifest.js'
import { ShoalError } from '../../src/core/errors.js'

const enc = new TextEncoder()
const now = new Date('2026-06-01T00:00:00Z')
const later = new Date('2027-06-01T00:00:00Z')
const contentKey = new Uint8Array(32).fill(7)

function code (fn: () => unknown): string {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ShoalError); return (err as ShoalError).code }
  throw new Error('expected a refusal')
}

function fleet (publishers = 2, threshold = 2) {
  const rootKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()]
  const publisherKeys = Array.from({ length: publishers }, () => generateKeyPair())
  const online = generateKeyPair()
  const root = createRoot({ rootKeys, rootThreshold: 2, publisherKeys, publisherThreshold: threshold, onlineKeys: [online], expires: later })
  return { rootKeys, publisherKeys, online, root }
}

const payload: ManifestPayload = {
  files: [
    { path: 'bin', type: 'dir', mode: 0o755, size: 0 },
    { path: 'bin/x', type: 'file', mode: 0o755, size: 10, sha256: 'a'.repeat(64), chunks: [{ index: 0, key: 'b'.repeat(64), size: 10 }] },
    { path: 'link', type: 'symlink', mode: 0o777, size: 0, target: 'bin/x' }
  ],
  hooks: { postinstall: 'true' }
}

function manifest (signers: ReturnType<typeof generateKeyPair>[], extra: Partial<{ seq: number, expires: Date }> = {}) {
  return buildManifest({
    package: 'app', version: '1.2.3', seq: extra.seq ?? 1, channel: 'stable', created: now, expires: extra.expires ?? later,
    chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, chunks: [{ cid: 'c'.repeat(64), size: 40 }], payload, contentKey, signers
  })
}

describe('canonical JSON (RFC 8785 subset)', () => {
  it('sorts keys by UTF-16 code units and escapes like JSON.stringify', () => {
    expect(canonicalize({ b: 1, a: [true, null, 'x'], '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3 })).toBe('{"\\r":2,"a":[true,null,"x"],"b":1,"€":1,"😀":3}')
    expect(canonicalize({ z: { y: 1, x: 2 } })).toBe('{"z":{"x":2,"y":1}}')
  })
  it('refuses numbers it cannot represent exactly', () => {
    for (const v of [1.5, 2 ** 53, NaN, Infinity]) expect(code(() => canonicalize({ v }))).toBe('ERR_DECODE')
  })
  it('is stable under key order (property)', () => {
    fc.assert(fc.property(fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.string(), fc.boolean())), (o) => {
      const reversed = Object.fromEntries(Object.entries(o).reverse())
      return canonicalize(o) === canonicalize(reversed)
    }), { numRuns: 200 })
  })
})

describe('keys and root', () => {
  it('round-trips private key files and refuses a damaged one', () => {
    const k = generateKeyPair()
    const file = encodePrivateKeyFile(k, 'publisher')
    expect(decodePrivateKeyFile(file).key.keyid).toBe(k.keyid)
    const damaged = new TextDecoder().decode(file).replace(/"public": "(.)/, (_m, c: string) => `"public": "${c === 'a' ? 'b' : 'a'}`)
    expect(code(() => decodePrivateKeyFile(enc.encode(damaged)))).toBe('ERR_DECODE')
  })

  it('verifies a self-signed root and refuses expiry, too few signatures, unknown fields', () => {
    const { root, rootKeys } = fleet()
    const bytes = encodeEnvelope(root)
    verifyRoot(decodeRoot(bytes), now)
    expect(code(() => verifyRoot(root, new Date('2030-01-01T00:00:00Z')))).toBe('ERR_EXPIRED')
    const one = signEnvelope('root', root.signed, [rootKeys[0]!])
    expect(code(() => verifyRoot(one, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    // One key's signature duplicated counts once.
    const dup = { signed: root.signed, signatures: [one.signatures[0]!, one.signatures[0]!] }
    expect(code(() => verifyRoot(dup, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    const extra = JSON.parse(new TextDecoder().decode(bytes)); extra.signed.extra = 1
    expect(code(() => decodeRoot(enc.encode(JSON.stringify(extra))))).toBe('ERR_DECODE')
    expect(code(() => decodeRoot(new Uint8Array(2 * 1024 * 1024)))).toBe('ERR_OVERSIZE')
  })

  it('accepts a rotated root only with thresholds of the old and the new root keys', () => {
    const a = fleet()
    const newKeys = [generateKeyPair(), generateKeyPair()]
    const mk = (signers: ReturnType<typeof generateKeyPair>[], version = 2) => createRoot({ rootKeys: newKeys, rootThreshold: 2, publisherKeys: a.publisherKeys, publisherThreshold: 2, onlineKeys: [a.online], expires: later, version, signers })
    verifyRootUpdate(a.root, mk([a.rootKeys[0]!, a.rootKeys[1]!, ...newKeys]), now)
    expect(code(() => verifyRootUpdate(a.root, mk(newKeys), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyRootUpdate(a.root, mk([a.rootKeys[0]!, a.rootKeys[1]!, newKeys[0]!]), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyRootUpdate(a.root, mk([a.rootKeys[0]!, a.rootKeys[1]!, ...newKeys], 3), now))).toBe('ERR_ROLLBACK')
  })
})

describe('manifest', () => {
  it('signs, verifies and opens its payload', () => {
    const f = fleet()
    const m = manifest(f.publisherKeys)
    const decoded = decodeManifest(m.bytes)
    verifyManifest(decoded, f.root, now)
    expect(openPayload(decoded, contentKey)).toEqual(payload)
    expect(m.id).toMatch(/^[0-9a-f]{64}$/)
    expect(new TextDecoder().decode(m.bytes)).not.toContain('bin/x') // the tree is sealed
  })

  it('refuses below threshold, wrong keys, expiry, wrong content key', () => {
    const f = fleet()
    expect(code(() => verifyManifest(decodeManifest(manifest([f.publisherKeys[0]!]).bytes), f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyManifest(decodeManifest(manifest([generateKeyPair(), generateKeyPair()]).bytes), f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyManifest(decodeManifest(manifest(f.publisherKeys, { expires: new Date('2026-05-31T23:59:00Z') }).bytes), f.root, now))).toBe('ERR_EXPIRED')
    verifyManifest(decodeManifest(manifest(f.publisherKeys, { expires: new Date('2026-05-31T23:59:00Z') }).bytes), f.root, now, { graceSeconds: 300 })
    expect(code(() => openPayload(decodeManifest(manifest(f.publisherKeys).bytes), new Uint8Array(32)))).toBe('ERR_PAYLOAD_DECRYPT')
    // A bad signature beside enough good ones does not break verification.
    const m = decodeManifest(manifest(f.publisherKeys).bytes)
    m.signatures.push({ keyid: f.publisherKeys[0]!.keyid, sig: Buffer.alloc(64).toString('base64') })
    verifyManifest(m, f.root, now)
  })

  it('refuses every tampered field of the signed body and reordered chunks', () => {
    const f = fleet()
    const base = JSON.parse(new TextDecoder().decode(manifest(f.publisherKeys).bytes))
    const edits: Array<(s: Record<string, unknown>) => void> = [
      s => { s.package = 'other' }, s => { s.version = '1.2.4' }, s => { s.seq = 2 }, s => { s.channel = 'beta' },
      s => { s.created = '2026-01-01T00:00:00Z' }, s => { s.expires = '2099-01-01T00:00:00Z' },
      s => { (s.chunker as Record<string, number>).avgSize = 8192 },
      s => { (s.chunks as unknown[]).push({ cid: 'd'.repeat(64), size: 1 }); (s.chunks as unknown[]).reverse() },
      s => { (s.chunks as Array<{ size: number }>)[0]!.size = 41 },
      s => { (s.payload as Record<string, string>).nonce = Buffer.alloc(12, 1).toString('base64') }
    ]
    for (const edit of edits) {
      const copy = JSON.parse(JSON.stringify(base))
      edit(copy.signed)
      expect(code(() => verifyManifest(decodeManifest(enc.encode(JSON.stringify(copy))), f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    }
  })

  it('decodes garbage, mutations and oversize input into typed errors only', () => {
    const f = fleet()
    const good = manifest(f.publisherKeys).bytes
    expect(code(() => decodeManifest(new Uint8Array(64 * 1024 * 1024 + 1)))).toBe('ERR_OVERSIZE')
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => { code(() => decodeManifest(b)); return true }), { numRuns: 500 })
    fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const m = Uint8Array.from(good); m[i] = (m[i] as number) ^ x
      try { verifyManifest(decodeManifest(m), f.root, now) } catch (err) { expect(err).toBeInstanceOf(ShoalError); return true }
      return false // a mutation that still verifies would be a forgery
    }), { numRuns: 3000 })
    for (const len of [0, 1, 10, good.length >> 1, good.length - 1]) code(() => decodeManifest(good.subarray(0, len)))
  })

  it('refuses unsafe paths before anything touches the disk', () => {
    for (const p of ['', '/etc/passwd', '../x', 'a/../../b', 'a//b', './a', 'a\\b', 'a\0b', 'x'.repeat(5000), `${'y'.repeat(300)}/z`]) {
      expect(code(() => checkRelativePath(p))).toBe('ERR_INVALID_PATH')
    }
    checkRelativePath('a/b.c/d-e_f')
  })
})
