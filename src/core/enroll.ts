// Enrollment bundles: what `shoal keys init` hands to each role (docs/protocol.md, "Key files").
//   enroll.json       endpoints: the pinned root and the fleet secret (→ content key + network key)
//   seed-enroll.json  seeds: the pinned root, the network key and the online head-signing key —
//                     never the fleet secret, so a seed cannot derive the content key
//   fleet.secret      the fleet secret alone, for the publisher's keys folder
import { DecodeError, OversizeError, quoteValue } from './errors.js'
import { decodeRoot, type SignedRoot } from './root.js'
import { decodePrivateKeyFile, encodePrivateKeyFile, type KeyPair } from './keys.js'
import { FLEET_SECRET_BYTES } from './fleet-keys.js'

export const MAX_BUNDLE_BYTES = 2 * 1024 * 1024

export interface EndpointEnrollment { root: SignedRoot; fleetSecret: Uint8Array }
export interface SeedEnrollment { root: SignedRoot; networkKey: Uint8Array; onlineKey: KeyPair }

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

function parseObject (bytes: Uint8Array, what: string): Record<string, unknown> {
  if (bytes.length > MAX_BUNDLE_BYTES) throw new OversizeError(what, MAX_BUNDLE_BYTES)
  let value: unknown
  try {
    value = JSON.parse(dec.decode(bytes))
  } catch (err) {
    throw new DecodeError(what, 'not valid UTF-8 JSON', { cause: err })
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new DecodeError(what, 'not a JSON object')
  return value as Record<string, unknown>
}

function checkShape (o: Record<string, unknown>, what: string, type: string, fields: string[]): void {
  if (o.type !== type) throw new DecodeError(what, `"type" is ${quoteValue(o.type)}, expected "${type}" (is this the right file?)`)
  if (o.version !== 1) throw new DecodeError(what, `unsupported version ${quoteValue(o.version)} (this shoal reads version 1)`)
  for (const k of Object.keys(o)) {
    if (k !== 'type' && k !== 'version' && !fields.includes(k)) throw new DecodeError(what, `unknown field "${k}"`)
  }
  for (const f of fields) if (!(f in o)) throw new DecodeError(what, `missing field "${f}"`)
}

// An embedded document handed on to its own decoder as bytes. JSON.parse takes any depth, but
// JSON.stringify recurses: a hostile bundle nested deeper than the stack is refused here.
function reencode (v: unknown, what: string, field: string): Uint8Array {
  try {
    return enc.encode(JSON.stringify(v))
  } catch (err) {
    throw new DecodeError(what, `"${field}" is nested too deeply to be a ${field === 'root' ? 'root' : 'key file'}`, { cause: err })
  }
}

export function hexBytes (value: unknown, len: number, what: string, field: string): Uint8Array {
  if (typeof value !== 'string' || value.length !== len * 2 || !/^[0-9a-f]+$/.test(value)) {
    throw new DecodeError(what, `"${field}" must be ${len * 2} lowercase hex characters`)
  }
  return new Uint8Array(Buffer.from(value, 'hex'))
}

function hex (b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
}

export function encodeFleetSecret (secret: Uint8Array): Uint8Array {
  return enc.encode(JSON.stringify({ type: 'shoal-fleet-secret', version: 1, secret: hex(secret) }, null, 2) + '\n')
}

export function decodeFleetSecret (bytes: Uint8Array): Uint8Array {
  const what = 'fleet secret file'
  const o = parseObject(bytes, what)
  checkShape(o, what, 'shoal-fleet-secret', ['secret'])
  return hexBytes(o.secret, FLEET_SECRET_BYTES, what, 'secret')
}

export function encodeEndpointEnrollment (root: SignedRoot, fleetSecret: Uint8Array): Uint8Array {
  return enc.encode(JSON.stringify({ type: 'shoal-enroll', version: 1, root, fleetSecret: hex(fleetSecret) }, null, 2) + '\n')
}

export function decodeEndpointEnrollment (bytes: Uint8Array): EndpointEnrollment {
  const what = 'enroll.json'
  const o = parseObject(bytes, what)
  checkShape(o, what, 'shoal-enroll', ['root', 'fleetSecret'])
  return {
    root: decodeRoot(reencode(o.root, what, 'root')),
    fleetSecret: hexBytes(o.fleetSecret, FLEET_SECRET_BYTES, what, 'fleetSecret')
  }
}

export function encodeSeedEnrollment (root: SignedRoot, networkKey: Uint8Array, onlineKey: KeyPair): Uint8Array {
  const onlineKeyFile = JSON.parse(dec.decode(encodePrivateKeyFile(onlineKey, 'online'))) as unknown
  return enc.encode(JSON.stringify({ type: 'shoal-seed-enroll', version: 1, root, networkKey: hex(networkKey), onlineKey: onlineKeyFile }, null, 2) + '\n')
}

export function decodeSeedEnrollment (bytes: Uint8Array): SeedEnrollment {
  const what = 'seed-enroll.json'
  const o = parseObject(bytes, what)
  checkShape(o, what, 'shoal-seed-enroll', ['root', 'networkKey', 'onlineKey'])
  const online = decodePrivateKeyFile(reencode(o.onlineKey, what, 'onlineKey'))
  if (online.role !== 'online') throw new DecodeError(what, `"onlineKey" holds a ${online.role} key, expected the online key`)
  return {
    root: decodeRoot(reencode(o.root, what, 'root')),
    networkKey: hexBytes(o.networkKey, 32, what, 'networkKey'),
    onlineKey: online.key
  }
}
