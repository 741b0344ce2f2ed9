// The publisher's keys folder, as `shoal keys init` writes it (docs/keys.md):
//   root.json                 the signed trust root every endpoint pins
//   root-<i>.key              root keys (move them offline after init: they only sign new roots)
//   publisher-<i>.key         publisher keys (sign manifests and control records)
//   online.key                the head-signing key (also inside seed-enroll.json)
//   fleet.secret              32 random bytes → content key + network key
//   enroll.json               for endpoints: root + fleet secret
//   seed-enroll.json          for seeds: root + network key + online key (no content key)
// Private files are created 0600 and never overwritten.
import { readdir, mkdir, writeFile, stat, rename, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ShoalError, InvalidArgumentError } from '../core/errors.js'
import { generateKeyPair, encodePrivateKeyFile, decodePrivateKeyFile, MAX_KEY_FILE_BYTES, type KeyPair } from '../core/keys.js'
import { createRoot, decodeRoot, verifyRoot, verifyRootUpdate, roleChanged, MAX_ROOT_BYTES, type SignedRoot } from '../core/root.js'
import { encodeEnvelope } from '../core/signed.js'
import { deriveFleetKeys, generateFleetSecret, type FleetKeys } from '../core/fleet-keys.js'
import { decodeFleetSecret, encodeFleetSecret, encodeEndpointEnrollment, encodeSeedEnrollment } from '../core/enroll.js'
import { readFileCapped } from '../store/fs-util.js'

export class KeysDirError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_KEYS_DIR', message, options)
  }
}

export interface KeysInitOptions {
  dir: string
  rootKeys: number
  rootThreshold: number
  publisherKeys: number
  publisherThreshold: number
  expires: Date
}

export interface KeysInitResult {
  dir: string
  files: string[]
  rootKeyIds: string[]
  publisherKeyIds: string[]
  onlineKeyId: string
}

export async function initKeysDir (o: KeysInitOptions): Promise<KeysInitResult> {
  if (o.rootKeys < 1 || o.rootThreshold < 1 || o.rootThreshold > o.rootKeys) {
    throw new InvalidArgumentError(`root threshold ${o.rootThreshold} must be between 1 and the number of root keys (${o.rootKeys})`)
  }
  if (o.publisherKeys < 1 || o.publisherThreshold < 1 || o.publisherThreshold > o.publisherKeys) {
    throw new InvalidArgumentError(`publisher threshold ${o.publisherThreshold} must be between 1 and the number of publisher keys (${o.publisherKeys})`)
  }
  await mkdir(o.dir, { recursive: true, mode: 0o700 })
  try {
    await stat(join(o.dir, 'root.json'))
    throw new KeysDirError(`${o.dir} already holds root.json; refusing to overwrite keys (pick an empty folder)`)
  } catch (err) {
    if (err instanceof KeysDirError) throw err
  }
  const rootKeys = Array.from({ length: o.rootKeys }, () => generateKeyPair())
  const publisherKeys = Array.from({ length: o.publisherKeys }, () => generateKeyPair())
  const onlineKey = generateKeyPair()
  const root = createRoot({
    rootKeys, rootThreshold: o.rootThreshold, publisherKeys, publisherThreshold: o.publisherThreshold,
    onlineKeys: [onlineKey], expires: o.expires
  })
  const secret = generateFleetSecret()
  const keys = deriveFleetKeys(secret)
  const files: Array<[string, Uint8Array, number]> = []
  rootKeys.forEach((k, i) => files.push([`root-${i + 1}.key`, encodePrivateKeyFile(k, 'root'), 0o600]))
  publisherKeys.forEach((k, i) => files.push([`publisher-${i + 1}.key`, encodePrivateKeyFile(k, 'publisher'), 0o600]))
  files.push(['online.key', encodePrivateKeyFile(onlineKey, 'online'), 0o600])
  files.push(['fleet.secret', encodeFleetSecret(secret), 0o600])
  files.push(['enroll.json', encodeEndpointEnrollment(root, secret), 0o600])
  files.push(['seed-enroll.json', encodeSeedEnrollment(root, keys.networkKey, onlineKey), 0o600])
  // root.json last: its presence marks a complete keys folder.
  files.push(['root.json', encodeEnvelope(root), 0o644])
  for (const [name, data, mode] of files) {
    await writeFile(join(o.dir, name), data, { mode, flag: 'wx' })
  }
  return {
    dir: o.dir,
    files: files.map(f => f[0]),
    rootKeyIds: rootKeys.map(k => k.keyid),
    publisherKeyIds: publisherKeys.map(k => k.keyid),
    onlineKeyId: onlineKey.keyid
  }
}

