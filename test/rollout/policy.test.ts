// Rollout policy: the --rollout spec, strict validation of the manifest's `rollout` value, and
// whether a ring may install at a given instant (gates, approvals, windows across midnight, deadlines).
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { ShoalError, DecodeError, InvalidArgumentError } from '../../src/core/errors.js'
import { canonicalize } from '../../src/core/canonical.js'
import {
  parseRolloutSpec, validateRolloutPolicy, ringState, inWindow, MAX_RINGS, type RolloutPolicy, type RingContext
} from '../../src/rollout/policy.js'

const now = new Date('2026-06-01T12:00:00.750Z')
const at = (s: string): Date => new Date(s)
const none: RingContext = { promoted: new Set(), halted: false }

function thrown (fn: () => unknown): ShoalError {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(ShoalError); return err as ShoalError }
  throw new Error('expected a refusal')
}

describe('parseRolloutSpec', () => {
  it('parses the issue\'s example into absolute UTC times (milliseconds dropped)', () => {
    expect(parseRolloutSpec('canary:now,pilot:+1d,broad:approval', now)).toEqual({
      formatVersion: 1,
      rings: [
        { ring: 'canary', notBefore: '2026-06-01T12:00:00Z' },
        { ring: 'pilot', notBefore: '2026-06-02T12:00:00Z' },
        { ring: 'broad', approval: true }
      ]
    })
  })

  it('reads compound durations, ISO times with zones, deadlines and windows', () => {
    const p = parseRolloutSpec(' canary:+90m , pilot:+1d12h/deadline=+3d/window=01:00-05:00@local, broad:2026-07-01T08:00+02:00/deadline=2026-07-08T00:00:30Z, lab:approval/deadline=+2w', now)
    expect(p.rings).toEqual([
      { ring: 'canary', notBefore: '2026-06-01T13:30:00Z' },
      { ring: 'pilot', notBefore: '2026-06-03T00:00:00Z', deadline: '2026-06-04T12:00:00Z', window: { start: '01:00', end: '05:00', tz: 'local' } },
      { ring: 'broad', notBefore: '2026-07-01T06:00:00Z', deadline: '2026-07-08T00:00:30Z' },
      { ring: 'lab', approval: true, deadline: '2026-06-15T12:00:00Z' }
    ])
    // What the parser builds is exactly what the validator accepts, and survives canonical JSON.
    expect(validateRolloutPolicy(JSON.parse(canonicalize(p)))).toEqual(p)
  })

  it('applies a top-level window to every ring without its own, wherever it stands', () => {
    const p = parseRolloutSpec('canary:now/window=any,pilot:now/window=20:00-24:00@utc,window=22:00-06:00,broad:approval', now)
    expect(p.rings[0]).toEqual({ ring: 'canary', notBefore: '2026-06-01T12:00:00Z' })
    expect(p.rings[1]!.window).toEqual({ start: '20:00', end: '24:00', tz: 'utc' })
    expect(p.rings[2]!.window).toEqual({ start: '22:00', end: '06:00', tz: 'utc' })
    expect(thrown(() => parseRolloutSpec('canary:now/window=any/window=any', now)).message).toMatch(/window given twice/)
  })

  it('accepts the 64th ring and refuses the 65th', () => {
    const spec = (n: number): string => Array.from({ length: n }, (_, i) => `r${i}:now`).join(',')
    expect(parseRolloutSpec(spec(MAX_RINGS), now).rings).toHaveLength(MAX_RINGS)
    expect(thrown(() => parseRolloutSpec(spec(MAX_RINGS + 1), now)).message).toMatch(/more than 64 rings/)
  })

  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['canary:now,,broad:now', /empty item/],
    ['canary:now,', /empty item/],
    ['canary', /expected <ring>:<start>/],
    ['-bad:now', /ring label "-bad" is invalid/],
    [':now', /ring label "" is invalid/],
    ['canary:now,canary:+1d', /ring "canary" is listed twice/],
    ['canary:soon', /canary.*"soon" is not a time/],
    ['canary:+1', /"\+1" is not a duration/],
    ['canary:+1y', /"\+1y" is not a duration/],
    ['canary:+-1d', /not a duration/],
    ['canary:2026-06-01T08:00', /"2026-06-01T08:00" is not a time.*with a zone/],
    ['canary:2026-02-30T08:00Z', /not a real date/],
    ['canary:2026-06-01T24:00Z', /not a real date/],
    ['canary:2026-06-01T08:00+24:00', /impossible UTC offset/],
    ['canary:+999999999w', /outside the years/],
    ['pilot:+1d/deadline=+12h', /pilot.*deadline 2026-06-02T00:00:00Z is before the ring opens/],
    ['pilot:now/deadline=now', /not in the future/],
    ['pilot:now/deadline=+1d/deadline=+2d', /deadline given twice/],
    ['pilot:now/window=22:00-06:00/window=01:00-02:00', /window given twice/],
    ['pilot:now/deadline', /unknown option "deadline"/],
    ['pilot:now/speed=fast', /pilot.*unknown option "speed=fast"/],
    ['pilot:now/window=22-06', /"22-06" is not a window/],
    ['pilot:now/window=25:00-06:00', /not a window/],
    ['pilot:now/window=22:00-06:00@mars', /@utc or @local/],
    ['pilot:now/window=06:00-06:00', /empty or the whole day/],
    ['pilot:now/window=00:00-24:00', /empty or the whole day/],
    ['window=22:00-06:00', /a window but no ring/],
    ['window=any,canary:now', /"any" is not a window/],
    ['window=22:00-06:00,canary:now,window=01:00-02:00', /second top-level window/],
    ['x'.repeat(20_000), /longer than/]
  ]
  for (const [spec, re] of bad) {
    it(`refuses ${JSON.stringify(spec.slice(0, 60))} with InvalidArgumentError naming the bad part`, () => {
      const e = thrown(() => parseRolloutSpec(spec, now))
      expect(e).toBeInstanceOf(InvalidArgumentError)
      expect(e.code).toBe('ERR_INVALID_ARGUMENT')
      expect(e.message).toMatch(re)
    })
  }

  it('refuses an invalid "now"', () => {
    expect(thrown(() => parseRolloutSpec('canary:now', new Date(NaN)))).toBeInstanceOf(InvalidArgumentError)
  })

  it('random specs give a valid policy or an InvalidArgumentError, nothing else', () => {
    const piece = fc.constantFrom('canary', 'pilot', ':', ',', '/', 'now', '+1d', '+', 'approval', 'deadline=', 'window=', '22:00-06:00', '@local', '2026-06-01T08:00Z', '=', ' ', 'x')
    fc.assert(fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 5 })), { maxLength: 12 }), (parts) => {
      try {
        const p = parseRolloutSpec(parts.join(''), now)
        expect(validateRolloutPolicy(p)).toEqual(p)
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidArgumentError)
      }
    }), { numRuns: 2000 })
  })
})

