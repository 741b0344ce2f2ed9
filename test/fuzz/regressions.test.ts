// What the fuzzer found, each pinned by the smallest input that showed it, and the size caps
// enforced while reading (issue 7: "every metadata file has a size cap enforced while reading,
// and every blob read stops at its signed length").
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile, readdir, mkdir, truncate } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ShoalError, DecodeError, OversizeError } from '../../src/core/errors.js'
import { keyPairFromSecret } from '../../src/core/keys.js'
import { createRoot, decodeRoot } from '../../src/core/root.js'
import { decodeEndpointEnrollment, decodeSeedEnrollment, encodeEndpointEnrollment, MAX_BUNDLE_BYTES } from '../../src/core/enroll.js'
import { validatePayload, MAX_MANIFEST_BYTES } from '../../src/core/manifest.js'
import { decodeHead } from '../../src/core/head.js'
import { encodeEnvelope } from '../../src/core/signed.js'
import { sealChunk, cidToHex, MAX_BLOB_BYTES } from '../../src/core/seal.js'
import { parseConfig, loadConfig, ConfigError, MAX_CONFIG_BYTES } from '../../src/daemon/config.js'
import { encodeControl } from '../../src/net/control.js'
import { decodeHello } from '../../src/swarm/site.js'
import { decodeRecordsReply, decodeSiteReply } from '../../src/daemon/announce.js'
import { decodeReport } from '../../src/fleet/report.js'
import { decodeFleetAnswer } from '../../src/fleet/client.js'
import { readFileCapped } from '../../src/store/fs-util.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { RepoLayout } from '../../src/store/repo.js'

const enc = new TextEncoder()
const later = new Date('2027-06-01T00:00:00Z')
const k = (n: number) => keyPairFromSecret(new Uint8Array(32).fill(n))
const root = createRoot({ rootKeys: [k(1)], rootThreshold: 1, publisherKeys: [k(2)], publisherThreshold: 1, onlineKeys: [k(3)], expires: later })
/** Nested deeper than JSON.stringify can recurse (JSON.parse takes it). */
const DEEP = '['.repeat(100_000) + ']'.repeat(100_000)

function refusal (fn: () => unknown): ShoalError {
  try { fn() } catch (err) {
    expect(err, String(err)).toBeInstanceOf(ShoalError)
    return err as ShoalError
  }
  throw new Error('expected a refusal')
}

describe('decoders the fuzzer broke, now refusing with a typed error', () => {
  it('a deeply nested "type" or "root" in an enrollment bundle is a DecodeError, not a RangeError', () => {
    const good = JSON.parse(new TextDecoder().decode(encodeEndpointEnrollment(root, new Uint8Array(32).fill(8)))) as Record<string, unknown>
    const withDeep = (field: string): Uint8Array => enc.encode(JSON.stringify({ ...good, [field]: 0 }).replace(`"${field}":0`, `"${field}":${DEEP}`))
    expect(refusal(() => decodeEndpointEnrollment(withDeep('type')))).toBeInstanceOf(DecodeError)
    expect(refusal(() => decodeEndpointEnrollment(withDeep('root'))).message).toMatch(/"root" is nested too deeply/)
    const seed = { type: 'shoal-seed-enroll', version: 1, root: 0, networkKey: '00'.repeat(32), onlineKey: 0 }
    expect(refusal(() => decodeSeedEnrollment(enc.encode(JSON.stringify(seed).replace('"onlineKey":0', `"onlineKey":${DEEP}`)))).message).toMatch(/nested too deeply/)
    expect(refusal(() => decodeSeedEnrollment(enc.encode(JSON.stringify(seed).replace('"version":1', `"version":${DEEP}`))))).toBeInstanceOf(DecodeError)
  })

  it('a deeply nested keytype in a root, _type in a head or file type in a payload is refused by kind', () => {
    const r = JSON.parse(new TextDecoder().decode(encodeEnvelope(root))) as { signed: { keys: Record<string, { keytype: unknown }> } }
    const id = Object.keys(r.signed.keys)[0]!
    r.signed.keys[id]!.keytype = 0
    const rootText = JSON.stringify(r).replace('"keytype":0', `"keytype":${DEEP}`)
    expect(refusal(() => decodeRoot(enc.encode(rootText))).message).toMatch(/key type a list/)
    expect(refusal(() => decodeHead(enc.encode(`{"signatures":[],"signed":{"_type":${DEEP}}}`))).message).toMatch(/_type is a list/)
    const payload = `{"files":[{"mode":420,"path":"x","size":0,"type":${DEEP}}]}`
    expect(refusal(() => validatePayload(JSON.parse(payload), 0)).message).toMatch(/type a list is not file/)
  })

  it('config fields named like Object.prototype members are unknown fields, not silently accepted', () => {
    const base = { role: 'seed', stateDir: '/srv/shoal', enroll: 'seed-enroll.json' }
    expect(() => parseConfig(base, '/')).not.toThrow()
    for (const name of ['toString', 'constructor', 'hasOwnProperty', 'valueOf', '__proto__']) {
      const raw = JSON.parse(JSON.stringify(base).replace('{', `{"${name}":1,`)) as unknown
      expect(Object.keys(raw as object)).toContain(name)
      const e = refusal(() => parseConfig(raw, '/'))
      expect(e).toBeInstanceOf(ConfigError)
      expect(e.message).toContain(`unknown config field "${name}"`)
    }
  })

  it('a have hello whose weight is not a number is refused (Number("5"), Number(null) and Number([]) used to pass)', () => {
    const hello = (weight: unknown): Uint8Array => encodeControl({ op: 'hello', site: null, weight, wan: false, lan: false, releases: [] })
    expect(decodeHello(hello(5)).weight).toBe(5)
    for (const w of ['5', null, [], true]) expect(refusal(() => decodeHello(hello(w)))).toBeInstanceOf(DecodeError)
  })

  it('a have hello with a bitfield longer than the largest chunk table is refused', () => {
    const bits = new Uint8Array(500_001)
    expect(refusal(() => decodeHello(encodeControl({ op: 'hello', site: null, weight: 1, wan: false, lan: false, releases: ['a'.repeat(64)] }, [bits]))).message).toMatch(/bitfield is longer/)
  })
})

