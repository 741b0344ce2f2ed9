// root.json: who may sign what (DESIGN §2). Endpoints pin one at enrollment; a successor is
// accepted only when it is version + 1 and signed by a threshold of the old root keys and of the
// new ones (TUF §5.3), so neither a thief of old keys nor one of new keys alone can rotate trust.
import { ShoalError, DecodeError, InvalidArgumentError } from './errors.js'
import { publicKeyObject, keyIdOfObject, UnknownKeyTypeError, KEYTYPE_ED25519, type KeyPair, type PublicKey } from './keys.js'
import {
  signEnvelope, encodeEnvelope, verifyThreshold, isExpired, isoSeconds, parseJsonBytes, decodeEnvelopeShape, signedBody,
  obj, need, list, str, int, timestamp, HEX64, MetadataExpiredError, RollbackError,
  type Envelope
} from './signed.js'

export const MAX_ROOT_BYTES = 1024 * 1024
export const MAX_ROOT_KEYS = 256
export const MAX_ROLE_KEYS = 64
export const ROLE_NAMES = ['root', 'publisher', 'online'] as const
export type RoleName = typeof ROLE_NAMES[number]

export interface RootRole { keyids: string[], threshold: number }
export interface RootBody {
  _type: 'root'
  formatVersion: 1
  version: number
  expires: string
  keys: Record<string, PublicKey>
  roles: { root: RootRole, publisher: RootRole, online: RootRole }
}
export type SignedRoot = Envelope<RootBody>

export class RootExpiredError extends MetadataExpiredError {
  constructor (expires: string, now: Date) {
    super('root.json', expires, now, ': the fleet needs a newer root.json signed by a threshold of its root keys')
  }
}

/** A new root that does not directly follow the trusted one (roots must be applied one version at a time). */
export class RootChainError extends ShoalError {
  constructor (message: string) {
    super('ERR_ROOT_CHAIN', message)
  }
}

function checkRoleArgs (name: string, keys: KeyPair[], threshold: number): void {
  if (keys.length < 1 || keys.length > MAX_ROLE_KEYS) throw new InvalidArgumentError(`the ${name} role needs 1–${MAX_ROLE_KEYS} keys, got ${keys.length}`)
  if (new Set(keys.map(k => k.keyid)).size !== keys.length) throw new InvalidArgumentError(`the ${name} role lists a key twice`)
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > keys.length) {
    throw new InvalidArgumentError(`the ${name} threshold must be 1–${keys.length} (its number of keys), got ${threshold}`)
  }
}

/**
 * A new root, signed by every key in `signers` (default: all of `rootKeys`). For a rotation, sign
 * with a threshold of the old root keys as well as the new ones.
 */
export function createRoot (o: {
  rootKeys: KeyPair[], rootThreshold: number, publisherKeys: KeyPair[], publisherThreshold: number,
  onlineKeys: KeyPair[], onlineThreshold?: number, expires: Date, version?: number, signers?: KeyPair[]
}): SignedRoot {
  const onlineThreshold = o.onlineThreshold ?? 1
  checkRoleArgs('root', o.rootKeys, o.rootThreshold)
  checkRoleArgs('publisher', o.publisherKeys, o.publisherThreshold)
  checkRoleArgs('online', o.onlineKeys, onlineThreshold)
  const version = o.version ?? 1
  if (!Number.isSafeInteger(version) || version < 1) throw new InvalidArgumentError(`root version must be a whole number ≥ 1, got ${version}`)
  const keys: Record<string, PublicKey> = {}
  for (const k of [...o.rootKeys, ...o.publisherKeys, ...o.onlineKeys]) keys[k.keyid] = publicKeyObject(k.publicKey)
  const body: RootBody = {
    _type: 'root',
    formatVersion: 1,
    version,
    expires: isoSeconds(o.expires),
    keys,
    roles: {
      root: { keyids: o.rootKeys.map(k => k.keyid), threshold: o.rootThreshold },
      publisher: { keyids: o.publisherKeys.map(k => k.keyid), threshold: o.publisherThreshold },
      online: { keyids: o.onlineKeys.map(k => k.keyid), threshold: onlineThreshold }
    }
  }
  const env = signEnvelope('root', body, o.signers ?? o.rootKeys)
  decodeRoot(encodeEnvelope(env)) // what we sign is exactly what every reader accepts
  return env
}

function role (v: unknown, what: string, field: string, keys: Record<string, PublicKey>): RootRole {
  const o = obj(v, what, field, ['keyids', 'threshold'])
  need(o, what, field, 'keyids', 'threshold')
  const ids = list(o.keyids, what, `${field}.keyids`, MAX_ROLE_KEYS)
  if (ids.length === 0) throw new DecodeError(what, `${field}.keyids is empty`)
  const keyids = ids.map((k, i) => str(k, what, `${field}.keyids[${i}]`, HEX64))
  if (new Set(keyids).size !== keyids.length) throw new DecodeError(what, `${field}.keyids lists a key twice`)
  for (const k of keyids) if (!Object.hasOwn(keys, k)) throw new DecodeError(what, `${field} names key ${k.slice(0, 16)}… that is not in "keys"`)
  return { keyids, threshold: int(o.threshold, what, `${field}.threshold`, 1, keyids.length) }
}

/**
 * Structure only (signatures and expiry are verifyRoot's job). Any JSON spelling of the envelope is
 * accepted because a root also travels inside enrollment bundles; signatures are always checked
 * over the canonical form, so the spelling cannot change what is trusted.
 */