describe('validateRolloutPolicy', () => {
  const good: RolloutPolicy = {
    formatVersion: 1,
    rings: [
      { ring: 'canary', notBefore: '2026-06-01T00:00:00Z' },
      { ring: 'broad', approval: true, deadline: '2026-07-01T00:00:00Z', window: { start: '22:00', end: '06:00', tz: 'local' } }
    ]
  }
  const withRing = (r: unknown): unknown => ({ formatVersion: 1, rings: [r] })

  it('accepts a good policy as is', () => {
    expect(validateRolloutPolicy(structuredClone(good))).toEqual(good)
  })

  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', 'canary:now', /rollout must be an object/],
    ['null', null, /must be an object/],
    ['a list', [], /must be an object/],
    ['unknown top-level field', { ...good, ringz: [] }, /unknown field "ringz"/],
    ['missing rings', { formatVersion: 1 }, /rollout.rings is missing/],
    ['another formatVersion', { ...good, formatVersion: 2 }, /unsupported formatVersion 2/],
    ['rings not a list', { formatVersion: 1, rings: {} }, /must be a list/],
    ['no rings', { formatVersion: 1, rings: [] }, /empty/],
    ['65 rings', { formatVersion: 1, rings: Array.from({ length: 65 }, (_, i) => ({ ring: `r${i}`, approval: true })) }, /more than the 64 allowed/],
    ['bad label', withRing({ ring: '../x', approval: true }), /ring "..\/x" does not match/],
    ['label too long', withRing({ ring: 'a'.repeat(65), approval: true }), /longer than 64/],
    ['duplicate label', { formatVersion: 1, rings: [{ ring: 'a', approval: true }, { ring: 'a', approval: true }] }, /listed twice/],
    ['no gate', withRing({ ring: 'a' }), /exactly one of notBefore and approval/],
    ['two gates', withRing({ ring: 'a', approval: true, notBefore: '2026-06-01T00:00:00Z' }), /exactly one/],
    ['approval false', withRing({ ring: 'a', approval: false }), /approval must be true/],
    ['relative time', withRing({ ring: 'a', notBefore: '+1d' }), /notBefore "\+1d" does not match/],
    ['unreal time', withRing({ ring: 'a', notBefore: '2026-02-30T00:00:00Z' }), /not a real UTC time/],
    ['deadline before notBefore', withRing({ ring: 'a', notBefore: '2026-06-02T00:00:00Z', deadline: '2026-06-01T00:00:00Z' }), /deadline .* is before notBefore/],
    ['unknown ring field', withRing({ ring: 'a', approval: true, when: 'now' }), /unknown field "when"/],
    ['window missing tz', withRing({ ring: 'a', approval: true, window: { start: '22:00', end: '06:00' } }), /window.tz is missing/],
    ['window bad tz', withRing({ ring: 'a', approval: true, window: { start: '22:00', end: '06:00', tz: 'Europe/Paris' } }), /tz must be/],
    ['window bad time', withRing({ ring: 'a', approval: true, window: { start: '22:00', end: '6:00', tz: 'utc' } }), /end "6:00" does not match/],
    ['window 24:00 start', withRing({ ring: 'a', approval: true, window: { start: '24:00', end: '06:00', tz: 'utc' } }), /start "24:00" does not match/],
    ['empty window', withRing({ ring: 'a', approval: true, window: { start: '06:00', end: '06:00', tz: 'utc' } }), /empty or the whole day/]
  ]
  for (const [name, v, re] of bad) {
    it(`refuses ${name} with DecodeError`, () => {
      const e = thrown(() => validateRolloutPolicy(v, 'manifest app@1.0.0 rollout'))
      expect(e).toBeInstanceOf(DecodeError)
      expect(e.code).toBe('ERR_DECODE')
      expect(e.message).toMatch(/^manifest app@1\.0\.0 rollout: /)
      expect(e.message).toMatch(re)
    })
  }

  it('random junk never throws anything but DecodeError', () => {
    const time = fc.constantFrom('2026-06-01T00:00:00Z', '2026-06-02T00:00:00Z', '+1d', 'now', '2026-13-01T00:00:00Z')
    const hhmm = fc.constantFrom('00:00', '22:00', '06:00', '24:00', '7:00', '')
    const window = fc.record({ start: hhmm, end: hhmm, tz: fc.constantFrom('utc', 'local', 'UTC') }, { requiredKeys: [] })
    const ring = fc.record({
      ring: fc.oneof(fc.constantFrom('canary', 'pilot', 'a'), fc.string()), notBefore: time, approval: fc.oneof(fc.constant(true), fc.anything()),
      deadline: time, window: fc.oneof(window, fc.anything())
    }, { requiredKeys: [] })
    const shaped = fc.record({ formatVersion: fc.oneof(fc.constant(1), fc.anything()), rings: fc.oneof(fc.array(fc.oneof(ring, fc.anything()), { maxLength: 4 }), fc.anything()) }, { requiredKeys: [] })
    // Mostly valid policies, so the accepting paths are reached too.
    const validRing = fc.tuple(fc.constantFrom('canary', 'pilot', 'broad', 'lab'), fc.boolean(), fc.option(fc.constantFrom('2026-06-01T00:00:00Z', '2026-06-02T00:00:00Z')),
      fc.option(fc.record({ start: fc.constantFrom('22:00', '00:00'), end: fc.constantFrom('06:00', '24:00'), tz: fc.constantFrom('utc', 'local') }))).map(([r, approval, deadline, window]) => ({
      ring: r, ...(approval ? { approval: true } : { notBefore: '2026-06-01T00:00:00Z' }), ...(deadline !== null ? { deadline } : {}), ...(window !== null ? { window } : {})
    }))
    const nearlyValid = fc.record({ formatVersion: fc.constant(1), rings: fc.array(validRing, { minLength: 1, maxLength: 4 }) })
    let valid = 0
    fc.assert(fc.property(fc.oneof(fc.anything(), fc.jsonValue(), shaped, nearlyValid), (v) => {
      try {
        const p = validateRolloutPolicy(v)
        valid++
        expect(validateRolloutPolicy(JSON.parse(canonicalize(p)))).toEqual(p) // what passes is signable and stable
      } catch (err) {
        expect(err).toBeInstanceOf(DecodeError)
      }
    }), { numRuns: 5000 })
    expect(valid).toBeGreaterThan(0) // the generator does reach the accepting paths
  })
})