describe('decoders added to the fuzzer in the load session, refusing with a typed error', () => {
  it('a fleet report whose "v" is nested deeper than the stack is ReportInvalidError, not a RangeError from quoting it', () => {
    const e = refusal(() => decodeReport(enc.encode(`{"v":${DEEP}}`)))
    expect(e.code).toBe('ERR_REPORT_INVALID')
    expect(e.message).toContain('version a list is not 1')
  })

  it('an announce records reply whose "count" is nested deeper than the stack is a DecodeError (String() of it overflowed)', () => {
    const e = refusal(() => decodeRecordsReply(encodeControl({ count: 0 }, [enc.encode('{}')])))
    expect(e).toBeInstanceOf(DecodeError)
    const deep = enc.encode(`{"count":${DEEP}}`)
    const msg = new Uint8Array(4 + deep.byteLength)
    new DataView(msg.buffer).setUint32(0, deep.byteLength)
    msg.set(deep, 4)
    expect(refusal(() => decodeRecordsReply(msg)).message).toContain('count a list does not match its 0 record(s)')
  })

  it('a fleet answer that is not JSON, or not of the asked shape, is a DecodeError (the CLI used JSON.parse and a cast)', () => {
    expect(refusal(() => decodeFleetAnswer('status', enc.encode('<html>')))).toBeInstanceOf(DecodeError)
    expect(refusal(() => decodeFleetAnswer('endpoints', enc.encode('{"a":1}'))).message).toContain('not a list of objects')
    expect(refusal(() => decodeFleetAnswer('status', enc.encode('{"releases":[1],"sites":[]}'))).message).toContain('"releases" is not a list of objects')
    expect(decodeFleetAnswer('inventory', enc.encode('{"rows":[],"incomplete":[]}'))).toEqual({ rows: [], incomplete: [] })
  })
})

describe('announce site directory reply', () => {
  it('skips entries with more addresses, longer addresses or a longer id than a request may carry', () => {
    const id = '12D3KooWLRPJAA5o6Z6ZSe8LG9uAR3xWYoUu2MP5PCPRLNCtzuEz'
    const addrs = (n: number, len = 20): string[] => Array.from({ length: n }, (_, i) => `/ip4/10.0.0.${i}/tcp/1`.padEnd(len, '0'))
    const reply = encodeControl({ peers: [{ id, addrs: addrs(16) }, { id, addrs: addrs(17) }, { id, addrs: addrs(1, 2000) }, { id: 'x'.repeat(200), addrs: addrs(1) }, { id, addrs: 'nope' }] })
    expect(decodeSiteReply(reply)).toEqual([{ id, addrs: addrs(16) }])
  })
})

