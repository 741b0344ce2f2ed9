// Signed control records (promote, halt, rollback): exact bytes, strict decoding, threshold
// verification against the root's publisher role, replay refusal and the per-release fold.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { ed25519 } from '@noble/curves/ed25519.js'
import { canonicalize } from '../../src/core/canonical.js'
import { ShoalError, DecodeError, OversizeError, InvalidArgumentError } from '../../src/core/errors.js'
import { generateKeyPair, keyPairFromSecret, sign } from '../../src/core/keys.js'
import { createRoot } from '../../src/core/root.js'
import { appendSignatures, encodeEnvelope, signEnvelope, signingBytes, SignatureThresholdError, RollbackError, MetadataExpiredError } from '../../src/core/signed.js'
import { WrongPackageError } from '../../src/core/manifest.js'
import {
  signRecord, decodeRecord, verifyRecord, checkRecordAdvance, applyRecords, recordId, RecordExpiredError, MAX_RECORD_BYTES,
  type RecordBody, type SignedRecord
} from '../../src/rollout/records.js'
import { parseRolloutSpec, ringState } from '../../src/rollout/policy.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const now = new Date('2026-06-01T00:00:00Z')
const later = new Date('2027-06-01T00:00:00Z')
const inAMonth = new Date('2026-07-01T00:00:00Z')

function thrown (fn: () => unknown): ShoalError {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ShoalError); return err as ShoalError }
  throw new Error('expected a refusal')
}
const parse = (b: Uint8Array): any => JSON.parse(dec.decode(b)) // eslint-disable-line @typescript-eslint/no-explicit-any
/** Re-encodes a JSON value canonically, like a forger who knows the format would. */
const reencode = (v: unknown): Uint8Array => enc.encode(canonicalize(v))

const rootKeys = [generateKeyPair()]
const publisherKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()]
const onlineKeys = [generateKeyPair()]
const root = createRoot({ rootKeys, rootThreshold: 1, publisherKeys, publisherThreshold: 2, onlineKeys, expires: later })
const two = publisherKeys.slice(0, 2)

type SignArgs = Parameters<typeof signRecord>[0]
function rec (o: Partial<SignArgs> = {}) {
  return signRecord({ action: 'promote', package: 'app', version: '2.0.0', ring: 'broad', seq: 1, issued: now, expires: inAMonth, signers: two, ...o })
}

