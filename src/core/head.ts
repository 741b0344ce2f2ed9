// The channel head (DESIGN §2): a short-lived record signed by the online key naming, for each
// package of a channel, the current manifest id and sequence. A valid, unexpired head defends
// against freeze (it expires within hours or days), rollback (its sequence and every package's only
// grow) and mix-and-match (a manifest is installed only if the head names its exact bytes).
import { createHash } from 'node:crypto'
import { ShoalError, DecodeError, InvalidArgumentError } from './errors.js'
import type { KeyPair } from './keys.js'
import { checkRootFresh, type SignedRoot } from './root.js'
import { canonicalize } from './canonical.js'
import { PACKAGE_NAME, SEMVER, MAX_VERSION_LENGTH, validateChannelName, validatePackageName, validateVersion, type SignedManifest } from './manifest.js'
import {
  signEnvelope, encodeEnvelope, verifyThreshold, isExpired, isoSeconds, parseJsonBytes, requireCanonical, decodeEnvelopeShape,
  signedBody, obj, need, str, int, timestamp, HEX64, MetadataExpiredError, RollbackError,
  type Envelope
} from './signed.js'

export const MAX_HEAD_BYTES = 1024 * 1024
export const MAX_HEAD_PACKAGES = 10_000

export interface HeadEntry { manifest: string /* manifest id: hex SHA-256 of its bytes */, seq: number, version: string }
export interface HeadBody {
  _type: 'head'
  formatVersion: 1
  channel: string
  seq: number
  issued: string
  expires: string
  packages: Record<string, HeadEntry>
}
export type SignedHead = Envelope<HeadBody>

export class HeadExpiredError extends MetadataExpiredError {
  constructor (channel: string, expires: string, now: Date) {
    super(`channel head of ${channel}`, expires, now, ': nothing new is installed until a fresh head arrives (is the seed reachable and its online key signing?)')
  }
}

/** A manifest that the current head does not name: another release, version or byte string. */
export class MixAndMatchError extends ShoalError {
  constructor (message: string) {
    super('ERR_MIX_AND_MATCH', message)
  }
}

