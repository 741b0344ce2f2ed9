// Signed control records (DESIGN §7, docs/rollout.md §3): `promote` opens a ring of one release,
// `halt` stops its installs that have not started, `rollback` halts it and sends endpoints back to
// another version. Each is a small envelope signed by a threshold of the root's publisher keys,
// numbered per package with a sequence that only grows, carried like heads. Pure: no clock, no I/O.
import { createHash } from 'node:crypto'
import { DecodeError, InvalidArgumentError } from '../core/errors.js'
import type { KeyPair } from '../core/keys.js'
import { checkRootFresh, type SignedRoot } from '../core/root.js'
import { canonicalize } from '../core/canonical.js'
import { PACKAGE_NAME, SEMVER, MAX_VERSION_LENGTH, validatePackageName, validateVersion, WrongPackageError } from '../core/manifest.js'
import {
  signEnvelope, encodeEnvelope, verifyThreshold, isExpired, isoSeconds, parseJsonBytes, requireCanonical, decodeEnvelopeShape,
  signedBody, str, int, timestamp, MetadataExpiredError, RollbackError,
  type Envelope
} from '../core/signed.js'
import { RING_LABEL } from './policy.js'

export const MAX_RECORD_BYTES = 64 * 1024
export const RECORD_ACTIONS = ['promote', 'halt', 'rollback'] as const
export type RecordAction = typeof RECORD_ACTIONS[number]

export interface RecordBody {
  _type: 'record'
  formatVersion: 1
  action: RecordAction
  package: string
  /** The release the record is about. */
  version: string
  /** promote only: the ring it opens. */
  ring?: string
  /** rollback only: the version endpoints go back to (≠ version). */
  to?: string
  /** Per package, over all its records (every version): only grows. */
  seq: number
  issued: string
  expires: string
}
export type SignedRecord = Envelope<RecordBody>

export class RecordExpiredError extends MetadataExpiredError {
  constructor (what: string, expires: string, now: Date) {
    super(what, expires, now, ': sign a fresh record (shoal promote/halt/rollback again, with the next sequence number)')
  }
}