export interface KeysRotateOptions {
  dir: string
  /** Roles whose keys are replaced by new ones (same number of keys, same thresholds). None: the root is only renewed. */
  rotate: { root?: boolean, publisher?: boolean, online?: boolean }
  expires: Date
  now?: Date
}

export interface KeysRotateResult {
  dir: string
  version: number
  previousVersion: number
  rotated: Array<'root' | 'publisher' | 'online'>
  /** Where the replaced key files and the previous root.json now are. */
  retiredDir: string
  files: string[]
}

/**
 * The next root.json (version + 1, TUF §5.3): new keys for the roles asked, signed by the root
 * keys of the current root held in `dir` (at least its threshold) and, when the root role itself
 * rotates, by the new root keys too — what every daemon checks before it accepts it. The replaced
 * key files and the previous root.json move to `retired-v<N>/` (never deleted: a root key is
 * needed again if this root must be re-signed); enroll.json and seed-enroll.json are written anew
 * for the new root (seed-enroll.json carries the online key). root.json is replaced last, so a
 * crash before it leaves the folder on the old root with the old keys still retired beside it.
 */
export async function rotateKeysDir (o: KeysRotateOptions): Promise<KeysRotateResult> {
  const now = o.now ?? new Date()
  const current = decodeRoot(await readOrExplain(join(o.dir, 'root.json'), 'the trust root', MAX_ROOT_BYTES))
  const roles = current.signed.roles
  const v = current.signed.version
  const listed = async (prefix: 'root' | 'publisher'): Promise<KeyFile[]> =>
    (await keyFiles(o.dir, prefix)).filter(f => f.role === prefix && roles[prefix].keyids.includes(f.key.keyid))
  const rootHeld = await listed('root')
  if (rootHeld.length < roles.root.threshold) {
    throw new KeysDirError(`${o.dir} holds ${rootHeld.length} of root.json v${v}'s root keys; signing v${v + 1} needs ${roles.root.threshold} (bring the offline root-*.key files back for the rotation)`)
  }
  const publisherHeld = await listed('publisher')
  const onlineHeld = await readOnlineKey(o.dir, current)
  if (o.rotate.publisher !== true && publisherHeld.length < roles.publisher.keyids.length) {
    throw new KeysDirError(`${o.dir} holds ${publisherHeld.length} of the root's ${roles.publisher.keyids.length} publisher keys; rotate them (--publisher) or bring them back`)
  }
  if (o.rotate.online !== true && onlineHeld === null) throw new KeysDirError(`${o.dir} lacks the root's online.key; rotate it (--online) or bring it back`)

  const fresh = (n: number): KeyPair[] => Array.from({ length: n }, () => generateKeyPair())
  const rootKeys = o.rotate.root === true ? fresh(roles.root.keyids.length) : undefined
  const publisherKeys = o.rotate.publisher === true ? fresh(roles.publisher.keyids.length) : publisherHeld.map(h => h.key)
  const onlineKey = o.rotate.online === true ? generateKeyPair() : onlineHeld as KeyPair
  // Root keys of the current root not held here stay in the role unless the role rotates: their
  // public halves are all that is needed to list them.
  if (rootKeys === undefined && rootHeld.length < roles.root.keyids.length) {
    throw new KeysDirError(`${o.dir} holds ${rootHeld.length} of ${roles.root.keyids.length} root keys: renewing without all of them would drop the others from the root role; bring them all, or rotate the root keys (--root)`)
  }
  const next = createRoot({
    rootKeys: rootKeys ?? rootHeld.map(h => h.key),
    rootThreshold: roles.root.threshold,
    publisherKeys,
    publisherThreshold: roles.publisher.threshold,
    onlineKeys: [onlineKey],
    expires: o.expires,
    version: v + 1,
    signers: [...rootHeld.map(h => h.key), ...(rootKeys ?? [])]
  })
  verifyRootUpdate(current, next, now) // what every daemon will check
  const rotated = (['root', 'publisher', 'online'] as const).filter(r => roleChanged(current, next, r))

  const retiredDir = join(o.dir, `retired-v${v}`)
  await mkdir(retiredDir, { mode: 0o700 })
  await copyFile(join(o.dir, 'root.json'), join(retiredDir, 'root.json'))
  const files: Array<[string, Uint8Array, number]> = []
  const retire = async (name: string): Promise<void> => { await rename(join(o.dir, name), join(retiredDir, name)) }
  if (rootKeys !== undefined) {
    for (const h of rootHeld) await retire(h.name)
    rootKeys.forEach((k, i) => files.push([`root-${i + 1}.key`, encodePrivateKeyFile(k, 'root'), 0o600]))
  }
  if (o.rotate.publisher === true) {
    for (const h of publisherHeld) await retire(h.name)
    publisherKeys.forEach((k, i) => files.push([`publisher-${i + 1}.key`, encodePrivateKeyFile(k, 'publisher'), 0o600]))
  }
  if (o.rotate.online === true) {
    if (onlineHeld !== null) await retire('online.key')
    files.push(['online.key', encodePrivateKeyFile(onlineKey, 'online'), 0o600])
  }
  const secret = decodeFleetSecret(await readOrExplain(join(o.dir, 'fleet.secret'), 'the fleet secret', MAX_KEY_FILE_BYTES))
  for (const n of ['enroll.json', 'seed-enroll.json']) await retire(n).catch(() => {})
  files.push(['enroll.json', encodeEndpointEnrollment(next, secret), 0o600])
  files.push(['seed-enroll.json', encodeSeedEnrollment(next, deriveFleetKeys(secret).networkKey, onlineKey), 0o600])
  for (const [name, data, mode] of files) await writeFile(join(o.dir, name), data, { mode, flag: 'wx' })
  // root.json last, through a temporary name: readers see the old one or the new one
  await writeFile(join(o.dir, 'root.json.tmp'), encodeEnvelope(next), { mode: 0o644 })
  await rename(join(o.dir, 'root.json.tmp'), join(o.dir, 'root.json'))
  return { dir: o.dir, version: v + 1, previousVersion: v, rotated, retiredDir, files: [...files.map(f => f[0]), 'root.json'] }
}