describe('signRecord / decodeRecord', () => {
  it('reproduces the worked example of docs/rollout.md byte for byte', () => {
    const publisher = keyPairFromSecret(new Uint8Array(32).fill(2))
    const { bytes, id, record } = signRecord({
      action: 'promote', package: 'hello', version: '1.0.0', ring: 'pilot', seq: 1,
      issued: new Date('2026-06-01T00:00:00Z'), expires: new Date('2026-07-01T00:00:00Z'), signers: [publisher]
    })
    const signed = '{"_type":"record","action":"promote","expires":"2026-07-01T00:00:00Z","formatVersion":1,"issued":"2026-06-01T00:00:00Z","package":"hello","ring":"pilot","seq":1,"version":"1.0.0"}'
    expect(dec.decode(signingBytes('record', record.signed))).toBe('shoal/v1/record\n' + signed)
    expect(dec.decode(bytes)).toBe(EXAMPLE)
    expect(bytes.length).toBe(EXAMPLE_BYTES)
    expect(id).toBe(createHash('sha256').update(bytes).digest('hex'))
    expect(id).toBe(EXAMPLE_ID)
    // Checked independently of shoal's own code: @noble's Ed25519 over the documented signing bytes.
    const sig = Buffer.from(parse(bytes).signatures[0].sig, 'base64')
    expect(ed25519.verify(sig, enc.encode('shoal/v1/record\n' + signed), ed25519.getPublicKey(new Uint8Array(32).fill(2)))).toBe(true)
    expect(ed25519.verify(sig, enc.encode('shoal/v1/head\n' + signed), ed25519.getPublicKey(new Uint8Array(32).fill(2)))).toBe(false)
  })

  it('round-trips each action, with only the fields that action has', () => {
    const cases = [
      rec(),
      rec({ action: 'halt', ring: undefined, seq: 2 }),
      rec({ action: 'rollback', ring: undefined, to: '1.9.3', seq: 3 })
    ]
    for (const { record, bytes, id } of cases) {
      const back = decodeRecord(bytes)
      expect(back).toEqual(record)
      expect(encodeEnvelope(back)).toEqual(bytes)
      expect(recordId(bytes)).toBe(id)
      verifyRecord(back, root, now)
    }
    expect(Object.keys(cases[1]!.record.signed)).not.toContain('ring')
    expect(cases[2]!.record.signed.to).toBe('1.9.3')
  })

  const badArgs: Array<[string, Partial<SignArgs>, RegExp]> = [
    ['unknown action', { action: 'resume' as 'halt' }, /must be promote, halt or rollback/],
    ['bad package', { package: '../app' }, /package name/],
    ['bad version', { version: 'v2' }, /not a semantic version/],
    ['promote without ring', { ring: undefined }, /promote needs a ring label/],
    ['promote with bad ring', { ring: 'a b' }, /promote needs a ring label/],
    ['halt with a ring', { action: 'halt' }, /halt takes no ring/],
    ['rollback without to', { action: 'rollback', ring: undefined }, /rollback needs the version/],
    ['rollback to itself', { action: 'rollback', ring: undefined, to: '2.0.0' }, /to the same version/],
    ['promote with to', { to: '1.0.0' }, /takes no target version/],
    ['seq 0', { seq: 0 }, /sequence 0/],
    ['unsafe seq', { seq: 2 ** 53 }, /sequence/],
    ['expiry not after issue', { expires: now }, /must be after its issue time/]
  ]
  for (const [name, o, re] of badArgs) {
    it(`signRecord refuses ${name} (InvalidArgumentError)`, () => {
      const e = thrown(() => rec(o))
      expect(e).toBeInstanceOf(InvalidArgumentError)
      expect(e.message).toMatch(re)
    })
  }

  it('accepts only the canonical bytes', () => {
    const { bytes } = rec()
    const text = dec.decode(bytes)
    const spellings = [
      JSON.stringify(parse(bytes), null, 2), // pretty-printed
      text + '\n', // trailing newline
      '\ufeff' + text, // byte-order mark
      text.replace('"seq":1', '"seq":1.0'), // another number spelling
      text.replace('{"_type":"record",', '{"_type":"record","_type":"record",'), // duplicate key
      text.replace('"package":"app"', '"package":"\\u0061pp"') // needless escape
    ]
    for (const s of spellings) {
      const e = thrown(() => decodeRecord(enc.encode(s)))
      expect(e).toBeInstanceOf(DecodeError)
    }
    expect(thrown(() => decodeRecord(enc.encode(spellings[0]!))).message).toMatch(/not in canonical form/)
    // …and the same JSON re-encoded canonically is accepted.
    expect(decodeRecord(reencode(JSON.parse(spellings[0]!)))).toEqual(decodeRecord(bytes))
  })

  it('refuses malformed records with typed errors naming the field', () => {
    const base = parse(rec().bytes)
    const edit = (f: (v: any) => void): Uint8Array => { const v = structuredClone(base); f(v); return reencode(v) } // eslint-disable-line @typescript-eslint/no-explicit-any
    const cases: Array<[Uint8Array, RegExp]> = [
      [edit(v => { v.signed._type = 'head' }), /_type is "head", expected "record"/],
      [edit(v => { v.signed.formatVersion = 2 }), /unsupported formatVersion 2/],
      [edit(v => { v.signed.action = 'resume' }), /action "resume" is not promote, halt or rollback/],
      [edit(v => { v.signed.action = 7 }), /action number is not/],
      [edit(v => { v.signed.extra = 1 }), /unknown field "extra"/],
      [edit(v => { delete v.signed.seq }), /signed.seq is missing/],
      [edit(v => { delete v.signed.ring }), /a promote record needs ring/],
      [edit(v => { v.signed.to = '1.0.0' }), /a promote record has no to/],
      [edit(v => { v.signed.action = 'halt' }), /a halt record has no ring/],
      [edit(v => { v.signed.action = 'rollback'; delete v.signed.ring }), /a rollback record needs to/],
      [edit(v => { v.signed.action = 'rollback'; delete v.signed.ring; v.signed.to = '2.0.0' }), /to the same version/],
      [edit(v => { v.signed.ring = '../x' }), /ring "..\/x" does not match/],
      [edit(v => { v.signed.package = 'App' }), /package "App" does not match/],
      [edit(v => { v.signed.version = '2.0' }), /version "2.0" does not match/],
      [edit(v => { v.signed.seq = 0 }), /seq must be a whole number in 1…/],
      [edit(v => { v.signed.seq = -1 }), /seq must be/],
      [edit(v => { v.signed.expires = v.signed.issued }), /expires .* is not after issued/],
      [edit(v => { v.signed.issued = '2026-02-30T00:00:00Z' }), /not a real UTC time/],
      [edit(v => { v.signatures[0].sig = 'AAAA' }), /sig must be the canonical base64 of 64 bytes/],
      [edit(v => { v.signatures = Array.from({ length: 65 }, () => v.signatures[0]) }), /more than the 64 allowed/],
      [edit(v => { v.signed = [] }), /signed must be an object/],
      [enc.encode('{"signatures":[],"signed":'), /not valid JSON/],
      [new Uint8Array([0xff, 0xfe]), /not valid UTF-8/]
    ]
    for (const [bytes, re] of cases) {
      const e = thrown(() => decodeRecord(bytes))
      expect(e).toBeInstanceOf(DecodeError)
      expect(e.message).toMatch(/^control record: /)
      expect(e.message).toMatch(re)
    }
    // Unsafe integers never get as far as a field check: canonical JSON refuses them.
    expect(thrown(() => decodeRecord(enc.encode(dec.decode(rec().bytes).replace('"seq":1', '"seq":9007199254740993'))))).toBeInstanceOf(DecodeError)
  })

  it('refuses a record above the size cap before parsing it', () => {
    const big = new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x20)
    expect(thrown(() => decodeRecord(big))).toBeInstanceOf(OversizeError)
    expect(thrown(() => decodeRecord(big)).code).toBe('ERR_OVERSIZE')
  })

  it('fuzz: mutated and random inputs give a record or a typed error, never anything else', () => {
    const good = rec().bytes
    fc.assert(fc.property(fc.oneof(
      fc.uint8Array({ maxLength: 600 }),
      fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(good.length)).map(([i, b, cut]) => { const x = Uint8Array.from(good); x[i] = b; return x.subarray(0, Math.max(cut, i + 1)) }),
      fc.jsonValue().map(v => enc.encode(JSON.stringify({ signatures: [], signed: v })))
    ), (bytes) => {
      try {
        decodeRecord(bytes)
      } catch (err) {
        expect(err).toBeInstanceOf(ShoalError)
        expect(['ERR_DECODE', 'ERR_OVERSIZE']).toContain((err as ShoalError).code)
      }
    }), { numRuns: 3000 })
  })
})