export function decodeRoot (bytes: Uint8Array): SignedRoot {
  const what = 'root.json'
  const env = decodeEnvelopeShape(parseJsonBytes(bytes, what, MAX_ROOT_BYTES).value, what)
  const b = signedBody(env.signed, what, 'root', ['_type', 'formatVersion', 'version', 'expires', 'keys', 'roles'], ['_type', 'formatVersion', 'version', 'expires', 'keys', 'roles'])
  if (typeof b.keys !== 'object' || b.keys === null || Array.isArray(b.keys)) throw new DecodeError(what, 'signed.keys must be an object')
  const entries = Object.entries(b.keys)
  if (entries.length > MAX_ROOT_KEYS) throw new DecodeError(what, `signed.keys lists ${entries.length} keys, more than ${MAX_ROOT_KEYS}`)
  const keys: Record<string, PublicKey> = {}
  for (const [id, k] of entries) {
    str(id, what, 'a key id in signed.keys', HEX64)
    const where = `keys.${id.slice(0, 16)}…`
    const ko = obj(k, what, where, ['keytype', 'public'])
    need(ko, what, where, 'keytype', 'public')
    if (ko.keytype !== KEYTYPE_ED25519) throw new UnknownKeyTypeError(`root.json ${where}`, ko.keytype)
    const pk: PublicKey = { keytype: 'ed25519', public: str(ko.public, what, `${where}.public`, HEX64) }
    if (keyIdOfObject(pk, where) !== id) throw new DecodeError(what, `${where} is listed under an id that is not its own (keyid = SHA-256 of the canonical key)`)
    keys[id] = pk
  }
  const r = obj(b.roles, what, 'signed.roles', ROLE_NAMES)
  need(r, what, 'signed.roles', ...ROLE_NAMES)
  const body: RootBody = {
    _type: 'root',
    formatVersion: 1,
    version: int(b.version, what, 'signed.version', 1),
    expires: timestamp(b.expires, what, 'signed.expires'),
    keys,
    roles: { root: role(r.root, what, 'roles.root', keys), publisher: role(r.publisher, what, 'roles.publisher', keys), online: role(r.online, what, 'roles.online', keys) }
  }
  return { signed: body, signatures: env.signatures }
}

/** Throws RootExpiredError when `root` is expired at `now` (+ grace). */
export function checkRootFresh (root: SignedRoot, now: Date, graceSeconds = 0): void {
  if (isExpired(root.signed.expires, now, graceSeconds)) throw new RootExpiredError(root.signed.expires, now)
}

/** The pinned root (enrollment): signed by a threshold of its own root keys and not expired. */
export function verifyRoot (root: SignedRoot, now: Date, opts: { graceSeconds?: number } = {}): void {
  verifyThreshold('root', root, root.signed.roles.root, root.signed.keys, 'root.json')
  checkRootFresh(root, now, opts.graceSeconds)
}

/**
 * One TUF root-chain step: `next.version === trusted.version + 1`, signed by a threshold of the
 * trusted root's root keys and by a threshold of its own root keys. Expiry of `next` is checked
 * unless `checkExpiry: false` (intermediate roots of a chain may have expired; only the last counts).
 */
export function verifyRootUpdate (trusted: SignedRoot, next: SignedRoot, now: Date, opts: { graceSeconds?: number, checkExpiry?: boolean } = {}): void {
  const tv = trusted.signed.version
  const nv = next.signed.version
  if (nv <= tv) throw new RollbackError(`root.json version ${nv} is not newer than the trusted version ${tv}`)
  if (nv !== tv + 1) throw new RootChainError(`root.json version ${nv} cannot follow the trusted version ${tv}: apply versions ${tv + 1}…${nv - 1} first`)
  verifyThreshold('root', next, trusted.signed.roles.root, trusted.signed.keys, `root.json v${nv} (by the root keys of v${tv})`)
  verifyThreshold('root', next, next.signed.roles.root, next.signed.keys, `root.json v${nv} (by its own root keys)`)
  if (opts.checkExpiry !== false) checkRootFresh(next, now, opts.graceSeconds)
}

/**
 * Walks `chain` (consecutive versions after `trusted`) and returns the newest root; only that one
 * must be unexpired (TUF §5.3.10). The caller persists each step's result as it goes if it wants
 * partial progress to survive a failure later in the chain.
 */
export function verifyRootChain (trusted: SignedRoot, chain: readonly SignedRoot[], now: Date, opts: { graceSeconds?: number } = {}): SignedRoot {
  let cur = trusted
  for (const next of chain) {
    verifyRootUpdate(cur, next, now, { checkExpiry: false })
    cur = next
  }
  checkRootFresh(cur, now, opts.graceSeconds)
  return cur
}

/**
 * Whether a role's keys or threshold differ between two roots. When the online role changes, the
 * last accepted channel head must be forgotten (TUF §5.3.11): otherwise a head fast-forwarded by a
 * stolen online key would block every honest head after the rotation.
 */
export function roleChanged (old: SignedRoot, next: SignedRoot, name: RoleName): boolean {
  const a = old.signed.roles[name]
  const b = next.signed.roles[name]
  if (a.threshold !== b.threshold || a.keyids.length !== b.keyids.length) return true
  const set = new Set(a.keyids)
  return b.keyids.some(k => !set.has(k))
}
