// Delta blobs end to end on the publisher side and the pure endpoint functions (issue 5,
// docs/delta.md "Delta blobs in the manifest"): generated edits published as v1, v2, v3 into one
// repo; every delta rebuilds its chunks exactly; a damaged delta or a wrong base is refused with a
// typed error and the full blobs still open; an endpoint two releases behind gets a correct plan;
// fetchBytesFromPrevious is what planFetch says a holder of the previous release fetches; without a
// previous release (or with deltas off) the output is what it was before deltas.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { publishRelease, type PublishOptions, type PublishResult } from '../../src/publish/publisher.js'
import { generateKeyPair } from '../../src/core/keys.js'
import { decodeManifest, openPayload, validatePayload, type ManifestPayload, type SignedManifest } from '../../src/core/manifest.js'
import { cidFromHex, openBlob } from '../../src/core/seal.js'
import { DeltaEncoder } from '../../src/core/delta.js'
import { planFetch, rebuildChunk, rebuildChunks, resolveDeltaBase, DeltaRebuildError, type HeldRelease, type BaseChunk, type WantedChunk } from '../../src/core/delta-apply.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { DecodeError } from '../../src/core/errors.js'

const contentKey = randomBytes(32)
const signers = [generateKeyPair()]
let dir: string

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-delta-pub-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

// ---- generated content and edits --------------------------------------------------------------

function xorshift (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x }
}

function textLike (n: number, seed: number): Buffer {
  const words = ['export', 'function', 'const', 'return', 'import', 'shoal', 'chunk', 'release', '{', '}', '(', ')', ';', '\n  ', '=>', 'await']
  const r = xorshift(seed)
  const parts: string[] = []
  let len = 0
  while (len < n) {
    const x = r()
    const w = words[x % words.length] as string + (x % 7 === 0 ? String(x % 1000) : '') + ' '
    parts.push(w)
    len += w.length
  }
  return Buffer.from(parts.join('')).subarray(0, n)
}

/** Instruction-like bytes: repeated structure with random operands (compresses a little, like code). */
function binaryLike (n: number, seed: number): Buffer {
  const r = xorshift(seed)
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = i % 8 < 3 ? [0x48, 0x8b, 0x45][i % 8] as number : r() >>> 24
  return out
}

interface Edit { kind: 'insert' | 'delete' | 'replace', at: number, len: number, seed: number }

function applyEdits (src: Buffer, edits: readonly Edit[]): Buffer {
  let cur = src
  for (const e of edits) {
    const at = e.at % (cur.length + 1)
    const r = xorshift(e.seed)
    const fresh = Buffer.alloc(e.len)
    for (let i = 0; i < e.len; i++) fresh[i] = r() & 0xff
    if (e.kind === 'insert') cur = Buffer.concat([cur.subarray(0, at), fresh, cur.subarray(at)])
    else if (e.kind === 'delete') cur = Buffer.concat([cur.subarray(0, at), cur.subarray(Math.min(cur.length, at + e.len))])
    else cur = Buffer.concat([cur.subarray(0, at), fresh, cur.subarray(Math.min(cur.length, at + e.len))])
  }
  return cur
}

const editArb = fc.record({
  kind: fc.constantFrom<Edit['kind']>('insert', 'delete', 'replace'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 400 }),
  seed: fc.nat()
})

type Tree = Record<string, Buffer>

async function writeTree (root: string, tree: Tree): Promise<void> {
  for (const [p, bytes] of Object.entries(tree)) {
    await mkdir(dirname(join(root, p)), { recursive: true })
    await writeFile(join(root, p), bytes)
  }
}

let inputs = 0
async function publish (repoDir: string, tree: Tree, version: string, extra: Partial<PublishOptions> = {}): Promise<PublishResult> {
  const input = join(dir, `in-${inputs++}`)
  await writeTree(input, tree)
  const r = await publishRelease({
    input, package: 'app', version, channel: 'stable', repoDir, signers, contentKey, threads: 1,
    expires: new Date(Date.now() + 86400e3), now: new Date('2026-11-23T00:00:00Z'), deltaReleases: 2, ...extra
  })
  await rm(input, { recursive: true, force: true })
  return r
}

