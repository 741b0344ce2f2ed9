import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import fc from 'fast-check'
import {
  DEFAULT_CHUNKER_OPTIONS, FastCdc, InvalidChunkerOptionsError, chunkLengths, chunkStream, validateChunkerOptions,
  type ChunkerOptions, type NormalizationLevel
} from '../../src/core/chunker.js'
import { GEAR_HEX, MASKS } from '../../src/core/gear.js'
import { ShoalError } from '../../src/core/errors.js'

// --- A second, deliberately plain implementation: the `fastcdc` crate's v2020 cut() restated
// line for line in BigInt (full 64-bit hash, two bytes per step with the left-shifted table), so
// the fast int32 path in chunker.ts is checked against the published algorithm, not against itself.

const M64 = (1n << 64n) - 1n
const GEAR = GEAR_HEX.map((h) => BigInt('0x' + h))
const GEAR_LS = GEAR.map((g) => (g << 1n) & M64)
const mask64 = (b: number): bigint => {
  const [hi, lo] = MASKS[b] as readonly [number, number]
  return (BigInt(hi) << 32n) | BigInt(lo >>> 0)
}

function refCut (src: Uint8Array, start: number, remaining: number, min: number, avg: number, max: number,
  ms: bigint, ml: bigint): [bigint, number] {
  if (remaining <= min) return [0n, remaining]
  let center = avg
  if (remaining > max) remaining = max
  else if (remaining < center) center = remaining
  const limit1 = Math.floor(center / 2)
  const limit2 = Math.floor(remaining / 2)
  let index = Math.floor(min / 2)
  let hash = 0n
  for (; index < limit1; index++) {
    const a = index * 2
    hash = ((hash << 2n) + (GEAR_LS[src[start + a]!] as bigint)) & M64
    if ((hash & (ms << 1n)) === 0n) return [hash, a]
    hash = (hash + (GEAR[src[start + a + 1]!] as bigint)) & M64
    if ((hash & ms) === 0n) return [hash, a + 1]
  }
  for (; index < limit2; index++) {
    const a = index * 2
    hash = ((hash << 2n) + (GEAR_LS[src[start + a]!] as bigint)) & M64
    if ((hash & (ml << 1n)) === 0n) return [hash, a]
    hash = (hash + (GEAR[src[start + a + 1]!] as bigint)) & M64
    if ((hash & ml) === 0n) return [hash, a + 1]
  }
  return [hash, remaining]
}

function refChunks (src: Uint8Array, min: number, avg: number, max: number, level: number): Array<[bigint, number]> {
  const bits = Math.round(Math.log2(avg))
  const ms = mask64(bits + level)
  const ml = mask64(bits - level)
  const out: Array<[bigint, number]> = []
  for (let pos = 0; pos < src.length;) {
    const c = refCut(src, pos, src.length - pos, min, avg, max, ms, ml)
    out.push(c)
    pos += c[1]
  }
  return out
}

/** Deterministic pseudo-random bytes (xorshift32), the same on every machine. */
function prng (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed | 0
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x; out[i + 1] = x >>> 8; out[i + 2] = x >>> 16; out[i + 3] = x >>> 24
  }
  return out
}

/** Mostly random with runs of one repeated byte (where the gear hash never matches). */
function mixed (n: number, seed: number): Uint8Array {
  const out = prng(n, seed)
  for (let at = 5000; at + 140_000 < n; at += 300_000) out.fill(at & 0xff, at, at + 140_000)
  return out
}

const opts = (minSize: number, avgSize: number, maxSize: number): ChunkerOptions => ({ minSize, avgSize, maxSize })

