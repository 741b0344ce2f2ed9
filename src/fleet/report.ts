// The endpoint report (/shoal/report/1, docs/fleet.md, docs/protocol.md §6.8): what an endpoint
// tells its seed about itself. A report is JSON; this file is its one decoder, strict on purpose —
// the seed stores what endpoints say and shows it to admins, so every field is checked, every string
// bounded, and anything unknown refused rather than stored.
import { ShoalError, quoteValue } from '../core/errors.js'
import { LABEL, PACKAGE_NAME } from '../core/manifest.js'

/** Largest report accepted, in bytes of its JSON (a Debian desktop's ~3,000 OS packages are ~150 kB). */
export const MAX_REPORT_BYTES = 1024 * 1024
/** Releases one report may list. */
export const MAX_REPORT_RELEASES = 1024
/** OS packages one inventory may list; collectors truncate above and say so. */
export const MAX_INVENTORY_PACKAGES = 20_000
/** A failure's log tail is cut to this many characters (its end kept). */
export const MAX_LOG_TAIL = 8 * 1024
export const REPORT_VERSION = 1

/** A release state: today's `announced` … `superseded`, and whatever later ones (`waiting-for-ring`). */
export const STATE_NAME = /^[a-z][a-z-]{0,31}$/
/** A PeerId as text (base58btc multihash; Ed25519 ones start with 12D3KooW). */
export const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/
/** Versions as endpoints see them: semver for shoal packages, anything printable for OS packages. */
const VERSION_TEXT = /^[\x21-\x7e]{1,256}$/
const OS_NAME = /^[\x21-\x7e]{1,256}$/

export class ReportInvalidError extends ShoalError {
  constructor (message: string) {
    super('ERR_REPORT_INVALID', `report refused: ${message}`)
  }
}

export class ReportOversizeError extends ShoalError {
  constructor (bytes: number) {
    super('ERR_REPORT_OVERSIZE', `report of ${bytes} bytes refused: the limit is ${MAX_REPORT_BYTES} bytes (an inventory above ${MAX_INVENTORY_PACKAGES} packages is truncated by the endpoint)`)
  }
}

export class ReportPeerError extends ShoalError {
  constructor (claimed: string, sender: string) {
    super('ERR_REPORT_PEER', `report refused: it names endpoint ${claimed} but was sent by ${sender}; an endpoint reports only for itself`)
  }
}

export interface ReleaseError { code: string, message: string, exitCode?: number, logTail?: string }
export interface ReleaseProgress { blobs: number, blobsTotal: number, bytes: number, bytesTotal: number }

export interface ReportedRelease {
  package: string
  version: string
  state: string
  channel?: string
  progress?: ReleaseProgress
  error?: ReleaseError
}

export interface InstalledPackage { package: string, version: string }
export interface OsPackage { name: string, version: string }

export interface Inventory {
  /** Where the OS packages came from; `none` with a `reason` when there was no package manager to ask. */
  source: 'dpkg' | 'rpm' | 'none'
  reason?: string
  /** True when the list was cut at MAX_INVENTORY_PACKAGES or the collector's output cap. */
  truncated: boolean
  collectedAt: string
  packages: OsPackage[]
}

export interface ByteCounts { lan: number, seed: number, origin: number }

export interface Report {
  v: typeof REPORT_VERSION
  peerId: string
  sentAt: string
  daemonVersion: string
  site: string | null
  ring: string
  /** The version each shoal-managed package's `current` points to. */
  installed: InstalledPackage[]
  /** The release each followed channel names per package, with its state here. */
  releases: ReportedRelease[]
  /** Bytes this endpoint received, by source, since its state was created. */
  bytes: ByteCounts
  inventory: Inventory
}

type Obj = Record<string, unknown>

function obj (v: unknown, at: string, allowed: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ReportInvalidError(`${at} must be a JSON object`)
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw new ReportInvalidError(`${at} has an unknown field "${k.slice(0, 40)}"`)
  return v as Obj
}

function text (v: unknown, at: string, re: RegExp, max = 256): string {
  if (typeof v !== 'string' || v.length > max || !re.test(v)) throw new ReportInvalidError(`${at} is missing or malformed`)
  return v
}

function freeText (v: unknown, at: string, max: number): string {
  if (typeof v !== 'string') throw new ReportInvalidError(`${at} must be a string`)
  if (v.length > max) throw new ReportInvalidError(`${at} is longer than ${max} characters`)
  return v
}

function count (v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ReportInvalidError(`${at} must be a whole number ≥ 0`)
  return v
}

function time (v: unknown, at: string): string {
  const s = text(v, at, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/, 40)
  if (Number.isNaN(Date.parse(s))) throw new ReportInvalidError(`${at} is not an ISO time`)
  return s
}

function list (v: unknown, at: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new ReportInvalidError(`${at} must be a list`)
  if (v.length > max) throw new ReportInvalidError(`${at} lists ${v.length} entries, above the limit of ${max}`)
  return v
}