interface Release extends HeldRelease { manifest: SignedManifest, fileCids: Set<string> }

async function load (repoDir: string, version: string): Promise<Release> {
  const { readFile } = await import('node:fs/promises')
  const manifest = decodeManifest(await readFile(join(repoDir, 'manifests', 'app', `${version}.json`)))
  const payload = openPayload(manifest, contentKey)
  const fileCids = new Set<string>()
  for (const f of payload.files) for (const c of f.chunks ?? []) fileCids.add(manifest.signed.chunks[c.index]!.cid)
  return { version, manifest, chunks: manifest.signed.chunks, payload, fileCids }
}

async function openFromRepo (blobs: BlobStore, cid: string, key: string, size: number): Promise<Uint8Array> {
  const c = cidFromHex(cid)
  const blob = await blobs.get(c)
  if (blob === null) throw new Error(`blob ${cid} missing`)
  return openBlob(blob, Buffer.from(key, 'hex'), { cid: c, plainSize: size })
}

async function basesOf (blobs: BlobStore, base: readonly BaseChunk[]): Promise<Uint8Array[]> {
  return await Promise.all(base.map(async b => await openFromRepo(blobs, b.cid, b.key, b.size)))
}

/** Every delta of `rel` rebuilds exactly the chunks its full blobs hold. Returns how many were checked. */
async function checkAllDeltas (repoDir: string, rel: Release, older: readonly Release[]): Promise<number> {
  const blobs = await BlobStore.open(repoDir)
  let n = 0
  const chunkOf = new Map<number, { key: string, size: number }>()
  for (const f of rel.payload.files) for (const c of f.chunks ?? []) chunkOf.set(c.index, c)
  for (const d of rel.payload.deltas ?? []) {
    const base = resolveDeltaBase(d.base, older)
    expect(base).toBeDefined()
    const plain = await openFromRepo(blobs, rel.chunks[d.index]!.cid, d.key, d.size)
    const expected = d.targets.map(t => chunkOf.get(t)!)
    const rebuilt = rebuildChunks(contentKey, plain, await basesOf(blobs, base!), expected)
    for (const [i, t] of d.targets.entries()) {
      const full = await openFromRepo(blobs, rel.chunks[t]!.cid, expected[i]!.key, expected[i]!.size)
      expect(Buffer.from(rebuilt[i]!).equals(Buffer.from(full))).toBe(true)
    }
    n++
  }
  await blobs.close()
  return n
}

/**
 * An endpoint holding `held` (its file chunks, and their payloads as delta bases) installs `rel`
 * from the repo following planFetch; returns the plan and the installed files' bytes.
 */
async function install (repoDir: string, rel: Release, held: readonly Release[]): Promise<{ plan: ReturnType<typeof planFetch>, files: Tree }> {
  const heldCids = new Set(held.flatMap(h => [...h.fileCids]))
  const plan = planFetch(rel.manifest, rel.payload, (cid) => heldCids.has(cid), held)
  const blobs = await BlobStore.open(repoDir)
  const got = new Map<number, Uint8Array>()
  for (const item of plan.items) {
    if (item.kind === 'full') {
      got.set(item.chunk.index, await openFromRepo(blobs, item.chunk.cid, item.chunk.key, item.chunk.size))
    } else {
      for (const b of item.base) expect(heldCids.has(b.cid)).toBe(true)
      const plain = await openFromRepo(blobs, item.cid, item.delta.key, item.delta.size)
      const pieces = rebuildChunks(contentKey, plain, await basesOf(blobs, item.base), item.targets)
      item.targets.forEach((t: WantedChunk, i) => got.set(t.index, pieces[i]!))
    }
  }
  const files: Tree = {}
  for (const f of rel.payload.files) {
    if (f.type !== 'file') continue
    const parts: Uint8Array[] = []
    for (const c of f.chunks ?? []) {
      // Held chunks come from the endpoint's store (the repo stands in for it here).
      parts.push(got.get(c.index) ?? await openFromRepo(blobs, rel.chunks[c.index]!.cid, c.key, c.size))
    }
    files[f.path] = Buffer.concat(parts)
  }
  await blobs.close()
  return { plan, files }
}

