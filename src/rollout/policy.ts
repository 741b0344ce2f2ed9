// Rollout policy (DESIGN §7, docs/rollout.md): carried in the signed manifest's `rollout` field, it
// says when each ring of endpoints may install a release — at a not-before time or once a signed
// `promote` record opens its approval gate — with an optional install deadline and maintenance
// window per ring. Pure: no clock, no I/O; the caller passes `now` and what the records say.
import { InvalidArgumentError } from '../core/errors.js'
import { isoSeconds } from '../core/signed.js'
import { LABEL } from '../core/manifest.js'
import { HHMM, HHMM_END, MAX_RINGS, type MaintenanceWindow, type RingPolicy, type RolloutPolicy } from '../core/rollout-policy.js'

// The policy's JSON shape and its decoder live in core (the manifest decoder checks the field).
export { HHMM, MAX_RINGS, validateRolloutPolicy, type MaintenanceWindow, type RingPolicy, type RolloutPolicy } from '../core/rollout-policy.js'

export const RING_LABEL = LABEL
/** Longest `--rollout` spec accepted (64 rings with options fit easily). */
export const MAX_SPEC_LENGTH = 16 * 1024

export interface RingState {
  open: boolean
  /** One line for status output and reports. */
  reason: string
  /** When closed: the earliest instant it will open on its own (absent when it waits for approval). */
  opensAt?: string
  deadline?: string
}

export interface RingContext {
  /** Rings opened by verified promote records of this release (see applyRecords). */
  promoted: ReadonlySet<string>
  /** A verified halt or rollback record for this release exists. */
  halted: boolean
  /** Minutes east of UTC used for `tz: 'local'` windows; default: this process's offset at `now`. */
  utcOffsetMinutes?: number
}

// ---- the --rollout spec ----

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 }
const DURATION = /^(?:\d{1,9}[smhdw])+$/
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:\d{2})$/

export function parseDurationSeconds (text: string, where: string): number {
  if (!DURATION.test(text)) throw new InvalidArgumentError(`${where}: "+${text}" is not a duration; use a number and a unit (s, m, h, d, w), e.g. +1d, +36h, +1d12h`)
  let total = 0
  for (const m of text.matchAll(/(\d+)([smhdw])/g)) total += Number(m[1]) * (UNIT_S[m[2] as string] as number)
  return total
}

function parseIsoTime (text: string, where: string): Date {
  const m = ISO_TIME.exec(text)
  if (m === null) {
    throw new InvalidArgumentError(`${where}: "${text}" is not a time; use now, +<duration> (e.g. +1d) or an ISO time with a zone, e.g. 2026-07-01T08:00Z or 2026-07-01T08:00+02:00`)
  }
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '00'].map(Number) as [number, number, number, number, number, number]
  const t = new Date(0)
  t.setUTCFullYear(y, mo - 1, d)
  t.setUTCHours(h, mi, s, 0)
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || t.getUTCHours() !== h || t.getUTCMinutes() !== mi || t.getUTCSeconds() !== s) {
    throw new InvalidArgumentError(`${where}: "${text}" is not a real date and time`)
  }
  const zone = m[7] as string
  if (zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1
    const [oh, om] = zone.slice(1).split(':').map(Number) as [number, number]
    if (oh > 23 || om > 59) throw new InvalidArgumentError(`${where}: "${text}" has an impossible UTC offset ${zone}`)
    t.setTime(t.getTime() - sign * (oh * 60 + om) * 60_000)
  }
  return t
}

function parseTime (text: string, now: Date, where: string): string {
  let t: Date
  if (text === 'now') t = now
  else if (text.startsWith('+')) t = new Date(now.getTime() + parseDurationSeconds(text.slice(1), where) * 1000)
  else t = parseIsoTime(text, where)
  try {
    return isoSeconds(t)
  } catch (err) {
    throw new InvalidArgumentError(`${where}: "${text}" is outside the years 0000–9999`, { cause: err })
  }
}

function parseWindow (text: string, where: string): MaintenanceWindow {
  const at = text.lastIndexOf('@')
  const range = at === -1 ? text : text.slice(0, at)
  const zone = at === -1 ? 'utc' : text.slice(at + 1).toLowerCase()
  if (zone !== 'utc' && zone !== 'local') throw new InvalidArgumentError(`${where}: time zone "${text.slice(at + 1)}" must be @utc or @local`)
  const [start, end, ...more] = range.split('-')
  if (start === undefined || end === undefined || more.length > 0 || !HHMM.test(start) || !HHMM_END.test(end)) {
    throw new InvalidArgumentError(`${where}: "${text}" is not a window; use HH:MM-HH:MM (UTC, 24-hour clock), optionally @local, e.g. window=22:00-06:00 or window=01:00-05:00@local`)
  }
  if (start === end || (start === '00:00' && end === '24:00')) throw new InvalidArgumentError(`${where}: "${text}" is empty or the whole day; leave the window out instead`)
  return { start, end, tz: zone }
}