describe('verifyRecord', () => {
  it('accepts a threshold of publisher keys (2 of 3, any two)', () => {
    verifyRecord(rec().record, root, now)
    verifyRecord(rec({ signers: [publisherKeys[2]!, publisherKeys[0]!] }).record, root, now)
    verifyRecord(rec({ signers: publisherKeys }).record, root, now)
  })

  it('refuses a record below the threshold, or signed by keys of another role or fleet', () => {
    for (const signers of [[publisherKeys[0]!], [...rootKeys, ...onlineKeys], [generateKeyPair(), generateKeyPair()], [publisherKeys[1]!, generateKeyPair()]]) {
      const e = thrown(() => verifyRecord(rec({ signers }).record, root, now))
      expect(e).toBeInstanceOf(SignatureThresholdError)
      expect(e.code).toBe('ERR_SIGNATURE_THRESHOLD')
      expect(e.message).toMatch(/control record promote app@2\.0\.0 --ring broad \(record seq 1\)/)
      expect(e.message).toMatch(/2 needed/)
    }
  })

  it('counts one key\'s signature duplicated as one', () => {
    const one = rec({ signers: [publisherKeys[0]!] })
    const sig = one.record.signatures[0]!
    const dup: SignedRecord = { signed: one.record.signed, signatures: [sig, sig, sig] }
    const back = decodeRecord(encodeEnvelope(dup)) // decodes fine: duplicates are not a format error
    const e = thrown(() => verifyRecord(back, root, now)) as SignatureThresholdError
    expect(e).toBeInstanceOf(SignatureThresholdError)
    expect(e.valid).toBe(1)
  })

  it('ignores an unknown key\'s or a bad signature beside enough good ones, and never counts them', () => {
    const stranger = generateKeyPair()
    const good = rec()
    const withStranger = appendSignatures('record', good.record, [stranger])
    verifyRecord(decodeRecord(encodeEnvelope(withStranger)), root, now)
    // A stranger's signature under a publisher's keyid: plausible but wrong, it does not count.
    const forged = rec({ signers: [publisherKeys[0]!] }).record
    const fake = { keyid: publisherKeys[1]!.keyid, sig: Buffer.from(sign(stranger, signingBytes('record', forged.signed))).toString('base64') }
    const e = thrown(() => verifyRecord({ signed: forged.signed, signatures: [...forged.signatures, fake] }, root, now)) as SignatureThresholdError
    expect(e.valid).toBe(1)
  })

  it('refuses a tampered record: every signed field is covered', () => {
    const { record } = rec({ signers: two })
    const edits: Array<Partial<RecordBody>> = [
      { ring: 'canary' }, { version: '2.0.1' }, { package: 'other' }, { seq: 2 }, { expires: '2036-01-01T00:00:00Z' }, { issued: '2026-05-31T00:00:00Z' }
    ]
    for (const e of edits) {
      const bytes = reencode({ signatures: record.signatures, signed: { ...record.signed, ...e } })
      expect(thrown(() => verifyRecord(decodeRecord(bytes), root, now))).toBeInstanceOf(SignatureThresholdError)
    }
    const asHalt = reencode({ signatures: record.signatures, signed: { ...record.signed, action: 'halt', ring: undefined } })
    expect(thrown(() => verifyRecord(decodeRecord(asHalt), root, now))).toBeInstanceOf(SignatureThresholdError)
  })

  it('refuses a signature made for another type over the same JSON (domain separation)', () => {
    const body = rec().record.signed
    const asManifest = signEnvelope('manifest', body, two)
    expect(thrown(() => verifyRecord(asManifest, root, now))).toBeInstanceOf(SignatureThresholdError)
  })

  it('refuses an expired record (grace honoured) and any record under an expired root', () => {
    const { record } = rec()
    verifyRecord(record, root, new Date(inAMonth.getTime() - 1000))
    const e = thrown(() => verifyRecord(record, root, inAMonth))
    expect(e).toBeInstanceOf(RecordExpiredError)
    expect(e).toBeInstanceOf(MetadataExpiredError)
    expect(e.code).toBe('ERR_EXPIRED')
    expect(e.message).toMatch(/expired at 2026-07-01T00:00:00Z.*sign a fresh record/)
    verifyRecord(record, root, inAMonth, { graceSeconds: 60 })
    const old = rec({ expires: new Date('2028-01-01T00:00:00Z') }).record
    expect(thrown(() => verifyRecord(old, root, new Date('2027-07-01T00:00:00Z'))).message).toMatch(/root\.json expired/)
  })

  it('refuses a record of another package or release than asked for', () => {
    const { record } = rec()
    verifyRecord(record, root, now, { expectPackage: 'app', expectVersion: '2.0.0' })
    expect(thrown(() => verifyRecord(record, root, now, { expectPackage: 'db' }))).toBeInstanceOf(WrongPackageError)
    expect(thrown(() => verifyRecord(record, root, now, { expectVersion: '1.0.0' })).code).toBe('ERR_WRONG_PACKAGE')
  })
})