describe('size caps enforced while reading', () => {
  let dir: string
  afterAll(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })
  const tmp = async (): Promise<string> => { dir ??= await mkdtemp(join(tmpdir(), 'shoal-caps-')); return dir }

  it('readFileCapped: exactly the cap is read, one byte more is OversizeError; ENOENT passes through', async () => {
    const d = await tmp()
    await writeFile(join(d, 'ok'), new Uint8Array(1000).fill(1))
    expect((await readFileCapped(join(d, 'ok'), 1000, 'test file')).byteLength).toBe(1000)
    await expect(readFileCapped(join(d, 'ok'), 999, 'test file')).rejects.toBeInstanceOf(OversizeError)
    await expect(readFileCapped(join(d, 'missing'), 10, 'test file')).rejects.toMatchObject({ code: 'ENOENT' })
    expect((await readFileCapped(join(d, 'ok'), 10_000, 'test file')).byteLength).toBe(1000)
  })

  it('readFileCapped stops at the cap on a file with no size (/dev/zero, a FIFO that never ends)', async () => {
    await expect(readFileCapped('/dev/zero', 100_000, 'test file')).rejects.toBeInstanceOf(OversizeError)
    const d = await tmp()
    const fifo = join(d, 'fifo')
    execFileSync('mkfifo', [fifo])
    // a writer that would go on for 64 MiB: the reader must give up after 64 KiB + 1
    const writer = (async () => { await writeFile(fifo, new Uint8Array(64 * 1024 * 1024)).catch(() => {}) })()
    await expect(readFileCapped(fifo, 64 * 1024, 'fifo')).rejects.toBeInstanceOf(OversizeError)
    await writer
  })

  it('a sparse 5 GiB "enroll.json" or config is refused from its size, not read', async () => {
    const d = await tmp()
    const huge = join(d, 'huge.json')
    await writeFile(huge, '')
    await truncate(huge, 5 * 1024 ** 3) // sparse: costs no disk
    await expect(readFileCapped(huge, MAX_BUNDLE_BYTES, 'enrollment bundle')).rejects.toBeInstanceOf(OversizeError)
    const e = await loadConfig(huge).then(() => null, (err: unknown) => err)
    expect(e).toBeInstanceOf(ConfigError)
    expect(String((e as Error).message)).toContain(`${MAX_CONFIG_BYTES}-byte limit`)
  })

  it('a manifest file in a repository above MAX_MANIFEST_BYTES is refused by readManifestBytes', async () => {
    const d = await tmp()
    const repo = await RepoLayout.create(join(d, 'repo'))
    await mkdir(join(repo.dir, 'manifests', 'app'), { recursive: true })
    await writeFile(repo.manifestPath('app', '1.0.0'), '')
    await truncate(repo.manifestPath('app', '1.0.0'), MAX_MANIFEST_BYTES + 1)
    await expect(repo.readManifestBytes('app', '1.0.0')).rejects.toBeInstanceOf(OversizeError)
    expect(await repo.readManifestBytes('app', '2.0.0')).toBeNull()
  })

  it('blob reads stop at the signed length; a file larger than any blob is dropped as damaged', async () => {
    const d = await tmp()
    const store = await BlobStore.open(join(d, 'state'))
    try {
      const good = sealChunk(new Uint8Array(32).fill(7), enc.encode('hello blob'))
      await store.put(good.cid, good.blob)
      expect(await store.get(good.cid)).not.toBeNull()
      // a read stops at the signed length the caller gives: exactly it is fine, one byte less is refused
      expect((await store.get(good.cid, { maxSize: good.blob.byteLength }))?.byteLength).toBe(good.blob.byteLength)
      await expect(store.get(good.cid, { maxSize: good.blob.byteLength - 1 })).rejects.toBeInstanceOf(OversizeError)
      expect(await store.get(good.cid)).not.toBeNull() // refused, not deleted: the file may be right and the caller wrong
      // a planted or damaged file under another cid, past MAX_BLOB_BYTES (sparse)
      const fake = new Uint8Array(32).fill(0xab)
      const path = store.path(fake)
      await mkdir(join(path, '..'), { recursive: true })
      await writeFile(path, '')
      await truncate(path, MAX_BLOB_BYTES + 1)
      expect(await store.get(fake)).toBeNull()
      expect(await readdir(join(path, '..'))).not.toContain(cidToHex(fake).slice(2))
      expect(await store.get(good.cid)).not.toBeNull()
    } finally {
      await store.close()
    }
  })
})

