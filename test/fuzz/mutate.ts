// Seeded mutation of valid encodings: byte-level (bit flips, truncation, extension, splicing,
// huge length fields) and JSON-level (deep nesting, huge and unsafe numbers, `__proto__` and
// other prototype names as keys, wrong types, non-canonical spellings). Everything is a pure
// function of the PRNG, so (seed, input index) reproduces an input exactly.
import { canonicalize } from '../../src/core/canonical.js'

/** A small, fast, seedable PRNG (mulberry32). */
export class Rng {
  #s: number
  constructor (seed: number) { this.#s = seed >>> 0 }
  u32 (): number {
    this.#s = (this.#s + 0x6D2B79F5) >>> 0
    let t = this.#s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** 0 … n − 1 */
  int (n: number): number { return n <= 1 ? 0 : this.u32() % n }
  chance (p: number): boolean { return this.u32() / 2 ** 32 < p }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)]! }
  bytes (n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff
    return out
  }
}

/** Mixes a run seed and an input index into the seed of that input. */
export function inputSeed (seed: number, index: number): number {
  let h = (seed ^ 0x9E3779B9) >>> 0
  h = Math.imul(h ^ index, 0x85EBCA6B) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xC2B2AE35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

const HUGE_U32 = [0xffffffff, 0x7fffffff, 0x80000000, 0x00ffffff, 0x01000000, 0, 1]

function concat (...parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.byteLength
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** One to four byte-level mutations of `input`; `others` are spliced in from. */
export function mutateBytes (rng: Rng, input: Uint8Array, others: readonly Uint8Array[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input)
  const ops = 1 + rng.int(4)
  for (let k = 0; k < ops; k++) {
    const pos = rng.int(b.byteLength + 1)
    switch (rng.int(9)) {
      case 0: // bit flip
        if (b.byteLength > 0) { const i = rng.int(b.byteLength); b[i]! ^= 1 << rng.int(8) }
        break
      case 1: // random byte, often an interesting one
        if (b.byteLength > 0) b[rng.int(b.byteLength)] = rng.pick([0x00, 0xff, 0x7f, 0x80, 0x01, rng.u32() & 0xff])
        break
      case 2: // truncate
        b = b.subarray(0, pos)
        break
      case 3: // extend with random bytes
        b = concat(b.subarray(0, pos), rng.bytes(1 + rng.int(64)), b.subarray(pos))
        break
      case 4: { // duplicate a range (repeated frames, repeated fields)
        const from = rng.int(b.byteLength + 1)
        const len = rng.int(Math.min(4096, b.byteLength - from) + 1)
        b = concat(b.subarray(0, pos), b.subarray(from, from + len), b.subarray(pos))
        break
      }
      case 5: { // delete a range
        const len = rng.int(Math.min(256, b.byteLength - Math.min(pos, b.byteLength)) + 1)
        b = concat(b.subarray(0, pos), b.subarray(pos + len))
        break
      }
      case 6: { // splice in a piece of another valid encoding
        const o = others.length > 0 ? rng.pick(others) : b
        const from = rng.int(o.byteLength + 1)
        const len = rng.int(o.byteLength - from + 1)
        b = rng.chance(0.5)
          ? concat(b.subarray(0, pos), o.subarray(from, from + len))
          : concat(b.subarray(0, pos), o.subarray(from, from + len), b.subarray(pos))
        break
      }
      case 7: { // a huge (or zero) u32 length field, big- or little-endian
        if (b.byteLength < 4) break
        const at = rng.chance(0.3) ? 0 : rng.int(b.byteLength - 3)
        const v = rng.pick(HUGE_U32)
        const be = rng.chance(0.7)
        for (let i = 0; i < 4; i++) b[at + i] = (v >>> (be ? 24 - 8 * i : 8 * i)) & 0xff
        break
      }
      default: // overwrite a range with one repeated byte
        if (b.byteLength > 0) {
          const len = 1 + rng.int(Math.min(64, b.byteLength - Math.min(pos, b.byteLength - 1)))
          b.fill(rng.pick([0x00, 0xff, 0x22, 0x5b, 0x7b, 0x30]), Math.min(pos, b.byteLength - 1), Math.min(pos, b.byteLength - 1) + len)
        }
    }
  }
  return b
}

// ---- JSON ----

const enc = new TextEncoder()
const dec = new TextDecoder()

const built = new Map<string, string>()
/** The large hostile texts are the same every time: built once per worker. */
function memo (key: string, make: () => string): string {
  let v = built.get(key)
  if (v === undefined) { v = make(); built.set(key, v) }
  return v
}

/** Raw JSON texts a decoder must survive; substituted for a value or a key's value. */
function hostileJson (rng: Rng): string {
  switch (rng.int(14)) {
    case 0: { const n = rng.pick([100, 1000, 10_000, 100_000]); return memo(`[${n}`, () => '['.repeat(n) + ']'.repeat(n)) }
    case 1: { const n = rng.pick([100, 10_000, 50_000]); return memo(`{${n}`, () => '{"a":'.repeat(n) + '1' + '}'.repeat(n)) }
    case 2: return rng.pick(['9007199254740992', '9007199254740993', '18446744073709551616', '1e308', '1e999', '-1e999', '123456789012345678901234567890'])
    case 3: return rng.pick(['-1', '-0', '0.5', '1.0', '1e2', '-9007199254740992', '4294967296', '4294967295', '65536'])
    case 4: return '{"__proto__":{"polluted":true}}'
    case 5: return '{"constructor":{"prototype":{"polluted":true}},"toString":1,"hasOwnProperty":2}'
    case 6: return rng.pick(['null', 'true', 'false', '[]', '{}', '""', '[null]', '[{}]'])
    case 7: { const n = rng.pick([256, 4097, 70_000, 1_100_000]); return memo(`s${n}`, () => JSON.stringify('x'.repeat(n))) }
    case 8: return rng.pick(['"\\ud800"', '"\\u0000"', '"../../etc/passwd"', '"/abs"', '"a\\u0000b"', '"\\u202e"', '"é"', '"2026-02-30T00:00:00Z"', '"9999-12-31T23:59:59Z"'])
    case 9: { const n = rng.pick([1000, 100_000]); return memo(`a${n}`, () => '[' + new Array(n).fill('0').join(',') + ']') }
    case 10: { const n = rng.pick([100, 10_000]); return memo(`o${n}`, () => '{' + Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',') + '}') }
    case 11: return JSON.stringify('a'.repeat(64)) // a plausible hex-ish string of the wrong alphabet
    case 12: return JSON.stringify('0'.repeat(rng.pick([63, 64, 65, 86, 88])))
    default: return String(rng.u32())
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

// Every container in `v` with a path to it, so a mutation can pick any of them.
function containers (v: Json, out: Array<Json[] | Record<string, Json>> = [], depth = 0): Array<Json[] | Record<string, Json>> {
  if (depth > 64 || v === null || typeof v !== 'object') return out
  out.push(v)
  for (const x of Array.isArray(v) ? v : Object.values(v)) containers(x, out, depth + 1)
  return out
}

const MAX_JSON_TEXT = 4 * 1024 * 1024
const PLACEHOLDER = (i: number): string => `\u0000fuzz-placeholder-${i}\u0000`
const PLACEHOLDER_RE = /"\\u0000fuzz-placeholder-(\d+)\\u0000"/g

/**
 * A JSON-level mutation of a JSON text: one to three edits of values or keys anywhere in the tree,
 * then serialized canonically (so the mutation reaches the field checks behind the canonical-form
 * check) or, sometimes, in another spelling. Returns undefined when `input` is not JSON.
 */
export function mutateJson (rng: Rng, input: Uint8Array): Uint8Array | undefined {
  try {
    return editJson(rng, input)
  } catch {
    return undefined // too deep to clone or serialize (an earlier mutation nested it): mutate bytes instead
  }
}

function editJson (rng: Rng, input: Uint8Array): Uint8Array | undefined {
  // Each edit may copy a container into another, doubling the text: three edits of an already
  // stacked megabyte text are hundreds of MB (a fatal OOM, not a worker's clean heap-limit death).
  if (input.byteLength > MAX_JSON_TEXT / 8) return undefined
  let v: Json
  try { v = JSON.parse(dec.decode(input)) as Json } catch { return undefined }
  const raw: string[] = []
  const hostile = (): string => { raw.push(hostileJson(rng)); return PLACEHOLDER(raw.length - 1) }
  const edits = 1 + rng.int(3)
  for (let k = 0; k < edits; k++) {
    const all = containers(v)
    if (all.length === 0) { v = hostile(); break }
    const c = rng.pick(all)
    if (Array.isArray(c)) {
      const i = rng.int(c.length + 1)
      switch (rng.int(4)) {
        case 0: c.splice(i, 1); break
        case 1: c.splice(i, 0, c[i] === undefined ? hostile() : structuredClone(c[i])); break // duplicate an entry (a copy: shared subtrees would make repeated edits grow the text exponentially)
        default: c[Math.min(i, Math.max(0, c.length - 1))] = hostile()
      }
    } else {
      const keys = Object.keys(c)
      const key = keys.length > 0 ? rng.pick(keys) : 'x'
      switch (rng.int(6)) {
        case 0: delete c[key]; break
        case 1: // an own key, `__proto__` included (plain assignment would set the prototype)
          Object.defineProperty(c, rng.pick(['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'unknown', '']), { value: hostile(), enumerable: true, writable: true, configurable: true })
          break
        case 2: c[key] = structuredClone(rng.pick(all)); break // a value of the wrong shape (a copy: the tree stays acyclic)
        default: c[key] = hostile()
      }
    }
  }
  let text: string
  try {
    text = rng.chance(0.85) ? canonicalize(v, { numbers: 'any' }) : JSON.stringify(v, null, rng.int(3))
  } catch {
    text = JSON.stringify(v) // numbers beyond the canonical profile, lone surrogates…
  }
  // Stacked edits of megabyte values: past this, mutate bytes instead (every cap under test is
  // ≤ 2 MiB but the manifest's). Measured before substituting: copies of a container holding
  // hostile values multiply them, and building that text first took the worker (and with a
  // fatal OOM, the whole fuzz process) past its heap.
  let size = text.length // a rope's length: nothing is flattened yet
  if (size > MAX_JSON_TEXT) return undefined
  for (const m of text.matchAll(PLACEHOLDER_RE)) size += raw[Number(m[1])]!.length - m[0].length
  if (size > MAX_JSON_TEXT) return undefined
  text = text.replace(PLACEHOLDER_RE, (_m, i: string) => raw[Number(i)]!)
  return enc.encode(text)
}