function pushAll (cdc: FastCdc, data: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let prev = 0
  for (const c of [...cuts, data.length]) {
    out.push(...cdc.push(data.subarray(prev, c)))
    prev = c
  }
  const tail = cdc.finish()
  if (tail !== null) out.push(tail)
  return out
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('gear table and masks', () => {
  it('GEAR[i] is the first 8 bytes of MD5 of 64 bytes equal to i', () => {
    expect(GEAR_HEX).toHaveLength(256)
    for (let i = 0; i < 256; i++) {
      const md5 = createHash('md5').update(new Uint8Array(64).fill(i)).digest()
      expect(GEAR_HEX[i]).toBe(md5.subarray(0, 8).toString('hex'))
    }
  })

  it('masks are the published FastCDC values, mask b having b bits set', () => {
    expect(mask64(12)).toBe(0x0000d90103530000n)
    expect(mask64(14)).toBe(0x0000d90313530000n)
    expect(mask64(16)).toBe(0x0000d90303537000n)
    expect(mask64(24)).toBe(0x0000d93777577000n)
    for (let b = 6; b <= 24; b++) {
      expect(mask64(b).toString(2).replaceAll('0', '')).toHaveLength(b)
    }
  })
})

describe('known answers from the fastcdc crate (v2020)', () => {
  it('all zeros, 64/256/1024 level 1: ten max-size chunks, hash 14169102344523991076', () => {
    const zeros = new Uint8Array(10240)
    const ref = refChunks(zeros, 64, 256, 1024, 1)
    expect(ref).toEqual(Array.from({ length: 10 }, () => [14169102344523991076n, 1024]))
    expect(chunkLengths(zeros, opts(64, 256, 1024), 1)).toEqual(Array(10).fill(1024))
  })

  // The crate's fixture (test/fixtures/SekienAkashita.jpg in nlfiedler/fastcdc-rs, 109466 bytes)
  // is not redistributed here: point SHOAL_FASTCDC_FIXTURE at a copy to replay its vectors.
  const fixture = process.env.SHOAL_FASTCDC_FIXTURE
  const vectors: Array<{ o: ChunkerOptions, level: NormalizationLevel, chunks: Array<[bigint, number]> }> = [
    {
      o: opts(4096, 16384, 65535),
      level: 1,
      chunks: [[17968276318003433923n, 21325], [8197189939299398838n, 17140], [13019990849178155730n, 28084],
        [4509236223063678303n, 18217], [2504464741100432583n, 24700]]
    },
    { o: opts(8192, 32768, 131072), level: 1, chunks: [[15733367461443853673n, 66549], [6321136627705800457n, 42917]] },
    { o: opts(16384, 65536, 262144), level: 1, chunks: [[2504464741100432583n, 109466]] },
    {
      o: opts(4096, 16384, 65535),
      level: 0,
      chunks: [[443122261039895162n, 6634], [15733367461443853673n, 59915], [10460176299449652894n, 25597],
        [6197802202431009942n, 5237], [6321136627705800457n, 12083]]
    },
    {
      o: opts(8192, 16384, 32768),
      level: 3,
      chunks: [[10718006254707412376n, 17350], [13104072099671895560n, 19911], [12322483109039221194n, 17426],
        [16009206469796846404n, 17519], [2473608525189754172n, 19940], [2504464741100432583n, 17320]]
    }
  ]
  it.skipIf(fixture === undefined || !existsSync(fixture))('SekienAkashita.jpg vectors (hash and length)', () => {
    const img = new Uint8Array(readFileSync(fixture as string))
    expect(sha(img)).toBe('d9e749d9367fc908876749d6502eb212fee88c9a94892fb07da5ef3ba8bc39ed')
    for (const v of vectors) {
      expect(refChunks(img, v.o.minSize, v.o.avgSize, v.o.maxSize, v.level)).toEqual(v.chunks)
      expect(chunkLengths(img, v.o, v.level)).toEqual(v.chunks.map((c) => c[1]))
      expect(pushAll(new FastCdc(v.o, v.level), img, [1, 5000, 40001]).map((c) => c.length)).toEqual(v.chunks.map((c) => c[1]))
    }
  })
})

describe('fast path equals the plain reference', () => {
  const cases: Array<[ChunkerOptions, NormalizationLevel]> = [
    [DEFAULT_CHUNKER_OPTIONS, 2], [DEFAULT_CHUNKER_OPTIONS, 1], [opts(4096, 16384, 65535), 2],
    [opts(64, 256, 1024), 2], [opts(64, 256, 1025), 3], [opts(256, 1024, 4096), 0], [opts(2048, 8192, 32768), 2]
  ]
  for (const [o, level] of cases) {
    it(`${o.minSize}/${o.avgSize}/${o.maxSize} level ${level}`, () => {
      for (const [n, seed] of [[700_001, 11], [300_000, 12], [777, 13], [o.minSize + 1, 14]] as const) {
        const data = mixed(n, seed)
        expect(chunkLengths(data, o, level)).toEqual(refChunks(data, o.minSize, o.avgSize, o.maxSize, level).map((c) => c[1]))
      }
    })
  }

  it('pinned cut points (guards against any drift: chunks must match across shoal versions)', () => {
    expect(chunkLengths(prng(512 * 1024, 7))).toEqual([31599, 8398, 19599, 8856, 17886, 16546, 19371, 20559, 17376,
      20026, 19322, 13796, 20365, 17269, 19141, 20797, 8972, 18130, 31317, 5657, 16912, 17440, 5677, 18043, 8234,
      18283, 20874, 17910, 17833, 19331, 8769])
  })
})

describe('chunk properties', () => {
  it('chunks concatenate to the input and stay within [min, max] except the last', () => {
    for (const o of [DEFAULT_CHUNKER_OPTIONS, opts(2048, 8192, 32768), opts(8192, 32768, 131072), opts(64, 256, 1024)]) {
      const data = mixed(3 * 1024 * 1024 + 17, o.avgSize)
      const chunks = pushAll(new FastCdc(o), data, [1 << 20, 2 << 20])
      expect(sha(concat(chunks))).toBe(sha(data))
      expect(chunks.map((c) => c.length)).toEqual(chunkLengths(data, o))
      for (const c of chunks.slice(0, -1)) {
        expect(c.length).toBeGreaterThanOrEqual(o.minSize)
        expect(c.length).toBeLessThanOrEqual(o.maxSize)
      }
      // Runs of one byte never match: those give max-size chunks.
      expect(chunks.some((c) => c.length === o.maxSize)).toBe(true)
    }
  })

  it('non-default sizes give a mean chunk near the asked average on random data', () => {
    const data = prng(16 * 1024 * 1024, 3)
    for (const o of [opts(2048, 8192, 32768), DEFAULT_CHUNKER_OPTIONS, opts(8192, 32768, 131072)]) {
      const mean = data.length / chunkLengths(data, o).length
      expect(mean).toBeGreaterThan(o.avgSize)
      expect(mean).toBeLessThan(o.avgSize * 1.35)
    }
  })

  it('empty input gives no chunks', async () => {
    expect(chunkLengths(new Uint8Array(0))).toEqual([])
    const cdc = new FastCdc()
    expect(cdc.push(new Uint8Array(0))).toEqual([])
    expect(cdc.finish()).toBeNull()
    const got: Uint8Array[] = []
    for await (const c of chunkStream((async function * () { yield new Uint8Array(0) })())) got.push(c)
    expect(got).toEqual([])
  })

  it('input shorter than min is one chunk', () => {
    const data = prng(100, 1)
    expect(chunkLengths(data)).toEqual([100])
    expect(pushAll(new FastCdc(), data, [50]).map((c) => Array.from(c))).toEqual([Array.from(data)])
  })

  it('chunks are independent copies: no view of the input or of the internal buffer', () => {
    const data = prng(200_000, 5)
    const cdc = new FastCdc()
    const first = cdc.push(data.subarray(0, 3000)) // all pending
    expect(first).toEqual([])
    const chunks = [...cdc.push(data.subarray(3000, 150_000))]
    const snapshot = chunks.map((c) => sha(c))
    expect(chunks.length).toBeGreaterThan(2)
    for (const c of chunks) {
      expect(c.buffer).not.toBe(data.buffer)
      expect(c.byteLength).toBe(c.buffer.byteLength)
    }
    data.fill(0) // the caller reuses its buffer...
    chunks.push(...cdc.push(prng(100_000, 6))) // ...and the chunker its own
    expect(cdc.finish()).not.toBeNull()
    expect(chunks.slice(0, snapshot.length).map((c) => sha(c))).toEqual(snapshot)
  })

  it('the same output for any split of the input', () => {
    const small = opts(256, 1024, 4096)
    const data = mixed(400_000, 21)
    const expected = chunkLengths(data, small)
    const expectedDefault = chunkLengths(data)
    const splits = fc.uniqueArray(fc.integer({ min: 1, max: data.length - 1 }), { maxLength: 60 })
      .map((a) => a.sort((x, y) => x - y))
    fc.assert(fc.property(splits, (cuts) => {
      const a = pushAll(new FastCdc(small), data, cuts)
      expect(a.map((c) => c.length)).toEqual(expected)
      expect(sha(concat(a))).toBe(sha(data))
      expect(pushAll(new FastCdc(), data, cuts).map((c) => c.length)).toEqual(expectedDefault)
    }), { numRuns: 40, seed: 1 })
    // Byte by byte for one stretch: every odd/even pending boundary is exercised.
    const cdc = new FastCdc(small)
    const got: Uint8Array[] = []
    for (let i = 0; i < 40_000; i++) got.push(...cdc.push(data.subarray(i, i + 1)))
    got.push(...cdc.push(data.subarray(40_000)))
    got.push(cdc.finish() as Uint8Array)
    expect(got.map((c) => c.length)).toEqual(expected)
    expect(sha(concat(got))).toBe(sha(data))
  })

  it('chunkStream yields the same chunks from an async source', async () => {
    const data = mixed(1_000_000, 8)
    async function * source (): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < data.length; o += 65_537) yield Buffer.from(data.subarray(o, o + 65_537))
    }
    const got: Uint8Array[] = []
    for await (const c of chunkStream(source())) got.push(c)
    expect(got.map((c) => c.length)).toEqual(chunkLengths(data))
    expect(sha(concat(got))).toBe(sha(data))
  })

  it('resists shifts: inserting or deleting bytes near the start changes few chunks', () => {
    const data = prng(32 * 1024 * 1024, 99)
    const digests = (buf: Uint8Array): string[] => {
      const out: string[] = []
      let o = 0
      for (const n of chunkLengths(buf)) { out.push(sha(buf.subarray(o, o + n))); o += n }
      return out
    }
    const before = new Set(digests(data))
    const inserted = concat([data.subarray(0, 1000), new Uint8Array([1, 2, 3, 4, 5, 6, 7]), data.subarray(1000)])
    const deleted = concat([data.subarray(0, 30_000), data.subarray(30_005)])
    for (const changed of [inserted, deleted]) {
      const after = digests(changed)
      const kept = after.filter((d) => before.has(d)).length
      expect(kept / after.length).toBeGreaterThanOrEqual(0.9)
      expect(after.length - kept).toBeLessThanOrEqual(3) // only the chunks around the edit
    }
  })
})