/**
 * Parses the `--rollout` flag, e.g. `canary:now,pilot:+1d/deadline=+3d,broad:approval,window=22:00-06:00`:
 * comma-separated items, each `<ring>:<start>[/deadline=<time>][/window=<window>|/window=any]` or a
 * top-level `window=<window>` that applies to every ring without its own (`window=any`: none). `<start>` is `now`, `+<duration>`,
 * an ISO time with zone, or `approval`. Relative times are resolved against `now`.
 */
export function parseRolloutSpec (spec: string, now: Date): RolloutPolicy {
  if (typeof spec !== 'string') throw new InvalidArgumentError('--rollout: expected a string')
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new InvalidArgumentError('--rollout: "now" must be a valid Date')
  if (spec.length > MAX_SPEC_LENGTH) throw new InvalidArgumentError(`--rollout: longer than ${MAX_SPEC_LENGTH} characters`)
  const items = spec.split(',').map(s => s.trim())
  if (items.length === 1 && items[0] === '') throw new InvalidArgumentError('--rollout: empty; give at least one ring, e.g. --rollout "canary:now,broad:+1d"')
  const nowIso = parseTime('now', now, '--rollout')
  const rings: RingPolicy[] = []
  let defaultWindow: MaintenanceWindow | undefined
  const anyTime = new Set<string>()
  for (const item of items) {
    if (item === '') throw new InvalidArgumentError(`--rollout "${spec}": an empty item (two commas in a row, or a trailing comma)`)
    if (item.startsWith('window=')) {
      if (defaultWindow !== undefined) throw new InvalidArgumentError(`--rollout item "${item}": a second top-level window`)
      defaultWindow = parseWindow(item.slice('window='.length), `--rollout item "${item}"`)
      continue
    }
    const colon = item.indexOf(':')
    if (colon === -1) throw new InvalidArgumentError(`--rollout item "${item}": expected <ring>:<start> (e.g. canary:now, pilot:+1d, broad:approval) or window=HH:MM-HH:MM`)
    const label = item.slice(0, colon).trim()
    const where = `--rollout ring "${label}"`
    if (!RING_LABEL.test(label)) throw new InvalidArgumentError(`--rollout item "${item}": ring label "${label}" is invalid: use 1–64 of A-Z, a-z, 0-9, ".", "_", "-", starting with a letter or digit`)
    if (rings.some(r => r.ring === label)) throw new InvalidArgumentError(`${where} is listed twice`)
    if (rings.length >= MAX_RINGS) throw new InvalidArgumentError(`--rollout: more than ${MAX_RINGS} rings`)
    const [start, ...options] = item.slice(colon + 1).split('/').map(s => s.trim())
    const ring: RingPolicy = { ring: label }
    if (start === 'approval') ring.approval = true
    else ring.notBefore = parseTime(start as string, now, `${where} start`)
    for (const opt of options) {
      const eq = opt.indexOf('=')
      const key = eq === -1 ? opt : opt.slice(0, eq)
      const value = eq === -1 ? '' : opt.slice(eq + 1)
      if (key === 'deadline' && eq !== -1) {
        if (ring.deadline !== undefined) throw new InvalidArgumentError(`${where}: deadline given twice`)
        ring.deadline = parseTime(value, now, `${where} deadline`)
        if (ring.deadline <= nowIso) throw new InvalidArgumentError(`${where}: deadline ${ring.deadline} is not in the future`)
        if (ring.notBefore !== undefined && ring.deadline < ring.notBefore) throw new InvalidArgumentError(`${where}: deadline ${ring.deadline} is before the ring opens (${ring.notBefore})`)
      } else if (key === 'window' && eq !== -1) {
        if (ring.window !== undefined || anyTime.has(label)) throw new InvalidArgumentError(`${where}: window given twice`)
        if (value === 'any') anyTime.add(label) // no window, whatever the top-level one says
        else ring.window = parseWindow(value, `${where} window`)
      } else {
        throw new InvalidArgumentError(`${where}: unknown option "${opt}"; options are /deadline=<time> and /window=HH:MM-HH:MM[@local] or /window=any`)
      }
    }
    rings.push(ring)
  }
  if (rings.length === 0) throw new InvalidArgumentError('--rollout: a window but no ring; give at least one ring, e.g. canary:now')
  if (defaultWindow !== undefined) for (const r of rings) if (!anyTime.has(r.ring)) r.window ??= { ...defaultWindow }
  return { formatVersion: 1, rings: rings.map(normalizeRing) }
}