export function recordId (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export function describeRecord (b: Pick<RecordBody, 'action' | 'package' | 'version' | 'ring' | 'to' | 'seq'>): string {
  const extra = b.action === 'promote' ? ` --ring ${b.ring ?? '?'}` : b.action === 'rollback' ? ` --to ${b.to ?? '?'}` : ''
  return `${b.action} ${b.package}@${b.version}${extra} (record seq ${b.seq})`
}

/** Which optional fields each action requires ('need') or forbids (absent from the list). */
const ACTION_FIELDS: Record<RecordAction, { ring: boolean, to: boolean }> = {
  promote: { ring: true, to: false },
  halt: { ring: false, to: false },
  rollback: { ring: false, to: true }
}

export function signRecord (o: {
  action: RecordAction, package: string, version: string, ring?: string, to?: string,
  seq: number, issued: Date, expires: Date, signers: KeyPair[]
}): { record: SignedRecord, bytes: Uint8Array, id: string } {
  if (!(RECORD_ACTIONS as readonly string[]).includes(o.action)) throw new InvalidArgumentError(`record action ${JSON.stringify(o.action)} must be promote, halt or rollback`)
  validatePackageName(o.package)
  validateVersion(o.version)
  const rule = ACTION_FIELDS[o.action]
  if (rule.ring) {
    if (typeof o.ring !== 'string' || !RING_LABEL.test(o.ring)) throw new InvalidArgumentError(`promote needs a ring label (1–64 of A-Z, a-z, 0-9, ".", "_", "-"), got ${JSON.stringify(o.ring)}`)
  } else if (o.ring !== undefined) {
    throw new InvalidArgumentError(`${o.action} takes no ring (it applies to the whole release)`)
  }
  if (rule.to) {
    if (typeof o.to !== 'string') throw new InvalidArgumentError('rollback needs the version to go back to (--to)')
    validateVersion(o.to)
    if (o.to === o.version) throw new InvalidArgumentError(`rollback of ${o.package}@${o.version} to the same version`)
  } else if (o.to !== undefined) {
    throw new InvalidArgumentError(`${o.action} takes no target version (only rollback does)`)
  }
  if (!Number.isSafeInteger(o.seq) || o.seq < 1) throw new InvalidArgumentError(`record sequence ${o.seq} must be a whole number ≥ 1`)
  const issued = isoSeconds(o.issued)
  const expires = isoSeconds(o.expires)
  if (expires <= issued) throw new InvalidArgumentError(`record expiry ${expires} must be after its issue time ${issued}`)
  const body: RecordBody = {
    _type: 'record',
    formatVersion: 1,
    action: o.action,
    package: o.package,
    version: o.version,
    ...(rule.ring ? { ring: o.ring } : {}),
    ...(rule.to ? { to: o.to } : {}),
    seq: o.seq,
    issued,
    expires
  }
  const record = signEnvelope('record', body, o.signers)
  const bytes = encodeEnvelope(record)
  decodeRecord(bytes) // what we sign is exactly what readers accept
  return { record, bytes, id: recordId(bytes) }
}

const RECORD_FIELDS = ['_type', 'formatVersion', 'action', 'package', 'version', 'ring', 'to', 'seq', 'issued', 'expires'] as const
const RECORD_REQUIRED = ['_type', 'formatVersion', 'action', 'package', 'version', 'seq', 'issued', 'expires'] as const

/** Structure, per-action fields and caps; the bytes must be the canonical encoding (one record, one id). */
export function decodeRecord (bytes: Uint8Array): SignedRecord {
  const what = 'control record'
  const { text, value } = parseJsonBytes(bytes, what, MAX_RECORD_BYTES)
  const env = decodeEnvelopeShape(value, what)
  const b = signedBody(env.signed, what, 'record', RECORD_FIELDS, RECORD_REQUIRED)
  if (typeof b.action !== 'string' || !(RECORD_ACTIONS as readonly string[]).includes(b.action)) {
    throw new DecodeError(what, `action ${typeof b.action === 'string' ? JSON.stringify(b.action.slice(0, 64)) : typeof b.action} is not promote, halt or rollback`)
  }
  const action = b.action as RecordAction
  const rule = ACTION_FIELDS[action]
  if (rule.ring && b.ring === undefined) throw new DecodeError(what, 'a promote record needs ring')
  if (!rule.ring && b.ring !== undefined) throw new DecodeError(what, `a ${action} record has no ring`)
  if (rule.to && b.to === undefined) throw new DecodeError(what, 'a rollback record needs to')
  if (!rule.to && b.to !== undefined) throw new DecodeError(what, `a ${action} record has no to`)
  const version = str(b.version, what, 'version', SEMVER, MAX_VERSION_LENGTH)
  const issued = timestamp(b.issued, what, 'issued')
  const expires = timestamp(b.expires, what, 'expires')
  if (expires <= issued) throw new DecodeError(what, `expires (${expires}) is not after issued (${issued})`)
  const body: RecordBody = {
    _type: 'record',
    formatVersion: 1,
    action,
    package: str(b.package, what, 'package', PACKAGE_NAME),
    version,
    ...(rule.ring ? { ring: str(b.ring, what, 'ring', RING_LABEL, 64) } : {}),
    ...(rule.to ? { to: str(b.to, what, 'to', SEMVER, MAX_VERSION_LENGTH) } : {}),
    seq: int(b.seq, what, 'seq', 1),
    issued,
    expires
  }
  if (body.to === version) throw new DecodeError(what, `rollback of ${version} to the same version`)
  requireCanonical(text, value, what)
  return { signed: body, signatures: env.signatures }
}

/**
 * Signed by a threshold of the root's publisher keys, the root unexpired, the record unexpired
 * (+ grace), and, when given, about the package / release the caller asked for.
 */
export function verifyRecord (rec: SignedRecord, root: SignedRoot, now: Date, opts: { graceSeconds?: number, expectPackage?: string, expectVersion?: string } = {}): void {
  const what = `control record ${describeRecord(rec.signed)}`
  verifyThreshold('record', rec, root.signed.roles.publisher, root.signed.keys, what)
  checkRootFresh(root, now, opts.graceSeconds)
  if (opts.expectPackage !== undefined && rec.signed.package !== opts.expectPackage) throw new WrongPackageError(`${what} was served where package ${opts.expectPackage} was asked for`)
  if (opts.expectVersion !== undefined && rec.signed.version !== opts.expectVersion) throw new WrongPackageError(`${what} was served where release ${rec.signed.package}@${opts.expectVersion} was asked for`)
  if (isExpired(rec.signed.expires, now, opts.graceSeconds)) throw new RecordExpiredError(what, rec.signed.expires, now)
}

/**
 * Replay check against what was last accepted for the record's package: either that record's
 * body or just its sequence number. A higher seq is 'new'; the very same record again is 'same'
 * (only recognisable when `last` is the body); an equal seq otherwise, or a lower one, is
 * RollbackError.
 */
export function checkRecordAdvance (last: number | RecordBody | null | undefined, next: RecordBody): 'new' | 'same' {
  if (last === null || last === undefined) return 'new'
  const what = `control record ${describeRecord(next)}`
  if (typeof last === 'number') {
    if (!Number.isSafeInteger(last) || last < 0) throw new InvalidArgumentError(`last record sequence ${last} must be a whole number ≥ 0`)
    if (next.seq <= last) throw new RollbackError(`${what}: seq ${next.seq} is not newer than the accepted seq ${last} for ${next.package} (replayed or stale record)`)
    return 'new'
  }
  if (last.package !== next.package) throw new InvalidArgumentError(`comparing control records of two packages (${last.package}, ${next.package})`)
  if (next.seq < last.seq) throw new RollbackError(`${what}: seq ${next.seq} is older than the accepted seq ${last.seq} for ${next.package} (replayed or stale record)`)
  if (next.seq === last.seq) {
    if (canonicalize(next) === canonicalize(last)) return 'same'
    throw new RollbackError(`${what}: a different record with the already accepted seq ${next.seq} for ${next.package} (publisher key misuse?)`)
  }
  return 'new'
}

export interface ReleaseControl {
  /** Rings opened by promote records. */
  promoted: Set<string>
  /** A halt or rollback record exists: installs that have not started do not start. */
  halted: boolean
  /** The version of the latest rollback record: endpoints that installed this release go back to it. */
  rollbackTo?: string
}

/**
 * Folds the verified records of one release in seq order. promote adds its ring (unless the
 * release is already halted: halt and rollback are final for a release; to resume, publish a new
 * version); halt sets halted; rollback sets halted and rollbackTo (the latest rollback wins).
 * With `release`, records of other releases are skipped; without it they must all be of one
 * release. The same record twice counts once; two different records with one seq are refused.
 */
export function applyRecords (records: readonly RecordBody[], release?: { package: string, version: string }): ReleaseControl {
  const mine = release === undefined ? [...records] : records.filter(r => r.package === release.package && r.version === release.version)
  const first = mine[0]
  if (first !== undefined && mine.some(r => r.package !== first.package || r.version !== first.version)) {
    throw new InvalidArgumentError(`applyRecords: records of several releases (${first.package}@${first.version} and others); pass the release to select`)
  }
  const bySeq = new Map<number, RecordBody>()
  for (const r of mine) {
    const before = bySeq.get(r.seq)
    if (before !== undefined && canonicalize(before) !== canonicalize(r)) {
      throw new RollbackError(`two different control records for ${r.package} share seq ${r.seq} (publisher key misuse?)`)
    }
    bySeq.set(r.seq, r)
  }
  const out: ReleaseControl = { promoted: new Set(), halted: false }
  for (const r of [...bySeq.values()].sort((a, b) => a.seq - b.seq)) {
    if (r.action === 'promote') {
      if (!out.halted && r.ring !== undefined) out.promoted.add(r.ring)
    } else if (r.action === 'halt') {
      out.halted = true
    } else {
      out.halted = true
      if (r.to !== undefined) out.rollbackTo = r.to
    }
  }
  return out
}
