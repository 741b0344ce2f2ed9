// Delta codec (src/core/delta.ts): round trips over generated edits in text and binary, a damaged
// delta or a wrong base never yields bytes silently, bombs are refused before decoding, and the
// base planner covers every changed chunk with a bounded base.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import * as zlib from 'node:zlib'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { chunkLengths } from '../../src/core/chunker.js'
import {
  chooseBaseFile, decodeDelta, DELTA_HEADER_BYTES, DeltaBaseMismatchError, DeltaCorruptError, DeltaDecoder, DeltaEncoder, DeltaError,
  DeltaFormatError, DeltaOversizeError, encodeDelta, planDeltaBases, readDeltaHeader, zstdFrameOutputBound, type DeltaChunkRef
} from '../../src/core/delta.js'

const ALWAYS = { maxRatio: 1, minSavedBytes: 0, fullBytes: Number.MAX_SAFE_INTEGER }

/** Deterministic text-like bytes (JS-ish tokens), different per seed. */
function textLike (n: number, seed: number): Uint8Array {
  const words = ['export', 'function', 'const', 'return', 'import', 'shoal', 'chunk', 'release', '{', '}', '(', ')', ';', '\n  ', '=>', 'await']
  let x = seed >>> 0 || 1
  const parts: string[] = []
  let len = 0
  while (len < n) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    const w = words[x % words.length]! + (x % 7 === 0 ? String(x % 1000) : '') + ' '
    parts.push(w)
    len += w.length
  }
  return new TextEncoder().encode(parts.join('').slice(0, n))
}

function binaryLike (n: number, seed: number): Uint8Array {
  // Instruction-like: runs of repeated structure with random operands.
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 7
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    out[i] = i % 8 < 3 ? [0x48, 0x8b, 0x45][i % 8]! : (x >>> 24)
  }
  return out
}

type Edit = { kind: 'insert' | 'delete' | 'replace', at: number, len: number, seed: number }

function applyEdits (src: Uint8Array, edits: Edit[]): Uint8Array {
  let cur = src
  for (const e of edits) {
    const at = cur.length === 0 ? 0 : e.at % (cur.length + 1)
    const fresh = new Uint8Array(randomBytesSeeded(e.len, e.seed))
    if (e.kind === 'insert') cur = concat(cur.subarray(0, at), fresh, cur.subarray(at))
    else if (e.kind === 'delete') cur = concat(cur.subarray(0, at), cur.subarray(Math.min(cur.length, at + e.len)))
    else cur = concat(cur.subarray(0, at), fresh, cur.subarray(Math.min(cur.length, at + e.len)))
  }
  return cur
}

function randomBytesSeeded (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 3
  for (let i = 0; i < n; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; out[i] = x & 0xff }
  return out
}

function concat (...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

const editArb = fc.record({
  kind: fc.constantFrom<Edit['kind']>('insert', 'delete', 'replace'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 600 }),
  seed: fc.nat()
})

const expectDeltaError = (f: () => unknown, cls: abstract new (...a: never[]) => DeltaError = DeltaError): void => {
  let thrown: unknown
  try { f() } catch (err) { thrown = err }
  expect(thrown).toBeInstanceOf(cls)
}