/** Fixed member order (the canonical encoding sorts anyway; this keeps deep-equality simple). */
function normalizeRing (r: RingPolicy): RingPolicy {
  const out: RingPolicy = { ring: r.ring }
  if (r.notBefore !== undefined) out.notBefore = r.notBefore
  if (r.approval === true) out.approval = true
  if (r.deadline !== undefined) out.deadline = r.deadline
  if (r.window !== undefined) out.window = { start: r.window.start, end: r.window.end, tz: r.window.tz }
  return out
}

// ---- evaluation ----

const MINUTE = 60_000
const DAY = 86_400_000

function minutesOf (hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))
}

function offsetMs (w: MaintenanceWindow, at: Date, ctx: RingContext): number {
  if (w.tz === 'utc') return 0
  return (ctx.utcOffsetMinutes ?? -at.getTimezoneOffset()) * MINUTE
}

/** Whether instant `t` (ms) lies inside the window: start ≤ t < end, wrapping at midnight. */
export function inWindow (w: MaintenanceWindow, t: number, offset = 0): boolean {
  const ms = (((t + offset) % DAY) + DAY) % DAY
  const s = minutesOf(w.start) * MINUTE
  const e = minutesOf(w.end) * MINUTE
  return s < e ? (ms >= s && ms < e) : (ms >= s || ms < e)
}

/** The first instant ≥ t inside the window. */
function nextInWindow (w: MaintenanceWindow, t: number, offset: number): number {
  if (inWindow(w, t, offset)) return t
  const local = t + offset
  let start = local - (((local % DAY) + DAY) % DAY) + minutesOf(w.start) * MINUTE
  if (start < local) start += DAY
  return start - offset
}

function describeWindow (w: MaintenanceWindow): string {
  return `${w.start}–${w.end} ${w.tz === 'utc' ? 'UTC' : 'local time'}`
}

const iso = (ms: number): string => isoSeconds(new Date(ms))

/**
 * Whether an endpoint of `ring` may install the release now. Order: halted (closed, whatever the
 * policy) → no policy (open) → ring not named (closed) → gate (promoted, else approval or
 * notBefore) → deadline passed (open, window ignored) → window. A promote record opens a named
 * ring's gate at once, time gate or not.
 */
export function ringState (policy: RolloutPolicy | undefined, ring: string, now: Date, ctx: RingContext): RingState {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new InvalidArgumentError('ringState: "now" must be a valid Date')
  if (ctx.halted) return { open: false, reason: 'halted by a signed halt or rollback record: no new installs of this release' }
  if (policy === undefined) return { open: true, reason: 'no rollout policy: every ring installs' }
  const r = policy.rings.find(x => x.ring === ring)
  if (r === undefined) {
    return { open: false, reason: `ring ${ring} is not named in the rollout policy (rings: ${policy.rings.map(x => x.ring).join(', ')}): it does not install this release` }
  }
  const t = now.getTime()
  const deadline = r.deadline === undefined ? undefined : Date.parse(r.deadline)
  const base = r.deadline === undefined ? {} : { deadline: r.deadline }
  /** The first instant ≥ from when the window (or the deadline) lets the install run. */
  const allowedFrom = (from: number): number => {
    if (r.window === undefined || (deadline !== undefined && from >= deadline)) return from
    const next = nextInWindow(r.window, from, offsetMs(r.window, now, ctx))
    return deadline !== undefined ? Math.min(next, deadline) : next
  }
  let gate: string
  if (ctx.promoted.has(ring)) {
    gate = 'promoted by a signed promote record'
  } else if (r.approval === true) {
    return { open: false, reason: `ring ${ring} waits for approval (a signed promote record for this ring)`, ...base }
  } else {
    const nb = Date.parse(r.notBefore as string)
    if (t < nb) return { open: false, reason: `ring ${ring} opens at ${r.notBefore as string}`, opensAt: iso(allowedFrom(nb)), ...base }
    gate = `open since ${r.notBefore as string}`
  }
  if (deadline !== undefined && t >= deadline) return { open: true, reason: `ring ${ring} ${gate}; deadline ${r.deadline as string} passed: install now`, ...base }
  if (r.window !== undefined && !inWindow(r.window, t, offsetMs(r.window, now, ctx))) {
    return { open: false, reason: `ring ${ring} ${gate}; outside its maintenance window ${describeWindow(r.window)}`, opensAt: iso(allowedFrom(t)), ...base }
  }
  return { open: true, reason: `ring ${ring} ${gate}${r.window !== undefined ? ` (inside its maintenance window ${describeWindow(r.window)})` : ''}`, ...base }
}
