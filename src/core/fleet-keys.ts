// The fleet secret and the two keys derived from it (DESIGN §2, docs/protocol.md "Sealing").
// The content key never leaves publishers and endpoints; the network key is also given to seeds.
// Deriving both from one secret with distinct HKDF info strings means a seed holding the network
// key learns nothing about the content key, and an enrollment bundle carries a single value.
import { randomBytes } from 'node:crypto'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { InvalidArgumentError } from './errors.js'

export const FLEET_SECRET_BYTES = 32

/** HKDF-SHA256 info strings; changing one changes every key of every fleet. */
export const CONTENT_KEY_INFO = 'shoal/v1/content-key'
export const NETWORK_KEY_INFO = 'shoal/v1/network-key'

export interface FleetKeys { contentKey: Uint8Array; networkKey: Uint8Array; reportKey?: never }

const utf8 = new TextEncoder()

/**
 * HKDF-SHA256(ikm = fleet secret, salt = empty, info = label, L = 32) per key. The secret is
 * already 32 uniformly random bytes, so the empty salt (RFC 5869 §3.1: HashLen zero bytes) costs
 * nothing in strength and keeps the derivation trivial to reproduce elsewhere.
 */
export function deriveFleetKeys (fleetSecret: Uint8Array): FleetKeys {
  if (!(fleetSecret instanceof Uint8Array) || fleetSecret.length !== FLEET_SECRET_BYTES) {
    const got = fleetSecret instanceof Uint8Array ? `${fleetSecret.length} bytes` : typeof fleetSecret
    throw new InvalidArgumentError(`the fleet secret must be exactly ${FLEET_SECRET_BYTES} bytes, got ${got}; use the secret from the fleet's enrollment bundle or \`shoal keys init\``)
  }
  return {
    contentKey: hkdf(sha256, fleetSecret, undefined, utf8.encode(CONTENT_KEY_INFO), 32),
    networkKey: hkdf(sha256, fleetSecret, undefined, utf8.encode(NETWORK_KEY_INFO), 32)
  }
}

export function generateFleetSecret (): Uint8Array {
  return new Uint8Array(randomBytes(FLEET_SECRET_BYTES))
}
