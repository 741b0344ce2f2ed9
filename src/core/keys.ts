// Ed25519 keys (@noble/curves) and their ids. keyid = hex SHA-256 of the canonical public-key
// object, so the id commits to the algorithm as well as the bytes.
import { ed25519 } from '@noble/curves/ed25519.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { canonicalBytes } from './canonical.js'
import { DecodeError, OversizeError } from './errors.js'

export interface PublicKey { keytype: 'ed25519', public: string }
export interface KeyPair { keyid: string, publicKey: Uint8Array, secretKey: Uint8Array }

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

export function publicKeyObject (publicKey: Uint8Array): PublicKey {
  return { keytype: 'ed25519', public: hex(publicKey) }
}

export function keyIdOf (publicKey: Uint8Array): string {
  return hex(sha256(canonicalBytes(publicKeyObject(publicKey))))
}

export function keyPairFromSecret (secretKey: Uint8Array): KeyPair {
  const publicKey = ed25519.getPublicKey(secretKey)
  return { keyid: keyIdOf(publicKey), publicKey, secretKey }
}

export function generateKeyPair (): KeyPair {
  return keyPairFromSecret(ed25519.utils.randomSecretKey())
}

export function sign (kp: KeyPair, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, kp.secretKey)
}

export function verifySignature (publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, message, publicKey, { zip215: false })
  } catch {
    return false
  }
}

const MAX_KEY_FILE = 64 * 1024

/** Private key file: {"type":"shoal-private-key","version":1,"role":…,"keytype":"ed25519","keyid":…,"public":…,"secret":…} */
export function encodePrivateKeyFile (kp: KeyPair, role: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    type: 'shoal-private-key', version: 1, role, keytype: 'ed25519', keyid: kp.keyid, public: hex(kp.publicKey), secret: hex(kp.secretKey)
  }, null, 2) + '\n')
}

export function decodePrivateKeyFile (bytes: Uint8Array): { role: string, key: KeyPair } {
  const what = 'private key file'
  if (bytes.length > MAX_KEY_FILE) throw new OversizeError(what, MAX_KEY_FILE)
  let o: Record<string, unknown>
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Record<string, unknown>
  } catch (err) {
    throw new DecodeError(what, 'not valid JSON', { cause: err })
  }
  if (typeof o !== 'object' || o === null || o.type !== 'shoal-private-key') throw new DecodeError(what, 'not a shoal private key file')
  if (o.version !== 1) throw new DecodeError(what, `unsupported version ${JSON.stringify(o.version)}`)
  if (o.keytype !== 'ed25519') throw new DecodeError(what, `unsupported key type ${JSON.stringify(o.keytype)}`)
  if (typeof o.role !== 'string' || typeof o.secret !== 'string' || !/^[0-9a-f]{64}$/.test(o.secret)) throw new DecodeError(what, 'missing or malformed "role" or "secret"')
  const key = keyPairFromSecret(new Uint8Array(Buffer.from(o.secret, 'hex')))
  if (o.public !== hex(key.publicKey) || o.keyid !== key.keyid) throw new DecodeError(what, 'the public key or keyid does not match the secret key (file damaged?)')
  return { role: o.role, key }
}