function release (v: unknown, at: string): ReportedRelease {
  const o = obj(v, at, ['package', 'version', 'state', 'channel', 'progress', 'error'])
  const r: ReportedRelease = {
    package: text(o.package, `${at}.package`, PACKAGE_NAME),
    version: text(o.version, `${at}.version`, VERSION_TEXT),
    state: text(o.state, `${at}.state`, STATE_NAME)
  }
  if (o.channel !== undefined) r.channel = text(o.channel, `${at}.channel`, PACKAGE_NAME)
  if (o.progress !== undefined) {
    const p = obj(o.progress, `${at}.progress`, ['blobs', 'blobsTotal', 'bytes', 'bytesTotal'])
    r.progress = { blobs: count(p.blobs, `${at}.progress.blobs`), blobsTotal: count(p.blobsTotal, `${at}.progress.blobsTotal`), bytes: count(p.bytes, `${at}.progress.bytes`), bytesTotal: count(p.bytesTotal, `${at}.progress.bytesTotal`) }
  }
  if (o.error !== undefined) {
    const e = obj(o.error, `${at}.error`, ['code', 'message', 'exitCode', 'logTail'])
    r.error = { code: text(e.code, `${at}.error.code`, /^ERR_[A-Z0-9_]{1,60}$/), message: freeText(e.message, `${at}.error.message`, 1024) }
    if (e.exitCode !== undefined) {
      if (typeof e.exitCode !== 'number' || !Number.isInteger(e.exitCode) || e.exitCode < -255 || e.exitCode > 255) throw new ReportInvalidError(`${at}.error.exitCode must be an integer within -255…255`)
      r.error.exitCode = e.exitCode
    }
    if (e.logTail !== undefined) r.error.logTail = freeText(e.logTail, `${at}.error.logTail`, MAX_LOG_TAIL)
  }
  return r
}

function inventory (v: unknown): Inventory {
  const o = obj(v, 'inventory', ['source', 'reason', 'truncated', 'collectedAt', 'packages'])
  const source = o.source
  if (source !== 'dpkg' && source !== 'rpm' && source !== 'none') throw new ReportInvalidError('inventory.source must be "dpkg", "rpm" or "none"')
  if (typeof o.truncated !== 'boolean') throw new ReportInvalidError('inventory.truncated must be true or false')
  const inv: Inventory = {
    source,
    truncated: o.truncated,
    collectedAt: time(o.collectedAt, 'inventory.collectedAt'),
    packages: list(o.packages, 'inventory.packages', MAX_INVENTORY_PACKAGES).map((p, i) => {
      const q = obj(p, `inventory.packages[${i}]`, ['name', 'version'])
      return { name: text(q.name, `inventory.packages[${i}].name`, OS_NAME), version: text(q.version, `inventory.packages[${i}].version`, VERSION_TEXT) }
    })
  }
  if (o.reason !== undefined) inv.reason = freeText(o.reason, 'inventory.reason', 512)
  return inv
}

/** Checks a report's JSON bytes field by field. Throws ReportOversizeError or ReportInvalidError. */
export function decodeReport (bytes: Uint8Array): Report {
  if (bytes.byteLength > MAX_REPORT_BYTES) throw new ReportOversizeError(bytes.byteLength)
  let raw: unknown
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new ReportInvalidError('not UTF-8 JSON')
  }
  const o = obj(raw, 'the report', ['v', 'peerId', 'sentAt', 'daemonVersion', 'site', 'ring', 'installed', 'releases', 'bytes', 'inventory'])
  if (o.v !== REPORT_VERSION) throw new ReportInvalidError(`version ${quoteValue(o.v)} is not ${REPORT_VERSION}`)
  const b = obj(o.bytes, 'bytes', ['lan', 'seed', 'origin'])
  return {
    v: REPORT_VERSION,
    peerId: text(o.peerId, 'peerId', PEER_ID),
    sentAt: time(o.sentAt, 'sentAt'),
    daemonVersion: text(o.daemonVersion, 'daemonVersion', /^[\x21-\x7e]{1,64}$/),
    site: o.site === null ? null : text(o.site, 'site', LABEL),
    ring: text(o.ring, 'ring', LABEL),
    installed: list(o.installed, 'installed', MAX_REPORT_RELEASES).map((p, i) => {
      const q = obj(p, `installed[${i}]`, ['package', 'version'])
      return { package: text(q.package, `installed[${i}].package`, PACKAGE_NAME), version: text(q.version, `installed[${i}].version`, VERSION_TEXT) }
    }),
    releases: list(o.releases, 'releases', MAX_REPORT_RELEASES).map((r, i) => release(r, `releases[${i}]`)),
    bytes: { lan: count(b.lan, 'bytes.lan'), seed: count(b.seed, 'bytes.seed'), origin: count(b.origin, 'bytes.origin') },
    inventory: inventory(o.inventory)
  }
}

export function encodeReport (r: Report): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r))
}

/** The tail a report carries of a long hook log. */
export function logTail (s: string): string {
  return s.length <= MAX_LOG_TAIL ? s : s.slice(s.length - MAX_LOG_TAIL)
}