describe('delta codec round trips', () => {
  it('rebuilds text and binary after random inserts, deletes and replaces', () => {
    fc.assert(fc.property(
      fc.boolean(), fc.integer({ min: 0, max: 40_000 }), fc.nat(), fc.array(editArb, { minLength: 0, maxLength: 8 }),
      (text, size, seed, edits) => {
        const base = text ? textLike(size, seed) : binaryLike(size, seed)
        const target = applyEdits(base, edits)
        const delta = encodeDelta(base, target, { ...ALWAYS, level: 3 })
        expect(delta).not.toBeNull()
        const back = decodeDelta(base, delta!, target.length)
        expect(Buffer.from(back).equals(Buffer.from(target))).toBe(true)
      }), { numRuns: 150 })
  })

  it('at the default level, a small edit of a 64 KiB chunk costs a few hundred bytes, not the chunk', () => {
    const base = textLike(256 * 1024, 11)
    // The target is a chunk-sized region of the base, edited in three places.
    const target = applyEdits(base.subarray(100_000, 165_536), [
      { kind: 'replace', at: 1000, len: 5, seed: 1 }, { kind: 'insert', at: 30_000, len: 40, seed: 2 }, { kind: 'delete', at: 50_000, len: 100, seed: 3 }
    ])
    const full = zlib.brotliCompressSync(target, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }).length
    const delta = encodeDelta(base, target, { fullBytes: full })
    expect(delta).not.toBeNull()
    expect(delta!.length).toBeLessThan(400)
    expect(delta!.length * 20).toBeLessThan(full)
    expect(Buffer.from(decodeDelta(base, delta!, 65_536)).equals(Buffer.from(target))).toBe(true)
  })

  it('one encoder and one decoder serve many targets against the same base', () => {
    const base = binaryLike(300_000, 5)
    const enc = new DeltaEncoder(base, { level: 9 })
    const dec = new DeltaDecoder(base)
    for (let k = 0; k < 5; k++) {
      const target = applyEdits(base.subarray(k * 50_000, k * 50_000 + 20_000), [{ kind: 'replace', at: 77 * k, len: 9, seed: k }])
      const d = enc.encode(target)
      expect(d).not.toBeNull()
      expect(Buffer.from(dec.decode(d!, target.length)).equals(Buffer.from(target))).toBe(true)
      expect(Buffer.from(decodeDelta(base, d!, target.length)).equals(Buffer.from(target))).toBe(true)
    }
    // A delta made against another base is refused by the same decoder.
    const other = enc.encode(base.subarray(0, 1000), { fullBytes: 1e9 })!
    expectDeltaError(() => new DeltaDecoder(base.subarray(1)).decode(other, 1 << 20), DeltaBaseMismatchError)
  })

  it('rebuilds a plan-sized target (several chunks concatenated, 600 KB) against a 1 MiB base', () => {
    const base = textLike(1024 * 1024, 31)
    const target = applyEdits(base.subarray(200_000, 800_000), [
      { kind: 'insert', at: 10_000, len: 500, seed: 1 }, { kind: 'replace', at: 300_000, len: 300, seed: 2 }, { kind: 'delete', at: 500_000, len: 4000, seed: 3 }
    ])
    const d = encodeDelta(base, target, { fullBytes: target.length })
    expect(d).not.toBeNull()
    expect(d!.length).toBeLessThan(4000)
    expect(Buffer.from(decodeDelta(base, d!, target.length)).equals(Buffer.from(target))).toBe(true)
  })

  it('returns null when the delta is not clearly smaller than the full blob', () => {
    const base = new Uint8Array(randomBytes(20_000))
    const target = new Uint8Array(randomBytes(16_000))
    expect(encodeDelta(base, target)).toBeNull()
    expect(encodeDelta(base, target, { fullBytes: 10 })).toBeNull()
  })

  it('handles empty base, empty target, and a base that starts with the zstd dictionary magic', () => {
    const t = textLike(5000, 3)
    for (const base of [new Uint8Array(0), concat(new Uint8Array([0x37, 0xa4, 0x30, 0xec, 0x37, 0xa4, 0x30, 0xec]), t), new Uint8Array([0x37, 0xa4, 0x30, 0xec])]) {
      for (const target of [new Uint8Array(0), t]) {
        const d = encodeDelta(base, target, ALWAYS)
        expect(d).not.toBeNull()
        expect(Buffer.from(decodeDelta(base, d!, target.length)).equals(Buffer.from(target))).toBe(true)
      }
    }
  })

  // zlib's zstd (Node 22.15+) took a dictionary option later; checked on Node 24.
  it.skipIf(typeof (zlib as { zstdDecompressSync?: unknown }).zstdDecompressSync !== 'function' || Number(process.versions.node.split('.')[0]) < 24)('is a plain zstd frame that Node\'s own zlib decodes with the base as dictionary', () => {
    const base = textLike(100_000, 9)
    const target = applyEdits(base.subarray(20_000, 40_000), [{ kind: 'insert', at: 500, len: 30, seed: 4 }])
    const d = encodeDelta(base, target, ALWAYS)!
    const z = zlib as unknown as { zstdDecompressSync: (b: Uint8Array, o: object) => Buffer }
    const out = z.zstdDecompressSync(d.subarray(DELTA_HEADER_BYTES), { dictionary: base, maxOutputLength: target.length })
    expect(out.equals(Buffer.from(target))).toBe(true)
  })
})