describe('validateChunkerOptions', () => {
  it('fills defaults and accepts valid sizes', () => {
    expect(validateChunkerOptions({})).toEqual({ minSize: 4096, avgSize: 16384, maxSize: 65536 })
    expect(validateChunkerOptions({ avgSize: 32768, maxSize: 131072 })).toEqual({ minSize: 4096, avgSize: 32768, maxSize: 131072 })
    expect(DEFAULT_CHUNKER_OPTIONS).toEqual({ minSize: 4096, avgSize: 16384, maxSize: 65536 })
    expect(Object.isFrozen(DEFAULT_CHUNKER_OPTIONS)).toBe(true)
  })

  const bad: Array<[Partial<ChunkerOptions>, RegExp]> = [
    [{ minSize: 32 }, /minSize must be between 64 and/],
    [{ minSize: 4095 }, /minSize must be even/],
    [{ avgSize: 12000 }, /avgSize must be a power of two/],
    [{ avgSize: 128, minSize: 64 }, /avgSize must be between 256/],
    [{ maxSize: 32 * 1024 * 1024 }, /maxSize must be between 1024 and 16777216/],
    [{ minSize: 16384 }, /minSize < avgSize < maxSize/],
    [{ maxSize: 16384 }, /minSize < avgSize < maxSize/],
    [{ minSize: 4096.5 }, /integer/],
    [{ avgSize: Number.NaN }, /integer/]
  ]
  for (const [o, msg] of bad) {
    it(`rejects ${JSON.stringify(o)}`, () => {
      expect(() => validateChunkerOptions(o)).toThrow(InvalidChunkerOptionsError)
      expect(() => validateChunkerOptions(o)).toThrow(msg)
      expect(() => new FastCdc({ ...DEFAULT_CHUNKER_OPTIONS, ...o })).toThrow(InvalidChunkerOptionsError)
    })
  }

  it('errors are ShoalErrors with a stable code', () => {
    try {
      validateChunkerOptions({ minSize: 1 })
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(ShoalError)
      expect((err as ShoalError).code).toBe('ERR_INVALID_CHUNKER_OPTIONS')
    }
    expect(() => new FastCdc(DEFAULT_CHUNKER_OPTIONS, 4 as NormalizationLevel)).toThrow(/normalization level/)
  })
})
