// The rollout policy's JSON (docs/rollout.md §2.1), as the signed manifest's `rollout` field
// carries it, and its strict decoder. In core because decodeManifest checks the field; parsing
// the --rollout spec and evaluating a ring's state are in src/rollout/policy.ts.
import { DecodeError } from './errors.js'
import { LABEL } from './manifest.js'
import { obj, need, list, str, timestamp, type Obj } from './signed.js'

export const MAX_RINGS = 64
export const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/
export const HHMM_END = /^(([01]\d|2[0-3]):[0-5]\d|24:00)$/

/** A daily maintenance window, minutes resolution; crosses midnight when `start` > `end`. */
export interface MaintenanceWindow {
  start: string /* "HH:MM", 00:00–23:59 */
  end: string /* "HH:MM", 00:01–24:00, ≠ start */
  tz: 'utc' | 'local' /* 'local': the endpoint's own UTC offset */
}
export interface RingPolicy {
  ring: string
  /** Gate by time: the ring opens at this instant. Exactly one of notBefore / approval. */
  notBefore?: string
  /** Gate by approval: the ring opens when a signed promote record names it. */
  approval?: true
  /** From this instant on the install is due: the window no longer holds it back, nor does a user's defer. */
  deadline?: string
  window?: MaintenanceWindow
}
/** The JSON object stored in a manifest's `rollout` field (absolute UTC timestamps only). */
export interface RolloutPolicy {
  formatVersion: 1
  /** In rollout order; each label once. */
  rings: RingPolicy[]
}

const RING_FIELDS = ['ring', 'notBefore', 'approval', 'deadline', 'window'] as const
const WINDOW_FIELDS = ['start', 'end', 'tz'] as const

/**
 * Strict check of a decoded `rollout` value (the manifest's signature already covers it): only
 * known fields, at most MAX_RINGS rings, unique labels, exactly one gate per ring, deadline not
 * before notBefore, windows neither empty nor whole-day. Anything else is a DecodeError.
 */
export function validateRolloutPolicy (v: unknown, what = 'rollout policy'): RolloutPolicy {
  const p = obj(v, what, 'rollout', ['formatVersion', 'rings'])
  need(p, what, 'rollout', 'formatVersion', 'rings')
  if (p.formatVersion !== 1) throw new DecodeError(what, `unsupported formatVersion ${typeof p.formatVersion === 'number' ? p.formatVersion : typeof p.formatVersion} (this shoal reads 1; upgrade shoal?)`)
  const raw = list(p.rings, what, 'rollout.rings', MAX_RINGS)
  if (raw.length === 0) throw new DecodeError(what, 'rollout.rings is empty: no endpoint could ever install (leave rollout out to let every ring install)')
  const seen = new Set<string>()
  const rings = raw.map((r, i): RingPolicy => {
    const at = `rollout.rings[${i}]`
    const ro: Obj = obj(r, what, at, RING_FIELDS)
    need(ro, what, at, 'ring')
    const ring = str(ro.ring, what, `${at}.ring`, LABEL, 64)
    if (seen.has(ring)) throw new DecodeError(what, `${at}: ring ${ring} is listed twice`)
    seen.add(ring)
    const out: RingPolicy = { ring }
    const hasTime = ro.notBefore !== undefined
    const hasApproval = ro.approval !== undefined
    if (hasTime === hasApproval) throw new DecodeError(what, `${at} (${ring}) needs exactly one of notBefore and approval`)
    if (hasTime) out.notBefore = timestamp(ro.notBefore, what, `${at}.notBefore`)
    if (hasApproval) {
      if (ro.approval !== true) throw new DecodeError(what, `${at}.approval must be true`)
      out.approval = true
    }
    if (ro.deadline !== undefined) {
      out.deadline = timestamp(ro.deadline, what, `${at}.deadline`)
      if (out.notBefore !== undefined && out.deadline < out.notBefore) throw new DecodeError(what, `${at} (${ring}): deadline ${out.deadline} is before notBefore ${out.notBefore}`)
    }
    if (ro.window !== undefined) out.window = validateWindow(ro.window, what, `${at}.window`)
    return out
  })
  return { formatVersion: 1, rings }
}

function validateWindow (v: unknown, what: string, at: string): MaintenanceWindow {
  const w = obj(v, what, at, WINDOW_FIELDS)
  need(w, what, at, ...WINDOW_FIELDS)
  const start = str(w.start, what, `${at}.start`, HHMM, 5)
  const end = str(w.end, what, `${at}.end`, HHMM_END, 5)
  if (start === end || (start === '00:00' && end === '24:00')) throw new DecodeError(what, `${at} ${start}–${end} is empty or the whole day`)
  if (w.tz !== 'utc' && w.tz !== 'local') throw new DecodeError(what, `${at}.tz must be "utc" or "local"`)
  return { start, end, tz: w.tz }
}
