import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { DecodeError } from '../../src/core/errors.js'
import { HaveMap, MAX_INCREMENT, decodeIncrement, encodeIncrement } from '../../src/swarm/have-map.js'

describe('HaveMap', () => {
  it('encodes LSB-first, one bit per chunk, docs/swarm.md vector', () => {
    const m = new HaveMap(10)
    for (const i of [0, 3, 9]) expect(m.set(i)).toBe(true)
    expect(m.set(3)).toBe(false)
    expect([...m.encode()]).toEqual([0x09, 0x02])
    expect(m.count).toBe(3)
    expect(m.has(9)).toBe(true)
    expect(m.has(1)).toBe(false)
    expect(m.has(10)).toBe(false)
    expect(m.complete).toBe(false)
    expect(HaveMap.full(10).complete).toBe(true)
    expect(new HaveMap(0).encode().byteLength).toBe(0)
  })

  it('round-trips any set of indices', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 300 }).chain(n => fc.tuple(fc.constant(n), fc.uniqueArray(fc.nat({ max: Math.max(0, n - 1) }), { maxLength: n }))), ([n, idx]) => {
      const m = new HaveMap(n)
      for (const i of idx) if (i < n) m.set(i)
      const d = HaveMap.decode(m.encode(), n)
      expect(d.indices()).toEqual(m.indices())
      expect(d.count).toBe(m.count)
      expect(d.encode()).toEqual(m.encode())
    }))
  })

  it('refuses a wrong length or stray bits past the last chunk', () => {
    expect(() => HaveMap.decode(new Uint8Array(1), 10)).toThrow(DecodeError)
    expect(() => HaveMap.decode(new Uint8Array(3), 10)).toThrow(DecodeError)
    expect(() => HaveMap.decode(Uint8Array.of(0, 0x04), 10)).toThrow(/past chunk 9/)
    expect(() => HaveMap.decode(Uint8Array.of(0xff, 0x03), 10)).not.toThrow()
    expect(() => HaveMap.decode(Uint8Array.of(0xff), 8)).not.toThrow()
    expect(() => new HaveMap(10).set(10)).toThrow(/outside/)
  })
})

describe('have increments', () => {
  it('has the documented byte layout', () => {
    expect([...encodeIncrement([300, 0, 5, 1, 5])]).toEqual([4, 0, 0, 3, 0xa6, 0x02])
    expect(decodeIncrement(Uint8Array.of(4, 0, 0, 3, 0xa6, 0x02), 301)).toEqual([0, 1, 5, 300])
    expect([...encodeIncrement([])]).toEqual([0])
  })

  it('is compact: a run of adjacent chunks costs a byte each', () => {
    const run = Array.from({ length: 1000 }, (_, i) => 5000 + i)
    expect(encodeIncrement(run).byteLength).toBe(2 + 2 + 999)
  })

  it('round-trips any set of indices', () => {
    fc.assert(fc.property(fc.uniqueArray(fc.nat({ max: 3_999_999 }), { maxLength: 200 }), idx => {
      expect(decodeIncrement(encodeIncrement(idx), 4_000_000)).toEqual([...idx].sort((a, b) => a - b))
    }))
  })

  it('refuses out-of-bounds, truncated, trailing, overlong and oversized input', () => {
    const ok = encodeIncrement([1, 9])
    expect(() => decodeIncrement(ok, 9)).toThrow(/past the last chunk/)
    expect(decodeIncrement(ok, 10)).toEqual([1, 9])
    expect(() => decodeIncrement(ok.subarray(0, 2), 10)).toThrow(/truncated/)
    expect(() => decodeIncrement(Uint8Array.of(...ok, 0), 10)).toThrow(/trailing/)
    expect(() => decodeIncrement(Uint8Array.of(1, 0x81, 0x00), 10)).toThrow(/overlong/)
    expect(() => decodeIncrement(Uint8Array.of(1, 0xff, 0xff, 0xff, 0xff, 0x01), 1e6)).toThrow(/too long/)
    expect(() => decodeIncrement(Uint8Array.of(3, 0, 0, 0), 2)).toThrow(/3 indices for 2 chunks/)
    expect(() => decodeIncrement(encodeIncrement([0, 1, 2]), 10, 2)).toThrow(/at most 2/)
    expect(() => decodeIncrement(new Uint8Array(0), 10)).toThrow(DecodeError)
    expect(() => encodeIncrement(Array.from({ length: MAX_INCREMENT + 1 }, (_, i) => i))).toThrow(/at most/)
  })
})
