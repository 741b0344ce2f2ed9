// root.json: who may sign what (DESIGN §2). Endpoints pin one at enrollment; a successor is
// accepted only when signed by a threshold of the old root keys and of the new ones (TUF).
import { ShoalError, DecodeError } from './errors.js'
import { publicKeyObject, type KeyPair, type PublicKey } from './keys.js'
import {
  signEnvelope, verifyThreshold, checkExpiry, parseJsonBytes, decodeEnvelopeShape, obj, need, str, int, timestamp, isoSeconds, HEX64,
  type Envelope
} from './signed.js'
import { UnknownKeyTypeError } from './signed.js'

export const MAX_ROOT_BYTES = 1024 * 1024

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

export class RootUpdateError extends ShoalError {
  constructor (message: string) {
    super('ERR_ROLLBACK', message)
  }
}

export function createRoot (o: { rootKeys: KeyPair[], rootThreshold: number, publisherKeys: KeyPair[], publisherThreshold: number, onlineKeys: KeyPair[], expires: Date, version?: number, signers?: KeyPair[] }): SignedRoot {
  const keys: Record<string, PublicKey> = {}
  for (const k of [...o.rootKeys, ...o.publisherKeys, ...o.onlineKeys]) keys[k.keyid] = publicKeyObject(k.publicKey)
  const body: RootBody = {
    _type: 'root',
    formatVersion: 1,
    version: o.version ?? 1,
    expires: isoSeconds(o.expires),
    keys,
    roles: {
      root: { keyids: o.rootKeys.map(k => k.keyid), threshold: o.rootThreshold },
      publisher: { keyids: o.publisherKeys.map(k => k.keyid), threshold: o.publisherThreshold },
      online: { keyids: o.onlineKeys.map(k => k.keyid), threshold: 1 }
    }
  }
  return signEnvelope('root', body, o.signers ?? o.rootKeys)
}

function role (v: unknown, what: string, field: string, keys: Record<string, PublicKey>): RootRole {
  const o = obj(v, what, field, ['keyids', 'threshold'])
  need(o, what, field, 'keyids', 'threshold')
  if (!Array.isArray(o.keyids) || o.keyids.length === 0 || o.keyids.length > 64) throw new DecodeError(what, `${field}.keyids must list 1–64 keys`)
  const keyids = o.keyids.map((k, i) => str(k, what, `${field}.keyids[${i}]`, HEX64))
  if (new Set(keyids).size !== keyids.length) throw new DecodeError(what, `${field}.keyids lists a key twice`)
  for (const k of keyids) if (keys[k] === undefined) throw new DecodeError(what, `${field} names key ${k.slice(0, 16)}… that is not in "keys"`)
  return { keyids, threshold: int(o.threshold, what, `${field}.threshold`, 1, keyids.length) }
}

export function decodeRoot (bytes: Uint8Array): SignedRoot {
  const what = 'root.json'
  const env = decodeEnvelopeShape(parseJsonBytes(bytes, what, MAX_ROOT_BYTES), what)
  const b = obj(env.signed, what, 'signed', ['_type', 'formatVersion', 'version', 'expires', 'keys', 'roles'])
  need(b, what, 'signed', '_type', 'formatVersion', 'version', 'expires', 'keys', 'roles')
  if (b._type !== 'root') throw new DecodeError(what, `_type is ${JSON.stringify(b._type)}, expected "root"`)
  if (b.formatVersion !== 1) throw new DecodeError(what, `unsupported formatVersion ${JSON.stringify(b.formatVersion)}`)
  const keysObj = obj(b.keys, what, 'signed.keys', Object.keys(b.keys as object ?? {}))
  const keys: Record<string, PublicKey> = {}
  for (const [id, k] of Object.entries(keysObj)) {
    str(id, what, 'key id', HEX64)
    const ko = obj(k, what, `keys.${id.slice(0, 8)}`, ['keytype', 'public'])
    need(ko, what, `keys.${id.slice(0, 8)}`, 'keytype', 'public')
    if (ko.keytype !== 'ed25519') throw new UnknownKeyTypeError(id, ko.keytype)
    keys[id] = { keytype: 'ed25519', public: str(ko.public, what, `keys.${id.slice(0, 8)}.public`, HEX64) }
  }
  const r = obj(b.roles, what, 'signed.roles', ['root', 'publisher', 'online'])
  need(r, what, 'signed.roles', 'root', 'publisher', 'online')
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

/** The pinned root: signed by its own root threshold and not expired. */
export function verifyRoot (root: SignedRoot, now: Date, opts: { graceSeconds?: number } = {}): void {
  verifyThreshold('root', root, root.signed.roles.root, root.signed.keys, 'root.json')
  checkExpiry('root.json', root.signed.expires, now, opts.graceSeconds)
}

/** TUF root chain step: version + 1, a threshold of the old root keys and of the new ones. */
export function verifyRootUpdate (trusted: SignedRoot, next: SignedRoot, now: Date, opts: { graceSeconds?: number } = {}): void {
  if (next.signed.version !== trusted.signed.version + 1) {
    throw new RootUpdateError(`new root has version ${next.signed.version}; only ${trusted.signed.version + 1} can follow the trusted version ${trusted.signed.version}`)
  }
  verifyThreshold('root', next, trusted.signed.roles.root, trusted.signed.keys, 'new root.json (old root keys)')
  verifyThreshold('root', next, next.signed.roles.root, next.signed.keys, 'new root.json (new root keys)')
  checkExpiry('new root.json', next.signed.expires, now, opts.graceSeconds)
}