describe('checkRecordAdvance', () => {
  const r1 = rec({ seq: 5 }).record.signed
  const r2 = rec({ action: 'halt', ring: undefined, seq: 6 }).record.signed

  it('accepts the first record and every higher seq', () => {
    expect(checkRecordAdvance(undefined, r1)).toBe('new')
    expect(checkRecordAdvance(null, r1)).toBe('new')
    expect(checkRecordAdvance(4, r1)).toBe('new')
    expect(checkRecordAdvance(0, r1)).toBe('new')
    expect(checkRecordAdvance(r1, r2)).toBe('new')
  })

  it('refuses a replayed or older record with RollbackError', () => {
    for (const last of [5, 6, 100]) {
      const e = thrown(() => checkRecordAdvance(last, r1))
      expect(e).toBeInstanceOf(RollbackError)
      expect(e.code).toBe('ERR_ROLLBACK')
      expect(e.message).toMatch(/replayed or stale/)
    }
    expect(thrown(() => checkRecordAdvance(r2, r1))).toBeInstanceOf(RollbackError)
  })

  it('knows the very same record again, and refuses another one under an accepted seq', () => {
    expect(checkRecordAdvance(r1, structuredClone(r1))).toBe('same')
    const other = rec({ seq: 5, ring: 'pilot' }).record.signed
    expect(thrown(() => checkRecordAdvance(r1, other)).message).toMatch(/a different record with the already accepted seq 5/)
  })

  it('refuses comparing two packages or a nonsense last seq', () => {
    const db = rec({ package: 'db', seq: 9 }).record.signed
    expect(thrown(() => checkRecordAdvance(r1, db))).toBeInstanceOf(InvalidArgumentError)
    expect(thrown(() => checkRecordAdvance(-1, r1))).toBeInstanceOf(InvalidArgumentError)
    expect(thrown(() => checkRecordAdvance(1.5, r1))).toBeInstanceOf(InvalidArgumentError)
  })
})