export interface PublisherKeys {
  root: SignedRoot
  rootBytes: Uint8Array
  publisherKeys: KeyPair[]
  onlineKey: KeyPair | null
  fleet: FleetKeys
}

async function readOrExplain (path: string, what: string, max: number): Promise<Uint8Array> {
  try {
    return await readFileCapped(path, max, what)
  } catch (err) {
    if (err instanceof ShoalError) throw err
    throw new KeysDirError(`cannot read ${what} at ${path}: ${(err as Error).message}`, { cause: err })
  }
}

interface KeyFile { name: string, role: string, key: KeyPair }

/** The `<prefix>-<n>.key` files of `dir`, decoded, in name order (the caller judges role and root). */
async function keyFiles (dir: string, prefix: 'root' | 'publisher'): Promise<KeyFile[]> {
  const pattern = prefix === 'root' ? /^root-\d+\.key$/ : /^publisher-\d+\.key$/
  const out: KeyFile[] = []
  for (const name of (await readdir(dir)).filter(n => pattern.test(n)).sort()) {
    const { role, key } = decodePrivateKeyFile(await readOrExplain(join(dir, name), `a ${prefix} key`, MAX_KEY_FILE_BYTES))
    out.push({ name, role, key })
  }
  return out
}

/** `dir/online.key` when it holds a key of `root`'s online role, else null (also when absent). */
async function readOnlineKey (dir: string, root: SignedRoot): Promise<KeyPair | null> {
  try {
    const { role, key } = decodePrivateKeyFile(await readFileCapped(join(dir, 'online.key'), MAX_KEY_FILE_BYTES, 'the online key'))
    return role === 'online' && root.signed.roles.online.keyids.includes(key.keyid) ? key : null
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return null
  }
}

/** Loads what publishing needs and checks the publisher keys can meet the root's threshold. */
export async function loadPublisherKeys (dir: string, now = new Date()): Promise<PublisherKeys> {
  const rootBytes = await readOrExplain(join(dir, 'root.json'), 'the trust root', MAX_ROOT_BYTES)
  const root = decodeRoot(rootBytes)
  verifyRoot(root, now)
  const publisherKeys: KeyPair[] = []
  for (const { name, role, key } of await keyFiles(dir, 'publisher')) {
    if (role !== 'publisher') throw new KeysDirError(`${join(dir, name)} holds a ${role} key, not a publisher key`)
    if (!root.signed.roles.publisher.keyids.includes(key.keyid)) {
      throw new KeysDirError(`${join(dir, name)} (keyid ${key.keyid.slice(0, 16)}…) is not a publisher key of this root.json`)
    }
    publisherKeys.push(key)
  }
  const need = root.signed.roles.publisher.threshold
  if (publisherKeys.length < need) {
    throw new KeysDirError(`${dir} holds ${publisherKeys.length} publisher key(s); this root needs ${need} signatures on a manifest`)
  }
  const onlineKey = await readOnlineKey(dir, root)
  const secret = decodeFleetSecret(await readOrExplain(join(dir, 'fleet.secret'), 'the fleet secret', MAX_KEY_FILE_BYTES))
  return { root, rootBytes, publisherKeys, onlineKey, fleet: deriveFleetKeys(secret) }
}