function sameTree (a: Tree, b: Tree): void {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort())
  for (const k of Object.keys(b)) expect(a[k]!.equals(b[k]!), k).toBe(true)
}

// ---- a fixed three-release history --------------------------------------------------------------

describe('publishing v1, v2, v3 with delta blobs', () => {
  let repoDir: string
  const v1: Tree = {
    'lib/bundle.js': textLike(300_000, 1),
    'bin/native': binaryLike(200_000, 2),
    'assets/app.3f9a1c2b.js': textLike(120_000, 3),
    'README': Buffer.from('v1\n')
  }
  const v2: Tree = {
    'lib/bundle.js': applyEdits(v1['lib/bundle.js']!, [{ kind: 'insert', at: 5_000, len: 30, seed: 1 }, { kind: 'replace', at: 150_000, len: 12, seed: 2 }]),
    'bin/native': applyEdits(v1['bin/native']!, [{ kind: 'replace', at: 70_000, len: 64, seed: 3 }, { kind: 'delete', at: 140_000, len: 100, seed: 4 }]),
    // Renamed by its content hash, edited: chooseBaseFile finds the old name.
    'assets/app.77e01d9a.js': applyEdits(v1['assets/app.3f9a1c2b.js']!, [{ kind: 'insert', at: 60_000, len: 20, seed: 5 }]),
    'README': Buffer.from('v2\n')
  }
  const v3: Tree = {
    'lib/bundle.js': applyEdits(v2['lib/bundle.js']!, [{ kind: 'delete', at: 250_000, len: 300, seed: 6 }]),
    'bin/native': applyEdits(v2['bin/native']!, [{ kind: 'insert', at: 10_000, len: 8, seed: 7 }]),
    'assets/app.77e01d9a.js': v2['assets/app.77e01d9a.js']!,
    'README': Buffer.from('v3\n'),
    'lib/new.js': textLike(40_000, 9)
  }
  let r1: PublishResult
  let r2: PublishResult
  let r3: PublishResult
  let rel1: Release
  let rel2: Release
  let rel3: Release

  beforeAll(async () => {
    repoDir = join(dir, 'repo-fixed')
    r1 = await publish(repoDir, v1, '1.0.0')
    r2 = await publish(repoDir, v2, '1.1.0')
    r3 = await publish(repoDir, v3, '1.2.0')
    rel1 = await load(repoDir, '1.0.0')
    rel2 = await load(repoDir, '1.1.0')
    rel3 = await load(repoDir, '1.2.0')
  })

  it('writes no delta for the first release, and fetchBytesFromPrevious is then every blob', () => {
    expect(r1.deltaBlobs).toBe(0)
    expect(r1.deltaBytes).toBe(0)
    expect(rel1.payload.deltas).toBeUndefined()
    expect(r1.fetchBytesFromPrevious).toBe(r1.blobBytes)
  })

  it('writes delta blobs for v2 and v3, listed in the chunk table after the file chunks', () => {
    expect(r2.deltaBlobs).toBeGreaterThan(0)
    expect(r3.deltaBlobs).toBeGreaterThan(0)
    expect(r3.deltaBaseReleases).toEqual(['1.1.0', '1.0.0'])
    for (const rel of [rel2, rel3]) {
      const fileIdx = new Set(rel.payload.files.flatMap(f => (f.chunks ?? []).map(c => c.index)))
      const firstDelta = Math.min(...rel.payload.deltas!.map(d => d.index))
      for (const i of fileIdx) expect(i).toBeLessThan(firstDelta)
      expect(rel.chunks.length).toBe(fileIdx.size + new Set(rel.payload.deltas!.map(d => d.index)).size)
    }
    // v3 has deltas against both previous releases (bin/native and lib/bundle.js changed in both).
    expect(new Set(rel3.payload.deltas!.map(d => d.base.version))).toEqual(new Set(['1.1.0', '1.0.0']))
    expect(rel2.payload.deltas!.some(d => d.base.path === 'assets/app.3f9a1c2b.js')).toBe(true)
  })

  it('every delta rebuilds exactly the chunks of its full blobs', async () => {
    expect(await checkAllDeltas(repoDir, rel2, [rel1])).toBe(rel2.payload.deltas!.length)
    expect(await checkAllDeltas(repoDir, rel3, [rel2, rel1])).toBe(rel3.payload.deltas!.length)
  })

  it('fetchBytesFromPrevious is what planFetch gives a holder of the previous release, far below the new full blobs', async () => {
    for (const [r, rel, prev] of [[r2, rel2, rel1], [r3, rel3, rel2]] as const) {
      const { plan, files } = await install(repoDir, rel, [prev])
      expect(plan.bytes).toBe(r.fetchBytesFromPrevious)
      expect(plan.viaDelta).toBeGreaterThan(0)
      sameTree(files, r === r2 ? v2 : v3)
      const fullOnly = planFetch(rel.manifest, rel.payload, (cid) => prev.fileCids.has(cid), [])
      expect(fullOnly.items.every(i => i.kind === 'full')).toBe(true)
      expect(r.fetchBytesFromPrevious).toBeLessThan(fullOnly.bytes / 2)
    }
  })

  it('an endpoint two releases behind (holds v1, wants v3) uses deltas against v1 only, and installs correctly', async () => {
    const { plan, files } = await install(repoDir, rel3, [rel1])
    sameTree(files, v3)
    const viaDelta = plan.items.filter(i => i.kind === 'delta')
    expect(viaDelta.length).toBeGreaterThan(0)
    for (const i of viaDelta) if (i.kind === 'delta') expect(i.delta.base.version).toBe('1.0.0')
    // Without v1's payload at hand it fetches full blobs, and still installs.
    const bare = await install(repoDir, rel3, [])
    expect(bare.plan.items.every(i => i.kind === 'full')).toBe(true)
    expect(bare.plan.bytes).toBeGreaterThan(plan.bytes)
  })

  it('a delta is planned only when every base blob is held, whichever release names it', () => {
    const plan = planFetch(rel3.manifest, rel3.payload, (cid) => rel1.fileCids.has(cid), [rel2, rel1])
    for (const i of plan.items) if (i.kind === 'delta') for (const b of i.base) expect(rel1.fileCids.has(b.cid)).toBe(true)
    // Holding nothing: no delta at all, every file chunk whole.
    const none = planFetch(rel3.manifest, rel3.payload, () => false, [rel2, rel1])
    expect(none.items.every(i => i.kind === 'full')).toBe(true)
    expect(none.bytes).toBe(r3.blobBytes)
  })

  it('a corrupted delta and a wrong base are refused with DeltaRebuildError; the full blobs still open', async () => {
    const blobs = await BlobStore.open(repoDir)
    const d = rel3.payload.deltas!.find(x => x.base.version === '1.1.0')!
    const base = await basesOf(blobs, resolveDeltaBase(d.base, [rel2])!)
    const plain = await openFromRepo(blobs, rel3.chunks[d.index]!.cid, d.key, d.size)
    const chunkOf = new Map(rel3.payload.files.flatMap(f => (f.chunks ?? []).map(c => [c.index, c] as const)))
    const expected = d.targets.map(t => chunkOf.get(t)!)
    const originals = await Promise.all(d.targets.map(async (t, i) => await openFromRepo(blobs, rel3.chunks[t]!.cid, expected[i]!.key, expected[i]!.size)))
    const reasons: string[] = []
    const tryRebuild = (delta: Uint8Array, b: Uint8Array[], exp = expected): void => {
      try {
        const out = rebuildChunks(contentKey, delta, b, exp)
        // A flip zstd never reads (padding bits of an entropy table) may still decode: then the
        // bytes are exactly right, as the chunk keys prove.
        out.forEach((o, i) => expect(Buffer.from(o).equals(Buffer.from(originals[i]!))).toBe(true))
        reasons.push('same bytes')
      } catch (err) {
        expect(err).toBeInstanceOf(DeltaRebuildError)
        expect((err as DeltaRebuildError).code).toBe('ERR_DELTA_REBUILD')
        reasons.push((err as DeltaRebuildError).reason)
      }
    }
    // Damaged frame bytes, header bytes, truncation.
    for (const at of [plain.length - 1, Math.floor(plain.length / 2), 20, 3]) {
      const bad = Uint8Array.from(plain)
      bad[at]! ^= 0x40
      tryRebuild(bad, base)
    }
    tryRebuild(plain.subarray(0, plain.length - 3), base)
    // Wrong bases: other bytes of the same length, one base chunk missing, one byte changed.
    tryRebuild(plain, [textLike(d.base.size, 99)])
    tryRebuild(plain, base.slice(1))
    const flipped = base.map(b => Uint8Array.from(b))
    flipped[0]![0]! ^= 1
    tryRebuild(plain, flipped)
    // A well-formed delta that decodes to other bytes of the right length: caught by the chunk key.
    const total = expected.reduce((n, e) => n + e.size, 0)
    const forged = new DeltaEncoder(Buffer.concat(base), { maxRatio: 1, minSavedBytes: 0 }).encode(Buffer.alloc(total, 7), { fullBytes: Number.MAX_SAFE_INTEGER })!
    tryRebuild(forged, base)
    // Right bytes checked against the wrong key.
    tryRebuild(plain, base, expected.map((e, i) => i === 0 ? { ...e, key: 'ab'.repeat(32) } : e))
    expect(reasons.slice(5)).toEqual(['delta', 'delta', 'delta', 'key', 'key'])
    expect(reasons.slice(0, 5).filter(r => r === 'delta').length).toBeGreaterThanOrEqual(3)
    // The caller's fallback: every target's full blob opens and matches its key.
    for (const e of expected) {
      const t = d.targets[expected.indexOf(e)]!
      expect((await openFromRepo(blobs, rel3.chunks[t]!.cid, e.key, e.size)).length).toBe(e.size)
    }
    // And the untouched delta still rebuilds (single-chunk form when it has one target).
    if (expected.length === 1) expect(rebuildChunk(contentKey, plain, base, expected[0]!).length).toBe(expected[0]!.size)
    else expect(rebuildChunks(contentKey, plain, base, expected)).toHaveLength(expected.length)
    await blobs.close()
  })

  it('deltaReleases 0 publishes exactly what a publish without deltas did', async () => {
    const off = join(dir, 'repo-off')
    await publish(off, v1, '1.0.0', { deltaReleases: 0 })
    const o2 = await publish(off, v2, '1.1.0', { deltaReleases: 0 })
    const relOff = await load(off, '1.1.0')
    expect(o2.deltaBlobs).toBe(0)
    expect(relOff.payload.deltas).toBeUndefined()
    // Same file chunks, in the same order, as the delta publish; the delta blobs only come after.
    expect(rel2.chunks.slice(0, relOff.chunks.length)).toEqual(relOff.chunks)
    expect({ ...rel2.payload, deltas: undefined }).toEqual({ ...relOff.payload, deltas: undefined })
    expect(o2.fetchBytesFromPrevious).toBe(planFetch(relOff.manifest, relOff.payload, (c) => rel1.fileCids.has(c), [rel1]).bytes)
    expect(o2.fetchBytesFromPrevious).toBeGreaterThan(r2.fetchBytesFromPrevious)
    expect({ ...o2, seconds: 0, mbPerSec: 0, manifestId: '', manifestPath: '', manifestBytes: 0, fetchBytesFromPrevious: 0 })
      .toEqual({ ...r2, seconds: 0, mbPerSec: 0, manifestId: '', manifestPath: '', manifestBytes: 0, fetchBytesFromPrevious: 0, deltaBlobs: 0, deltaBytes: 0, deltaBaseReleases: [] })
  })

  it('a first release publishes the same payload and chunk table with deltas on or off', async () => {
    const a = join(dir, 'repo-first-a')
    const b = join(dir, 'repo-first-b')
    const ra = await publish(a, v1, '1.0.0')
    const rb = await publish(b, v1, '1.0.0', { deltaReleases: 0 })
    const la = await load(a, '1.0.0')
    const lb = await load(b, '1.0.0')
    expect(la.chunks).toEqual(lb.chunks)
    expect(la.payload).toEqual(lb.payload)
    expect(la.payload).not.toHaveProperty('deltas')
    expect(ra.fetchBytesFromPrevious).toBe(rb.blobBytes)
    expect({ ...ra, seconds: 0, mbPerSec: 0, manifestId: '', manifestPath: '' }).toEqual({ ...rb, seconds: 0, mbPerSec: 0, manifestId: '', manifestPath: '' })
  })
})