describe('ringState', () => {
  const policy = parseRolloutSpec('canary:now,pilot:+1d,broad:approval', at('2026-06-01T12:00:00Z'))

  it('a release without a policy is open for every ring, unless halted', () => {
    expect(ringState(undefined, 'anything', now, none)).toMatchObject({ open: true })
    expect(ringState(undefined, 'anything', now, { promoted: new Set(), halted: true })).toMatchObject({ open: false, reason: expect.stringMatching(/halted/) })
  })

  it('opens canary at once and pilot after its time; a ring not named never opens, promoted or not', () => {
    const before = at('2026-06-02T11:59:59Z')
    expect(ringState(policy, 'canary', at('2026-06-01T12:00:00Z'), none).open).toBe(true)
    expect(ringState(policy, 'canary', at('2026-06-01T11:59:59Z'), none)).toEqual({ open: false, reason: 'ring canary opens at 2026-06-01T12:00:00Z', opensAt: '2026-06-01T12:00:00Z' })
    expect(ringState(policy, 'pilot', before, none)).toMatchObject({ open: false, opensAt: '2026-06-02T12:00:00Z' })
    expect(ringState(policy, 'pilot', at('2026-06-02T12:00:00Z'), none)).toMatchObject({ open: true, reason: expect.stringMatching(/open since 2026-06-02T12:00:00Z/) })
    const lab = ringState(policy, 'lab', at('2030-01-01T00:00:00Z'), { promoted: new Set(['lab']), halted: false })
    expect(lab.open).toBe(false)
    expect(lab.reason).toMatch(/ring lab is not named in the rollout policy \(rings: canary, pilot, broad\)/)
  })

  it('an approval gate stays closed, whatever the time, until a promote record names the ring', () => {
    const far = at('2036-01-01T00:00:00Z')
    const closed = ringState(policy, 'broad', far, { promoted: new Set(['pilot']), halted: false })
    expect(closed.open).toBe(false)
    expect(closed.opensAt).toBeUndefined()
    expect(closed.reason).toMatch(/waits for approval/)
    expect(ringState(policy, 'broad', now, { promoted: new Set(['broad']), halted: false })).toMatchObject({ open: true, reason: expect.stringMatching(/promoted/) })
  })

  it('a promote record opens a time-gated ring early; halt closes every ring, promoted or not', () => {
    expect(ringState(policy, 'pilot', now, { promoted: new Set(['pilot']), halted: false }).open).toBe(true)
    for (const ring of ['canary', 'pilot', 'broad']) {
      expect(ringState(policy, ring, at('2030-01-01T00:00:00Z'), { promoted: new Set(['pilot', 'broad']), halted: true }).open).toBe(false)
    }
  })

  describe('maintenance windows', () => {
    const p = (spec: string): RolloutPolicy => parseRolloutSpec(spec, at('2026-06-01T00:00:00Z'))

    it('a window crossing midnight: open from 22:00 to 05:59:59, closed from 06:00 until 22:00', () => {
      const w = p('broad:now/window=22:00-06:00')
      const cases: Array<[string, boolean, string?]> = [
        ['2026-06-01T21:59:59Z', false, '2026-06-01T22:00:00Z'],
        ['2026-06-01T22:00:00Z', true],
        ['2026-06-01T23:59:59Z', true],
        ['2026-06-02T00:00:00Z', true],
        ['2026-06-02T05:59:59Z', true],
        ['2026-06-02T06:00:00Z', false, '2026-06-02T22:00:00Z'],
        ['2026-06-02T12:00:00Z', false, '2026-06-02T22:00:00Z']
      ]
      for (const [t, open, opensAt] of cases) {
        const s = ringState(w, 'broad', at(t), none)
        expect({ t, open: s.open, opensAt: s.opensAt }).toEqual({ t, open, opensAt })
        if (!open) expect(s.reason).toMatch(/outside its maintenance window 22:00–06:00 UTC/)
      }
    })

    it('a window inside one day opens the next day once today\'s has passed; 24:00 ends at midnight', () => {
      const w = p('broad:now/window=01:00-05:00')
      expect(ringState(w, 'broad', at('2026-06-03T06:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-04T01:00:00Z' })
      expect(ringState(w, 'broad', at('2026-06-03T00:30:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-03T01:00:00Z' })
      expect(ringState(w, 'broad', at('2026-06-03T04:59:59Z'), none).open).toBe(true)
      expect(ringState(w, 'broad', at('2026-06-03T05:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-04T01:00:00Z' })
      expect(ringState(w, 'broad', at('2026-06-03T01:00:00Z'), none).open).toBe(true)
      const late = p('broad:now/window=20:00-24:00')
      expect(ringState(late, 'broad', at('2026-06-03T23:59:59Z'), none).open).toBe(true)
      expect(ringState(late, 'broad', at('2026-06-04T00:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-04T20:00:00Z' })
    })

    it('a time gate that opens outside the window reports the first instant inside it', () => {
      const w = p('pilot:2026-06-05T12:00Z/window=22:00-06:00')
      expect(ringState(w, 'pilot', at('2026-06-02T23:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-05T22:00:00Z' })
      const inside = p('pilot:2026-06-05T23:00Z/window=22:00-06:00')
      expect(ringState(inside, 'pilot', at('2026-06-02T23:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-05T23:00:00Z' })
    })

    it('a local window follows the endpoint\'s UTC offset', () => {
      const w = p('broad:now/window=22:00-06:00@local')
      // 21:30 UTC is 23:30 at UTC+2 (inside) and 16:30 at UTC−5 (outside until 22:00 local = 03:00 UTC).
      expect(ringState(w, 'broad', at('2026-06-03T21:30:00Z'), { ...none, utcOffsetMinutes: 120 }).open).toBe(true)
      expect(ringState(w, 'broad', at('2026-06-03T21:30:00Z'), { ...none, utcOffsetMinutes: -300 })).toMatchObject({ open: false, opensAt: '2026-06-04T03:00:00Z' })
      expect(ringState(w, 'broad', at('2026-06-03T21:30:00Z'), { ...none, utcOffsetMinutes: 0 })).toMatchObject({ open: false, opensAt: '2026-06-03T22:00:00Z' })
    })

    it('inWindow agrees with a minute-by-minute reference over two days, both kinds of window', () => {
      fc.assert(fc.property(fc.integer({ min: 0, max: 1439 }), fc.integer({ min: 1, max: 1440 }), fc.oneof(fc.integer({ min: 0, max: 2 * 86_400_000 }), fc.integer({ min: 0, max: 2 * 1440 }).map(m => m * 60_000)), fc.integer({ min: -720, max: 840 }), (s, e, t, off) => {
        fc.pre(s !== e)
        const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`
        const w = { start: hhmm(s), end: hhmm(e), tz: 'utc' as const }
        const minute = Math.floor((((t + off * 60_000) % 86_400_000) + 86_400_000) % 86_400_000 / 60_000)
        const expected = s < e ? (minute >= s && minute < e) : (minute >= s || minute < e)
        expect(inWindow(w, t, off * 60_000)).toBe(expected)
      }), { numRuns: 3000 })
    })
  })

  describe('deadlines', () => {
    const p = parseRolloutSpec('pilot:now/deadline=+2d/window=22:00-06:00,broad:approval/deadline=+1d/window=01:00-02:00', at('2026-06-01T12:00:00Z'))

    it('before the deadline the window holds the install back; opensAt is capped at the deadline', () => {
      expect(ringState(p, 'pilot', at('2026-06-01T12:00:00Z'), none)).toEqual({
        open: false, reason: expect.stringMatching(/outside its maintenance window/), opensAt: '2026-06-01T22:00:00Z', deadline: '2026-06-03T12:00:00Z'
      })
      // On the deadline's day the next window start (22:00) lies after the deadline (12:00).
      expect(ringState(p, 'pilot', at('2026-06-03T08:00:00Z'), none)).toMatchObject({ open: false, opensAt: '2026-06-03T12:00:00Z' })
    })

    it('once the deadline has passed the install runs outside the window', () => {
      const s = ringState(p, 'pilot', at('2026-06-03T12:00:00Z'), none)
      expect(s).toMatchObject({ open: true, deadline: '2026-06-03T12:00:00Z' })
      expect(s.reason).toMatch(/deadline 2026-06-03T12:00:00Z passed/)
    })

    it('a deadline does not open an approval gate, nor a halted release', () => {
      expect(ringState(p, 'broad', at('2026-06-10T12:00:00Z'), none)).toMatchObject({ open: false, deadline: '2026-06-02T12:00:00Z' })
      expect(ringState(p, 'broad', at('2026-06-10T12:00:00Z'), { promoted: new Set(['broad']), halted: false }).open).toBe(true)
      expect(ringState(p, 'pilot', at('2026-06-10T12:00:00Z'), { promoted: new Set(), halted: true }).open).toBe(false)
    })
  })

  it('refuses an invalid "now"', () => {
    expect(thrown(() => ringState(policy, 'canary', new Date('nope'), none))).toBeInstanceOf(InvalidArgumentError)
  })
})