describe('delta codec refuses bad input with a typed error', () => {
  const base = textLike(60_000, 21)
  const target = applyEdits(base.subarray(10_000, 30_000), [{ kind: 'replace', at: 4000, len: 50, seed: 8 }, { kind: 'insert', at: 9000, len: 200, seed: 9 }])
  const delta = encodeDelta(base, target, ALWAYS)!

  it('detects a wrong base: other length, other bytes', () => {
    expectDeltaError(() => decodeDelta(base.subarray(1), delta, 1 << 20), DeltaBaseMismatchError)
    const other = new Uint8Array(base)
    other[12_345]! ^= 1
    expectDeltaError(() => decodeDelta(other, delta, 1 << 20), DeltaBaseMismatchError)
  })

  it('a wrong base that passes the base check (forged header) still never yields wrong bytes', () => {
    const other = new Uint8Array(base)
    for (let i = 10_000; i < 30_000; i += 97) other[i]! ^= 0x20
    const forged = new Uint8Array(delta)
    new DataView(forged.buffer).setUint32(14, zlib.crc32(other) >>> 0)
    expectDeltaError(() => decodeDelta(other, forged, 1 << 20), DeltaCorruptError)
  })

  it('any flipped byte gives a DeltaError or the exact target, never other bytes or a crash', () => {
    fc.assert(fc.property(fc.nat(delta.length - 1), fc.integer({ min: 1, max: 255 }), (at, mask) => {
      const bad = new Uint8Array(delta)
      bad[at]! ^= mask
      let out: Uint8Array | undefined
      try { out = decodeDelta(base, bad, 1 << 20) } catch (err) {
        expect(err).toBeInstanceOf(DeltaError)
        return
      }
      expect(Buffer.from(out).equals(Buffer.from(target))).toBe(true)
    }), { numRuns: 400 })
  })

  it('every truncation is refused', () => {
    for (let n = 0; n < delta.length; n++) expectDeltaError(() => decodeDelta(base, delta.subarray(0, n), 1 << 20))
    expectDeltaError(() => decodeDelta(base, concat(delta, new Uint8Array([0])), 1 << 20), DeltaFormatError)
  })

  it('refuses a target larger than maxOutput before decoding', () => {
    expectDeltaError(() => decodeDelta(base, delta, target.length - 1), DeltaOversizeError)
  })

  it('refuses a bomb: a tiny frame of RLE blocks that would expand to 128 MiB', () => {
    // zstd frame: magic, FHD = 0 (no content size, no checksum), window 2^20, then 1024 RLE blocks of 128 KiB.
    const blocks: number[] = []
    for (let k = 0; k < 1024; k++) {
      const last = k === 1023 ? 1 : 0
      const bh = last | (1 << 1) | ((128 * 1024) << 3)
      blocks.push(bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff, 0x41)
    }
    const frame = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, (20 - 10) << 3, ...blocks])
    expect(zstdFrameOutputBound(frame)).toBe(128 * 1024 * 1024)
    const header = new Uint8Array(delta.subarray(0, DELTA_HEADER_BYTES))
    new DataView(header.buffer).setUint32(6, 1000)
    expectDeltaError(() => decodeDelta(base, concat(header, frame), 1 << 20), DeltaOversizeError)
    // The same frame claiming a 128 MiB target is refused by maxOutput.
    new DataView(header.buffer).setUint32(6, 128 * 1024 * 1024)
    expectDeltaError(() => decodeDelta(base, concat(header, frame), 1 << 20), DeltaOversizeError)
  })

  it('refuses an oversized window, a reserved block type, and bytes after the frame', () => {
    expectDeltaError(() => zstdFrameOutputBound(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, (30 - 10) << 3, 1, 0, 0])), DeltaFormatError)
    expectDeltaError(() => zstdFrameOutputBound(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x07, 0, 0])), DeltaFormatError)
    expectDeltaError(() => zstdFrameOutputBound(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50, 0x01, 0, 0, 0])), DeltaFormatError)
  })

  it('reads its header and rejects other versions and codecs', () => {
    expect(readDeltaHeader(delta)).toMatchObject({ version: 1, codec: 1, targetLength: target.length, baseLength: base.length })
    for (const [at, v] of [[4, 2], [5, 9], [0, 0x41]] as const) {
      const bad = new Uint8Array(delta)
      bad[at] = v
      expectDeltaError(() => decodeDelta(base, bad, 1 << 20), DeltaFormatError)
    }
  })
})