// ---- generated histories ----------------------------------------------------------------------

describe('generated edits, text and binary', () => {
  it('v1 → v2 → v3 with random inserts, deletes and replaces: deltas rebuild exactly, holders of v1 or v2 install v3', async () => {
    let run = 0
    await fc.assert(fc.asyncProperty(
      fc.boolean(), fc.integer({ min: 20_000, max: 160_000 }), fc.nat(),
      fc.array(editArb, { minLength: 1, maxLength: 5 }), fc.array(editArb, { minLength: 1, maxLength: 5 }),
      async (text, size, seed, e2, e3) => {
        const repoDir = join(dir, `repo-gen-${run++}`)
        const make = text ? textLike : binaryLike
        const t1: Tree = { 'f.bin': make(size, seed), 'other.txt': textLike(30_000, seed + 1) }
        const t2: Tree = { 'f.bin': applyEdits(t1['f.bin']!, e2), 'other.txt': t1['other.txt']! }
        const t3: Tree = { 'f.bin': applyEdits(t2['f.bin']!, e3), 'other.txt': applyEdits(t2['other.txt']!, e3.slice(0, 1)) }
        // Level 3 keeps the property fast; the format and checks are the same at every level.
        const opts = { delta: { level: 3 } }
        await publish(repoDir, t1, '1.0.0', opts)
        const p2 = await publish(repoDir, t2, '2.0.0', opts)
        const p3 = await publish(repoDir, t3, '3.0.0', opts)
        const [l1, l2, l3] = [await load(repoDir, '1.0.0'), await load(repoDir, '2.0.0'), await load(repoDir, '3.0.0')]
        await checkAllDeltas(repoDir, l2, [l1])
        await checkAllDeltas(repoDir, l3, [l2, l1])
        const fromV2 = await install(repoDir, l3, [l2])
        sameTree(fromV2.files, t3)
        expect(fromV2.plan.bytes).toBe(p3.fetchBytesFromPrevious)
        const fromV1 = await install(repoDir, l3, [l1])
        sameTree(fromV1.files, t3)
        expect((await install(repoDir, l2, [l1])).plan.bytes).toBe(p2.fetchBytesFromPrevious)
        await rm(repoDir, { recursive: true, force: true })
      }), { numRuns: 12 })
  })
})

