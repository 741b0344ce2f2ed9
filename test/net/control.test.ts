import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { DecodeError } from '../../src/core/errors.js'
import { decodeControl, encodeControl, headerString, headerStrings } from '../../src/net/control.js'

describe('control messages', () => {
  it('round-trips a header with no, one and several objects', () => {
    expect(decodeControl(encodeControl({ op: 'heads' }), 't')).toEqual({ header: { op: 'heads' }, parts: [] })
    const one = decodeControl(encodeControl({ op: 'x' }, [Uint8Array.of(1, 2, 3)]), 't')
    expect(one.parts.map(p => [...p])).toEqual([[1, 2, 3]])
    const many = decodeControl(encodeControl({ a: 1 }, [Uint8Array.of(1), new Uint8Array(0), Uint8Array.of(2, 3)]), 't')
    expect(many.header.sizes).toEqual([1, 0, 2])
    expect(many.parts.map(p => [...p])).toEqual([[1], [], [2, 3]])
  })

  it('refuses truncated, lying and non-object input with DecodeError', () => {
    const good = encodeControl({ a: 1 }, [Uint8Array.of(1), Uint8Array.of(2)])
    expect(() => decodeControl(good.subarray(0, 3), 't')).toThrow(DecodeError)
    expect(() => decodeControl(good.subarray(0, good.length - 1), 't')).toThrow(/sizes/)
    const bad = Buffer.from(good); bad.writeUInt32BE(10_000, 0)
    expect(() => decodeControl(bad, 't')).toThrow(DecodeError)
    expect(() => decodeControl(encodeControl({ sizes: [-1] } as never), 't')).toThrow(DecodeError)
    const arr = new TextEncoder().encode('[1]')
    const msg = new Uint8Array(4 + arr.length); new DataView(msg.buffer).setUint32(0, arr.length); msg.set(arr, 4)
    expect(() => decodeControl(msg, 't')).toThrow(/not a JSON object/)
  })

  it('never throws anything but DecodeError on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
      try { decodeControl(bytes, 't') } catch (err) { expect(err).toBeInstanceOf(DecodeError) }
    }))
  })

  it('checks header fields', () => {
    expect(headerString({ op: 'x' }, 'op', 't')).toBe('x')
    expect(() => headerString({ op: 3 }, 'op', 't')).toThrow(/"op"/)
    expect(() => headerString({ id: 'zz' }, 'id', 't', /^[0-9a-f]{64}$/)).toThrow(DecodeError)
    expect(headerStrings({ c: ['a', 'b'] }, 'c', 't', 2)).toEqual(['a', 'b'])
    expect(() => headerStrings({ c: ['a', 'b', 'c'] }, 'c', 't', 2)).toThrow(DecodeError)
    expect(() => headerStrings({ c: ['A!'] }, 'c', 't', 2, /^[a-z]+$/)).toThrow(DecodeError)
  })
})