// ---- base planning ----

function chunkRefs (data: Uint8Array): Array<DeltaChunkRef & { bytes: Uint8Array }> {
  const out: Array<DeltaChunkRef & { bytes: Uint8Array }> = []
  let off = 0
  for (const len of chunkLengths(data)) {
    const bytes = data.subarray(off, off + len)
    out.push({ key: Buffer.from(bytes).toString('base64'), length: len, bytes })
    off += len
  }
  return out
}

function concatOld (old: ReadonlyArray<{ bytes: Uint8Array }>, a: number, b: number): Uint8Array {
  return concat(...old.slice(a, b).map(c => c.bytes))
}

describe('planDeltaBases', () => {
  it('covers each changed chunk once, with bases of whole old chunks within maxBaseBytes', () => {
    fc.assert(fc.property(fc.nat(), fc.array(editArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 64, max: 512 }), (seed, edits, maxKiB) => {
      const v1 = textLike(400_000, seed)
      const v2 = applyEdits(v1, edits.map(e => ({ ...e, len: e.len * 20 })))
      const oldC = chunkRefs(v1)
      const newC = chunkRefs(v2)
      const oldKeys = new Set(oldC.map(c => c.key))
      const plans = planDeltaBases(oldC, newC, { maxBaseBytes: maxKiB * 1024 })
      const covered = plans.flatMap(p => p.targets)
      const changed = newC.map((c, i) => oldKeys.has(c.key) ? -1 : i).filter(i => i >= 0)
      expect(covered).toEqual(changed)
      for (const p of plans) {
        expect(p.baseStart).toBeGreaterThanOrEqual(0)
        expect(p.baseEnd).toBeLessThanOrEqual(oldC.length)
        expect(p.baseBytes).toBe(oldC.slice(p.baseStart, p.baseEnd).reduce((s, c) => s + c.length, 0))
        expect(p.baseBytes).toBeLessThanOrEqual(maxKiB * 1024)
      }
    }), { numRuns: 30 })
  })

  it('takes the old chunks between unchanged neighbours, and rebuilds every changed chunk from them', () => {
    const v1 = textLike(600_000, 77)
    const v2 = applyEdits(v1, [{ kind: 'replace', at: 100_000, len: 10, seed: 1 }, { kind: 'insert', at: 400_000, len: 300, seed: 2 }])
    const oldC = chunkRefs(v1)
    const newC = chunkRefs(v2)
    const plans = planDeltaBases(oldC, newC)
    expect(plans.length).toBe(2)
    let deltaBytes = 0
    let fullBytes = 0
    for (const p of plans) {
      expect(p.baseBytes).toBeLessThan(200_000)
      const base = concatOld(oldC, p.baseStart, p.baseEnd)
      const enc = new DeltaEncoder(base)
      for (const i of p.targets) {
        const t = newC[i]!.bytes
        const full = zlib.brotliCompressSync(t, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }).length
        const d = enc.encode(t, { fullBytes: full })
        expect(d).not.toBeNull()
        expect(Buffer.from(decodeDelta(base, d!, 65_536)).equals(Buffer.from(t))).toBe(true)
        deltaBytes += d!.length
        fullBytes += full
      }
    }
    expect(deltaBytes * 10).toBeLessThan(fullBytes)
  })

  it('with no unchanged chunk (a rebuilt binary), maps segments proportionally into the old file', () => {
    const v1 = binaryLike(3_000_000, 4)
    // Every 4 KiB, one byte changes (addresses shifting): no chunk survives.
    const v2 = new Uint8Array(v1)
    for (let i = 0; i < v2.length; i += 4096) v2[i]! ^= 0xff
    const oldC = chunkRefs(v1)
    const newC = chunkRefs(v2)
    const plans = planDeltaBases(oldC, newC, { maxBaseBytes: 256 * 1024 })
    expect(plans.flatMap(p => p.targets).length).toBe(newC.length)
    // The base of a segment covers the old bytes at the same offset.
    const oOff = [0]
    for (const c of oldC) oOff.push(oOff[oOff.length - 1]! + c.length)
    let nOff = 0
    const nStart = newC.map(c => { const s = nOff; nOff += c.length; return s })
    for (const p of plans) {
      const s = nStart[p.targets[0]!]!
      expect(oOff[p.baseStart]!).toBeLessThanOrEqual(s)
      // Whole chunks only: the window may stop up to one maximum-size chunk short of the segment's end.
      const last = p.targets[p.targets.length - 1]!
      expect(oOff[p.baseEnd]!).toBeGreaterThanOrEqual(nStart[last]! + newC[last]!.length - 65_536)
    }
  })

  it('returns no plan without an old file or without changes', () => {
    const c = chunkRefs(textLike(100_000, 1))
    expect(planDeltaBases([], c)).toEqual([])
    expect(planDeltaBases(c, c)).toEqual([])
  })
})