export function headId (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export function signHead (o: {
  channel: string, seq: number, issued: Date, expires: Date, packages: Record<string, HeadEntry>, signers: KeyPair[]
}): { head: SignedHead, bytes: Uint8Array, id: string } {
  validateChannelName(o.channel)
  if (!Number.isSafeInteger(o.seq) || o.seq < 1) throw new InvalidArgumentError(`head sequence ${o.seq} must be a whole number ≥ 1`)
  const issued = isoSeconds(o.issued)
  const expires = isoSeconds(o.expires)
  if (expires <= issued) throw new InvalidArgumentError(`head expiry ${expires} must be after its issue time ${issued}`)
  const names = Object.keys(o.packages)
  if (names.length > MAX_HEAD_PACKAGES) throw new InvalidArgumentError(`a head lists at most ${MAX_HEAD_PACKAGES} packages`)
  const packages: Record<string, HeadEntry> = {}
  for (const name of names.sort()) {
    const e = o.packages[name] as HeadEntry
    validatePackageName(name)
    validateVersion(e.version)
    if (!HEX64.test(e.manifest)) throw new InvalidArgumentError(`head entry ${name}: manifest id must be 64 lowercase hex characters`)
    if (!Number.isSafeInteger(e.seq) || e.seq < 1) throw new InvalidArgumentError(`head entry ${name}: seq must be a whole number ≥ 1`)
    packages[name] = { manifest: e.manifest, seq: e.seq, version: e.version }
  }
  const body: HeadBody = { _type: 'head', formatVersion: 1, channel: o.channel, seq: o.seq, issued, expires, packages }
  const head = signEnvelope('head', body, o.signers)
  const bytes = encodeEnvelope(head)
  decodeHead(bytes) // what we sign is exactly what readers accept (size cap included)
  return { head, bytes, id: headId(bytes) }
}

const HEAD_FIELDS = ['_type', 'formatVersion', 'channel', 'seq', 'issued', 'expires', 'packages'] as const

/** Structure and caps; the bytes must be the canonical encoding. */
export function decodeHead (bytes: Uint8Array): SignedHead {
  const what = 'channel head'
  const { text, value } = parseJsonBytes(bytes, what, MAX_HEAD_BYTES)
  const env = decodeEnvelopeShape(value, what)
  const b = signedBody(env.signed, what, 'head', HEAD_FIELDS, HEAD_FIELDS)
  const issued = timestamp(b.issued, what, 'issued')
  const expires = timestamp(b.expires, what, 'expires')
  if (expires <= issued) throw new DecodeError(what, `expires (${expires}) is not after issued (${issued})`)
  if (typeof b.packages !== 'object' || b.packages === null || Array.isArray(b.packages)) throw new DecodeError(what, 'packages must be an object')
  const entries = Object.entries(b.packages)
  if (entries.length > MAX_HEAD_PACKAGES) throw new DecodeError(what, `packages lists ${entries.length} entries, more than ${MAX_HEAD_PACKAGES}`)
  const packages: Record<string, HeadEntry> = {}
  for (const [name, e] of entries) {
    str(name, what, 'a package name in packages', PACKAGE_NAME)
    const eo = obj(e, what, `packages.${name}`, ['manifest', 'seq', 'version'])
    need(eo, what, `packages.${name}`, 'manifest', 'seq', 'version')
    packages[name] = {
      manifest: str(eo.manifest, what, `packages.${name}.manifest`, HEX64),
      seq: int(eo.seq, what, `packages.${name}.seq`, 1),
      version: str(eo.version, what, `packages.${name}.version`, SEMVER, MAX_VERSION_LENGTH)
    }
  }
  const body: HeadBody = {
    _type: 'head',
    formatVersion: 1,
    channel: str(b.channel, what, 'channel', PACKAGE_NAME),
    seq: int(b.seq, what, 'seq', 1),
    issued,
    expires,
    packages
  }
  requireCanonical(text, value, what)
  return { signed: body, signatures: env.signatures }
}

/** Signed by a threshold of the root's online keys, root unexpired, head unexpired (+ grace), right channel. */
export function verifyHead (h: SignedHead, root: SignedRoot, now: Date, opts: { graceSeconds?: number, expectChannel?: string } = {}): void {
  const what = `channel head of ${h.signed.channel} (seq ${h.signed.seq})`
  verifyThreshold('head', h, root.signed.roles.online, root.signed.keys, what)
  checkRootFresh(root, now, opts.graceSeconds)
  if (opts.expectChannel !== undefined && h.signed.channel !== opts.expectChannel) {
    throw new MixAndMatchError(`${what} was served for channel ${opts.expectChannel}`)
  }
  if (isExpired(h.signed.expires, now, opts.graceSeconds)) throw new HeadExpiredError(h.signed.channel, h.signed.expires, now)
}

/**
 * Rollback check of a verified head against the last one accepted for its channel: the head's
 * sequence must not go down, and neither may any package's (nor may one package sequence change
 * its version). 'same' means the very same head again (nothing to do); a different head under an
 * already accepted sequence is refused. Forget `last` when the root's online role changes.
 */
export function checkHeadAdvance (last: HeadBody | null | undefined, next: HeadBody): 'new' | 'same' {
  if (last === null || last === undefined) return 'new'
  if (last.channel !== next.channel) throw new InvalidArgumentError(`comparing heads of two channels (${last.channel}, ${next.channel})`)
  const where = `channel head of ${next.channel}`
  if (next.seq < last.seq) throw new RollbackError(`${where}: seq ${next.seq} is older than the accepted seq ${last.seq}`)
  if (next.seq === last.seq) {
    if (canonicalize(next) === canonicalize(last)) return 'same'
    throw new RollbackError(`${where}: a different head with the already accepted seq ${next.seq} (online key misuse?)`)
  }
  for (const [name, old] of Object.entries(last.packages)) {
    const cur = Object.hasOwn(next.packages, name) ? next.packages[name] : undefined
    if (cur === undefined) continue // a package may leave a channel
    if (cur.seq < old.seq) throw new RollbackError(`${where}: ${name} goes back from seq ${old.seq} (${old.version}) to seq ${cur.seq} (${cur.version})`)
    if (cur.seq === old.seq && cur.version !== old.version) throw new RollbackError(`${where}: ${name} seq ${cur.seq} was ${old.version}, now ${cur.version}`)
  }
  return 'new'
}

/**
 * Mix-and-match check: the head of the manifest's channel must name this package with this exact
 * manifest (`id` = hex SHA-256 of the bytes it was decoded from), sequence and version.
 */
export function checkManifestInHead (head: HeadBody, m: SignedManifest, id: string): HeadEntry {
  const b = m.signed
  const what = `manifest ${b.package}@${b.version} (seq ${b.seq})`
  if (head.channel !== b.channel) throw new MixAndMatchError(`${what} is for channel ${b.channel}, the head is for ${head.channel}`)
  const e = Object.hasOwn(head.packages, b.package) ? head.packages[b.package] : undefined
  if (e === undefined) throw new MixAndMatchError(`${what}: the ${head.channel} head (seq ${head.seq}) does not list ${b.package}`)
  if (e.manifest !== id) throw new MixAndMatchError(`${what}: the ${head.channel} head names manifest ${e.manifest.slice(0, 16)}… (${e.version}, seq ${e.seq}), not ${id.slice(0, 16)}…`)
  if (e.seq !== b.seq || e.version !== b.version) throw new MixAndMatchError(`${what}: the head lists ${b.package} as ${e.version} seq ${e.seq}`)
  return e
}
