// RFC 8785 (JCS): the published examples (RFC §3.2.2–3.2.3 and the reference test data), the
// Appendix B number table, and shoal's stricter safe-integer profile.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { canonicalize, canonicalBytes, MAX_CANONICAL_DEPTH } from '../../src/core/canonical.js'
import { ShoalError } from '../../src/core/errors.js'

const any = { numbers: 'any' } as const

function code (fn: () => unknown): string {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ShoalError); return (err as ShoalError).code }
  throw new Error('expected a refusal')
}

function fromBits (hex: string): number {
  return Buffer.from(hex, 'hex').readDoubleBE(0)
}

describe('RFC 8785 published examples', () => {
  // Input text as published; JSON.parse gives the IEEE-754 values JCS works on.
  const cases: Array<[string, string, string]> = [
    ['§3.2.2 values (numbers, string escaping, literals)',
      '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": [null, true, false]\n}',
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'],
    ['§3.2.3 sorting by UTF-16 code units',
      '{\n  "\\u20ac": "Euro Sign",\n  "\\r": "Carriage Return",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "1": "One",\n  "\\ud83d\\ude00": "Emoji: Grinning Face",\n  "\\u0080": "Control",\n  "\\u00f6": "Latin Small Letter O With Diaeresis"\n}',
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\u{1f600}":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'],
    ['testdata weird.json',
      '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
      '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\u{1f602}":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'],
    ['testdata structures.json',
      '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
      '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}'],
    ['testdata arrays.json', '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]', '[56,{"1":[],"10":null,"d":true}]'],
    ['testdata french.json (no locale collation)',
      '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",\n  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
      '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French","p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}'],
    ['testdata unicode.json (no normalization)', '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n', '{"Unnormalized Unicode":"\u1e0d\u0307"}']
  ]
  for (const [name, input, expected] of cases) {
    it(name, () => {
      expect(canonicalize(JSON.parse(input), any)).toBe(expected)
      expect(Buffer.from(canonicalBytes(JSON.parse(input), any)).toString('utf8')).toBe(expected)
    })
  }

  it('Appendix B: IEEE-754 binary64 → ECMAScript number text', () => {
    const table: Array<[string, string]> = [
      ['0000000000000000', '0'], ['8000000000000000', '0'], ['0000000000000001', '5e-324'], ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'], ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'], ['c340000000000000', '-9007199254740992'], ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'], ['44b52d02c7e14af6', '1e+23'], ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'], ['444b1ae4d6e2ef4f', '999999999999999900000'], ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'], ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'], ['41b3de4355555554', '333333333.33333325'], ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'], ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'], ['43143ff3c1cb0959', '1424953923781206.2']
    ]
    for (const [bits, text] of table) expect(canonicalize(fromBits(bits), any), bits).toBe(text)
    // NaN and Infinity have no JSON form: an error, as the RFC requires.
    for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) expect(code(() => canonicalize([fromBits(bits)], any))).toBe('ERR_DECODE')
  })

  it('escapes exactly the characters JCS escapes', () => {
    const s = Array.from({ length: 0x80 }, (_, i) => String.fromCharCode(i)).join('') + '\u2028\u2029\ufeff\u{10ffff}'
    const out = canonicalize(s)
    expect(out).toBe('"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f' +
      '\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f' +
      ' !\\"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\u007f\u2028\u2029\ufeff\u{10ffff}"')
  })
})

describe('shoal profile', () => {
  it('holds only safe integers by default', () => {
    expect(canonicalize({ a: Number.MAX_SAFE_INTEGER, b: -Number.MAX_SAFE_INTEGER, c: -0, d: 0 })).toBe('{"a":9007199254740991,"b":-9007199254740991,"c":0,"d":0}')
    for (const v of [1.5, 2 ** 53, -(2 ** 53), 1e30, 0.1, NaN, Infinity, -Infinity]) expect(code(() => canonicalize({ v }))).toBe('ERR_DECODE')
    expect(canonicalize({ v: 1.5 }, any)).toBe('{"v":1.5}')
  })

  it('refuses what is not I-JSON or not plain JSON data', () => {
    for (const bad of [
      '\ud800', 'a\udc00b', { '\ud83d': 1 }, // lone surrogates, in a value or a key
      new Date(0), new Uint8Array(2), new Map(), [undefined], () => 1, 1n, Symbol('x'), undefined
    ]) expect(code(() => canonicalize(bad))).toBe('ERR_DECODE')
    expect(canonicalize(['\ud83d\ude00'])).toBe('["\u{1f600}"]') // a proper pair is fine
    expect(canonicalize({ a: undefined, b: 1 })).toBe('{"b":1}') // an absent optional field
    expect(canonicalize(Object.assign(Object.create(null) as object, { z: 1, y: [] }))).toBe('{"y":[],"z":1}')
  })

  it('bounds nesting depth (and so cycles)', () => {
    let deep: unknown = 1
    for (let i = 0; i < MAX_CANONICAL_DEPTH; i++) deep = [deep]
    expect(canonicalize(deep)).toBe('['.repeat(MAX_CANONICAL_DEPTH) + '1' + ']'.repeat(MAX_CANONICAL_DEPTH))
    expect(code(() => canonicalize([deep]))).toBe('ERR_DECODE')
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(code(() => canonicalize(cyclic))).toBe('ERR_DECODE')
  })

  it('matches a naive sorted JSON.stringify and is idempotent (property)', () => {
    const sortDeep = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(sortDeep)
      if (v !== null && typeof v === 'object') {
        return Object.fromEntries(Object.keys(v).sort().map(k => [k, sortDeep((v as Record<string, unknown>)[k])]))
      }
      return v
    }
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 5, noUnicodeString: false }), (v) => {
      const c = canonicalize(v, any)
      // Object.fromEntries re-inserts integer-like keys first, so compare through a parse.
      expect(c).toBe(canonicalize(JSON.parse(JSON.stringify(sortDeep(v))), any))
      expect(canonicalize(JSON.parse(c), any)).toBe(c)
      return true
    }), { numRuns: 500 })
  })

  it('sorts keys by UTF-16 code units, not code points or locale', () => {
    // U+FB33 sorts after U+1F600 (surrogates D83D DE00) in UTF-16, before it in code points.
    expect(canonicalize({ '\ufb33': 1, '\u{1f600}': 2, a: 3, B: 4, '': 5 })).toBe('{"":5,"B":4,"a":3,"\u{1f600}":2,"\ufb33":1}')
  })
})