describe('applyRecords', () => {
  const body = (o: Partial<SignArgs>): RecordBody => rec(o).record.signed
  const promote = (ring: string, seq: number, version = '2.0.0'): RecordBody => body({ ring, seq, version })
  const halt = (seq: number): RecordBody => body({ action: 'halt', ring: undefined, seq })
  const rollback = (to: string, seq: number): RecordBody => body({ action: 'rollback', ring: undefined, to, seq })

  it('no records: nothing promoted, not halted', () => {
    expect(applyRecords([])).toEqual({ promoted: new Set(), halted: false })
  })

  it('collects promoted rings, in any order, duplicates once', () => {
    const p = promote('pilot', 2)
    expect(applyRecords([promote('broad', 3), p, structuredClone(p)])).toEqual({ promoted: new Set(['pilot', 'broad']), halted: false })
  })

  it('halt is final: later promotes do not reopen the release', () => {
    const c = applyRecords([promote('pilot', 1), halt(2), promote('broad', 3)])
    expect(c).toEqual({ promoted: new Set(['pilot']), halted: true })
  })

  it('rollback halts and names the target; the latest rollback wins; a later halt keeps it', () => {
    expect(applyRecords([promote('pilot', 1), rollback('1.0.0', 4)])).toEqual({ promoted: new Set(['pilot']), halted: true, rollbackTo: '1.0.0' })
    expect(applyRecords([rollback('1.0.0', 5), rollback('1.5.0', 4), halt(6)])).toEqual({ promoted: new Set(), halted: true, rollbackTo: '1.0.0' })
  })

  it('with a release, skips the records of other releases; without one, refuses a mix', () => {
    const mixed = [promote('pilot', 1, '1.0.0'), halt(2), promote('broad', 3, '2.0.0'), body({ package: 'db', ring: 'broad', seq: 1 })]
    expect(applyRecords(mixed, { package: 'app', version: '2.0.0' })).toEqual({ promoted: new Set(), halted: true })
    expect(applyRecords(mixed, { package: 'app', version: '1.0.0' })).toEqual({ promoted: new Set(['pilot']), halted: false })
    expect(thrown(() => applyRecords(mixed))).toBeInstanceOf(InvalidArgumentError)
  })

  it('refuses two different records sharing one seq', () => {
    expect(thrown(() => applyRecords([promote('pilot', 2), halt(2)]))).toBeInstanceOf(RollbackError)
  })

  it('drives ringState: the issue\'s 3-ring rollout over time', () => {
    const policy = parseRolloutSpec('canary:now,pilot:+1d,broad:approval', now)
    const state = (records: RecordBody[], ring: string, t: Date): boolean => ringState(policy, ring, t, applyRecords(records, { package: 'app', version: '2.0.0' })).open
    const day2 = new Date('2026-06-02T00:00:00Z')
    expect([state([], 'canary', now), state([], 'pilot', now), state([], 'broad', now)]).toEqual([true, false, false])
    expect([state([], 'pilot', day2), state([], 'broad', day2)]).toEqual([true, false])
    const promoted = [promote('broad', 1)]
    expect(state(promoted, 'broad', day2)).toBe(true)
    const halted = [...promoted, halt(2)]
    expect(['canary', 'pilot', 'broad'].map(r => state(halted, r, day2))).toEqual([false, false, false])
  })
})

// docs/rollout.md §3.4: publisher key = Ed25519 seed 02×32 (the same key as docs/protocol.md §1.9).
const EXAMPLE = '{"signatures":[{"keyid":"cacd4b437fbc1f006147fda371323cf4a0060c3474f40e3f1ec1d278826b6ed6","sig":"ryK7R6vwToO8s3MVdFn+WqDQ5mjEhI7Hjc/3+QakeaRo5/zpwG5KXjN6ExfKcbJDy0QjAE1tJvDrnY4k7GmKDA=="}],"signed":{"_type":"record","action":"promote","expires":"2026-07-01T00:00:00Z","formatVersion":1,"issued":"2026-06-01T00:00:00Z","package":"hello","ring":"pilot","seq":1,"version":"1.0.0"}}'
const EXAMPLE_BYTES = 379
const EXAMPLE_ID = '5bc64bee6bc202d46dd52677e60c027bf397cbaf2986c2b66771e65a0cc21d55'
