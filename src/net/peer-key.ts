// The daemon's libp2p identity. Its PeerId is what the seed allow-lists and what reports are bound
// to, so it must survive restarts and must never be silently regenerated: a file we cannot read is
// an error for a person to resolve, not a reason to mint a new identity.
import { randomBytes } from 'node:crypto'
import { mkdir, open, link, unlink, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { PeerKeyCorruptError } from './errors.js'

export const PEER_KEY_FILE = 'peer.key'

/** Loads `<stateDir>/peer.key`, or creates it (0600) when absent. Throws PeerKeyCorruptError if unusable. */
export async function loadOrCreatePeerKey (stateDir: string): Promise<PrivateKey> {
  const path = join(stateDir, PEER_KEY_FILE)
  const existing = await readIfExists(path)
  if (existing !== undefined) return decodePeerKey(path, existing)

  await mkdir(stateDir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(privateKeyToProtobuf(key))
    await fh.sync()
  } finally {
    await fh.close()
  }
  // link() instead of rename(): it fails if another process created the key meanwhile, and then we
  // adopt that one rather than replace an identity someone may already be using.
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return decodePeerKey(path, await readFile(path))
  } finally {
    await unlink(tmp).catch(() => {})
  }
  await syncDir(stateDir)
  return key
}

async function readIfExists (path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

async function decodePeerKey (path: string, bytes: Uint8Array): Promise<PrivateKey> {
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new PeerKeyCorruptError(path, 'not a libp2p private key protobuf', { cause: err })
  }
  if (key.type !== 'Ed25519') throw new PeerKeyCorruptError(path, `expected an Ed25519 key, found ${key.type}`)
  // The raw Ed25519 key is seed ‖ public key; a flipped bit in either half yields a key whose
  // signatures nobody can verify, so re-derive the public half from the seed and compare.
  const derived = await generateKeyPairFromSeed('Ed25519', key.raw.subarray(0, 32))
  if (!derived.publicKey.equals(key.publicKey)) {
    throw new PeerKeyCorruptError(path, 'its public key does not match its private seed')
  }
  return key
}

async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still atomic there
  } finally {
    await fh.close()
  }
}
