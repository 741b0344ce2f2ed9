// The publisher's keys folder, as `shoal keys init` writes it (docs/keys.md):
//   root.json                 the signed trust root every endpoint pins
//   root-<i>.key              root keys (move them offline after init: they only sign new roots)
//   publisher-<i>.key         publisher keys (sign manifests and control records)
//   online.key                the head-signing key (also inside seed-enroll.json)
//   fleet.secret              32 random bytes → content key + network key
//   enroll.json               for endpoints: root + fleet secret
//   seed-enroll.json          for seeds: root + network key + online key (no content key)
// Private files are created 0600 and never overwritten.
import { readdir, mkdir, writeFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ShoalError, InvalidArgumentError } from '../core/errors.js'
import { generateKeyPair, encodePrivateKeyFile, decodePrivateKeyFile, MAX_KEY_FILE_BYTES, type KeyPair } from '../core/keys.js'
import { createRoot, decodeRoot, verifyRoot, MAX_ROOT_BYTES, type SignedRoot } from '../core/root.js'
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

/** Loads what publishing needs and checks the publisher keys can meet the root's threshold. */
export async function loadPublisherKeys (dir: string, now = new Date()): Promise<PublisherKeys> {
  const rootBytes = await readOrExplain(join(dir, 'root.json'), 'the trust root', MAX_ROOT_BYTES)
  const root = decodeRoot(rootBytes)
  verifyRoot(root, now)
  const names = (await readdir(dir)).filter(n => /^publisher-\d+\.key$/.test(n)).sort()
  const publisherKeys: KeyPair[] = []
  for (const n of names) {
    const { role, key } = decodePrivateKeyFile(await readOrExplain(join(dir, n), 'a publisher key', MAX_KEY_FILE_BYTES))
    if (role !== 'publisher') throw new KeysDirError(`${join(dir, n)} holds a ${role} key, not a publisher key`)
    if (!root.signed.roles.publisher.keyids.includes(key.keyid)) {
      throw new KeysDirError(`${join(dir, n)} (keyid ${key.keyid.slice(0, 16)}…) is not a publisher key of this root.json`)
    }
    publisherKeys.push(key)
  }
  const need = root.signed.roles.publisher.threshold
  if (publisherKeys.length < need) {
    throw new KeysDirError(`${dir} holds ${publisherKeys.length} publisher key(s); this root needs ${need} signatures on a manifest`)
  }
  let onlineKey: KeyPair | null = null
  try {
    const { role, key } = decodePrivateKeyFile(await readFileCapped(join(dir, 'online.key'), MAX_KEY_FILE_BYTES, 'the online key'))
    if (role === 'online' && root.signed.roles.online.keyids.includes(key.keyid)) onlineKey = key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const secret = decodeFleetSecret(await readOrExplain(join(dir, 'fleet.secret'), 'the fleet secret', MAX_KEY_FILE_BYTES))
  return { root, rootBytes, publisherKeys, onlineKey, fleet: deriveFleetKeys(secret) }
}