// ---- the payload's `deltas` list is validated strictly ----------------------------------------

describe('validatePayload: deltas', () => {
  const H = (c: string): string => c.repeat(64)
  const files = [{ path: 'a', type: 'file', mode: 0o644, size: 300, sha256: H('0'), chunks: [{ index: 0, key: H('1'), size: 100 }, { index: 1, key: H('2'), size: 200 }] }]
  const good = { index: 2, key: H('3'), size: 40, targets: [0, 1], base: { version: '1.0.0', path: 'a', first: 0, count: 2, size: 310 } }
  const check = (deltas: unknown, chunkCount = 3): ManifestPayload => validatePayload({ files, deltas }, chunkCount)

  it('accepts a well-formed list and keeps it as is', () => {
    expect(check([good]).deltas).toEqual([good])
    // Two deltas may share one blob (same bytes against the same base named in two releases).
    expect(check([good, { ...good, base: { ...good.base, version: '0.9.0' } }]).deltas).toHaveLength(2)
  })

  it('refuses every malformed entry', () => {
    const bad: unknown[] = [
      [],
      {},
      [{ ...good, extra: 1 }],
      [{ ...good, base: { ...good.base, extra: 1 } }],
      [{ ...good, index: 3 }],
      [{ ...good, index: 0 }],
      [{ ...good, key: 'zz' }],
      [{ ...good, size: 22 }],
      [{ ...good, size: 16 * 1024 * 1024 + 1 }],
      [{ ...good, targets: [] }],
      [{ ...good, targets: [0, 0] }],
      [{ ...good, targets: [2] }],
      [{ ...good, targets: [5] }],
      [{ ...good, targets: Array.from({ length: 4097 }, () => 0) }],
      [{ ...good, base: { ...good.base, version: 'v1' } }],
      [{ ...good, base: { ...good.base, path: '../etc/passwd' } }],
      [{ ...good, base: { ...good.base, count: 0 } }],
      [{ ...good, base: { ...good.base, count: 4097 } }],
      [{ ...good, base: { ...good.base, size: 16 * 1024 * 1024 + 1 } }],
      [{ ...good, base: { ...good.base, first: -1 } }],
      [good, { ...good, size: 41 }],
      [good, { ...good, key: H('4') }],
      [{ ...good, targets: undefined }]
    ]
    for (const d of bad) expect(() => check(d), JSON.stringify(d).slice(0, 120)).toThrow()
    for (const d of bad.slice(2, 14)) expect(() => check(d)).toThrow(DecodeError)
  })
})