describe('chooseBaseFile', () => {
  const old = new Map([['dist/app.js', 100], ['dist/app.3f9a1c2b.js', 5000], ['dist/app.77aa00ff.js', 90_000], ['lib/libfoo-1.2.3.so', 10]])
  it('prefers the same path, then the same name modulo digits and hashes, nearest in size', () => {
    expect(chooseBaseFile('dist/app.js', 1, old)).toBe('dist/app.js')
    expect(chooseBaseFile('dist/app.0badf00d.js', 80_000, old)).toBe('dist/app.77aa00ff.js')
    expect(chooseBaseFile('lib/libfoo-1.2.4.so', 10, old)).toBe('lib/libfoo-1.2.3.so')
    expect(chooseBaseFile('README.md', 10, old)).toBeUndefined()
  })
})

// ---- a real release pair, when the bench cache has it (bench/chunk-params.ts fills it) ----

const CACHE = join(import.meta.dirname, '..', '..', 'bench', '.cache', 'chunk-params')
const LODASH = [join(CACHE, 'lodash-4.17.20', 'package'), join(CACHE, 'lodash-4.17.21', 'package')] as const

function walk (root: string): string[] {
  const out: string[] = []
  const rec = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) rec(p)
      else if (e.isFile()) out.push(relative(root, p))
    }
  }
  rec(root)
  return out.sort()
}

describe('real release pair', () => {
  it.skipIf(!existsSync(LODASH[0]) || !existsSync(LODASH[1]))('lodash 4.17.20→4.17.21: every changed chunk rebuilds exactly', () => {
    let rebuilt = 0
    for (const f of walk(LODASH[1])) {
      const v2 = new Uint8Array(readFileSync(join(LODASH[1], f)))
      const oldPath = join(LODASH[0], f)
      if (!existsSync(oldPath)) continue
      const oldC = chunkRefs(new Uint8Array(readFileSync(oldPath)))
      const newC = chunkRefs(v2)
      for (const p of planDeltaBases(oldC, newC)) {
        const base = concatOld(oldC, p.baseStart, p.baseEnd)
        const enc = new DeltaEncoder(base, { level: 9 })
        for (const i of p.targets) {
          const d = enc.encode(newC[i]!.bytes, { fullBytes: Number.MAX_SAFE_INTEGER })
          if (d === null) continue
          expect(Buffer.from(decodeDelta(base, d, 65_536)).equals(Buffer.from(newC[i]!.bytes))).toBe(true)
          rebuilt++
        }
      }
    }
    expect(rebuilt).toBeGreaterThan(10)
  })
})