// ---- the CLI: --delta-releases and the JSON fields ----------------------------------------------

describe('shoal publish --delta-releases', () => {
  it('prints deltaBlobs, deltaBytes and fetchBytesFromPrevious; 0 turns deltas off; bad values are refused', async () => {
    const { shoal } = await import('../helpers/cli.js')
    const keys = join(dir, 'cli-keys')
    const repoDir = join(dir, 'cli-repo')
    expect((await shoal(['keys', 'init', '--dir', keys])).code).toBe(0)
    const t1: Tree = { 'lib/a.js': textLike(200_000, 5) }
    const t2: Tree = { 'lib/a.js': applyEdits(t1['lib/a.js']!, [{ kind: 'insert', at: 100_000, len: 20, seed: 1 }]) }
    const t3: Tree = { 'lib/a.js': applyEdits(t2['lib/a.js']!, [{ kind: 'replace', at: 50_000, len: 20, seed: 2 }]) }
    const run = async (tree: Tree, version: string, extra: string[] = []): Promise<Record<string, unknown>> => {
      const input = join(dir, `cli-in-${version}`)
      await writeTree(input, tree)
      const r = await shoal(['publish', input, '--name', 'cli', '--version', version, '--keys', keys, '--repo', repoDir, '--json', ...extra])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      return JSON.parse(r.stdout) as Record<string, unknown>
    }
    const j1 = await run(t1, '1.0.0')
    expect(j1).toMatchObject({ deltaBlobs: 0, deltaBytes: 0, fetchBytesFromPrevious: j1.blobBytes })
    const j2 = await run(t2, '1.1.0', ['--delta-releases', '2'])
    expect(j2.deltaBlobs as number).toBeGreaterThan(0)
    expect(j2.fetchBytesFromPrevious as number).toBeLessThan(j2.newBlobBytes as number)
    const j3 = await run(t3, '1.2.0') // on by default, 2 releases back
    expect(j3.deltaBlobs as number).toBeGreaterThan(0)
    expect(j3.deltaBaseReleases).toEqual(['1.1.0', '1.0.0'])
    expect(j3.fetchBytesFromPrevious as number).toBeLessThan(j3.newBlobBytes as number)
    const t4: Tree = { 'lib/a.js': applyEdits(t3['lib/a.js']!, [{ kind: 'delete', at: 70_000, len: 20, seed: 3 }]) }
    const j4 = await run(t4, '1.3.0', ['--delta-releases', '0'])
    expect(j4).toMatchObject({ deltaBlobs: 0, deltaBytes: 0, fetchBytesFromPrevious: j4.newBlobBytes })
    const bad = await shoal(['publish', join(dir, 'cli-in-1.0.0'), '--name', 'cli', '--version', '2.0.0', '--keys', keys, '--repo', repoDir, '--delta-releases', 'x'])
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/--delta-releases/)
  })
})
