// Sealed payload patches (docs/protocol.md §6.5, "Payload patches"): a manifest's sealed payload
// is AES-GCM under a fresh nonce per release, i.e. random bytes no delta compresses, and it is
// most of what a manifest delta costs (1.14 of 1.19 MB on the bench's release). Whoever holds the
// content key (the publisher, an endpoint) can say the same thing in plaintext space: the new
// payload plaintext as a delta against the base manifest's, sealed under a key of its own. The
// receiver opens the patch, rebuilds the plaintext from its own copy of the base, re-seals it
// under the nonce and AAD the target manifest names (AES-GCM is deterministic given those), puts
// the ciphertext back into the manifest's bytes, which crossed as a delta with that one field
// emptied, and keeps the result only if it hashes to the id asked for. Like a manifest delta, a
// patch is a transport encoding: it can cost a refetch, never an install.
//
// Sealed patch (bytes):   u8 format = 0x50 ‖ nonce[12] ‖ AES-256-GCM(patchKey, nonce, AAD, delta) ‖ tag[16]
//   patchKey = HKDF-SHA256(contentKey, salt none, info "shoal/v1/manifest-payload-patch", 32)
//   AAD      = canonical {"base":<base id>,"channel":…,"package":…,"target":<target id>}
//   delta    = SDLT delta (src/core/delta.ts) of the target payload plaintext against the base's
import { randomBytes } from 'node:crypto'
import { canonicalBytes } from './canonical.js'
import { DeltaDecoder, DeltaEncoder, DeltaError, MAX_DELTA_BASE_BYTES, type DeltaOptions } from './delta.js'
import { DecodeError } from './errors.js'
import {
  contentSubkey, decodeManifest, manifestId, openGcm, openPayloadBytes, sealGcm, sealPayloadBytes,
  MAX_MANIFEST_BYTES, MIN_DELTA_BYTES, PAYLOAD_NONCE_BYTES, PAYLOAD_TAG_BYTES, type SignedManifest
} from './manifest.js'
import { encodeManifestDelta, isManifestDeltaBase } from './manifest-delta.js'

export const PATCH_KEY_INFO = 'shoal/v1/manifest-payload-patch'
export const PATCH_FORMAT = 0x50
const PATCH_OVERHEAD = 1 + PAYLOAD_NONCE_BYTES + PAYLOAD_TAG_BYTES
/** Smallest sealed patch: the overhead around the smallest delta. */
export const MIN_PAYLOAD_PATCH_BYTES = PATCH_OVERHEAD + MIN_DELTA_BYTES
/** Largest sealed patch anyone sends, keeps or accepts (a patch larger than this saves nothing worth it). */
export const MAX_PAYLOAD_PATCH_BYTES = 16 * 1024 * 1024
/** Patches one release carries to a seed (one per base). */
export const MAX_PATCHES_PER_RELEASE = 4

/**
 * Level 19: a patch is encoded once per release by the publisher (or once per base by a site
 * member) and then crosses every site's WAN link; the base is a payload plaintext of ~1 MB.
 */
export const PAYLOAD_PATCH_OPTIONS: Readonly<DeltaOptions> = Object.freeze({ level: 19, maxRatio: 0.9, minSavedBytes: 1024 })

/** A patch, or a manifest delta sent with one, that does not rebuild the manifest asked for; the caller asks for the plain delta. */
export class ManifestPatchError extends DeltaError {
  constructor (why: string, options?: { cause?: unknown }) {
    super('ERR_MANIFEST_PATCH', 'corrupt', `payload patch refused: ${why}; asking for the manifest without it`, options)
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })
/**
 * Where the ciphertext's text starts in a manifest's canonical bytes. Inside a JSON string every
 * `"` is escaped, so this run of structural quotes can only be signed.payload's own opening.
 */
const CIPHERTEXT_AT = enc.encode('"payload":{"alg":"aes-256-gcm","ciphertext":"')
const QUOTE = 0x22

function indexOfBytes (hay: Uint8Array, needle: Uint8Array, from = 0): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(needle, from)
}

/** Offsets of the ciphertext text (between its quotes) in `bytes`; the marker must occur exactly once. */
function ciphertextSpan (bytes: Uint8Array): { start: number, end: number } {
  const at = indexOfBytes(bytes, CIPHERTEXT_AT)
  if (at < 0 || indexOfBytes(bytes, CIPHERTEXT_AT, at + 1) >= 0) throw new ManifestPatchError('the manifest bytes do not hold exactly one sealed payload')
  const start = at + CIPHERTEXT_AT.length
  const end = indexOfBytes(bytes, Uint8Array.of(QUOTE), start)
  if (end < 0) throw new ManifestPatchError('the sealed payload\'s ciphertext is not terminated')
  return { start, end }
}

/** A manifest's bytes with the text of payload.ciphertext removed (`"ciphertext":""`): what crosses as a delta beside a patch. */
export function stripPayload (bytes: Uint8Array): Uint8Array {
  const { start, end } = ciphertextSpan(bytes)
  const out = new Uint8Array(bytes.length - (end - start))
  out.set(bytes.subarray(0, start), 0)
  out.set(bytes.subarray(end), start)
  return out
}

function patchAad (baseId: string, targetId: string, pkg: string, channel: string): Uint8Array {
  return canonicalBytes({ base: baseId, channel, package: pkg, target: targetId })
}

export interface PatchRelease { id: string, bytes: Uint8Array, manifest?: SignedManifest }

/**
 * The sealed payload patch that takes `base` to `target` (same package and channel; both must open
 * with `contentKey`), or null when there is none worth sending: another package or channel, a base
 * payload above the delta-base limit, a patch not clearly smaller than the ciphertext it replaces.
 */
export async function buildPayloadPatch (base: PatchRelease, target: PatchRelease, contentKey: Uint8Array, options: Partial<DeltaOptions> = {}): Promise<Uint8Array | null> {
  const bm = base.manifest ?? decodeManifest(base.bytes)
  const tm = target.manifest ?? decodeManifest(target.bytes)
  if (base.id === target.id || bm.signed.package !== tm.signed.package || bm.signed.channel !== tm.signed.channel) return null
  const basePlain = openPayloadBytes(bm, contentKey)
  const targetPlain = openPayloadBytes(tm, contentKey)
  if (basePlain.length > MAX_DELTA_BASE_BYTES) return null
  const delta = await new DeltaEncoder(basePlain, { ...PAYLOAD_PATCH_OPTIONS, ...options }, MAX_MANIFEST_BYTES).encodeAsync(targetPlain)
  if (delta === null || delta.length + PATCH_OVERHEAD > MAX_PAYLOAD_PATCH_BYTES) return null
  return sealPayloadPatch(delta, { baseId: base.id, targetId: target.id, package: tm.signed.package, channel: tm.signed.channel, contentKey })
}

export interface PatchBinding { baseId: string, targetId: string, package: string, channel: string, contentKey: Uint8Array }

/** A patch's delta sealed for exactly this base, target, package and channel, under a fresh nonce. */
export function sealPayloadPatch (delta: Uint8Array, o: PatchBinding): Uint8Array {
  const nonce = randomBytes(PAYLOAD_NONCE_BYTES)
  const sealed = sealGcm(contentSubkey(o.contentKey, PATCH_KEY_INFO), nonce, patchAad(o.baseId, o.targetId, o.package, o.channel), delta)
  const out = new Uint8Array(1 + nonce.length + sealed.length)
  out[0] = PATCH_FORMAT
  out.set(nonce, 1)
  out.set(sealed, 1 + nonce.length)
  return out
}

/** Checks a sealed patch's framing and size (no key needed): what a seed does before it keeps one. */
export function checkPayloadPatch (patch: Uint8Array): void {
  if (patch.length < MIN_PAYLOAD_PATCH_BYTES || patch.length > MAX_PAYLOAD_PATCH_BYTES) {
    throw new ManifestPatchError(`a sealed patch of ${patch.length} bytes (a patch is ${MIN_PAYLOAD_PATCH_BYTES}–${MAX_PAYLOAD_PATCH_BYTES})`)
  }
  if (patch[0] !== PATCH_FORMAT) throw new ManifestPatchError(`unknown patch format 0x${(patch[0] ?? 0).toString(16)}`)
}

/** A sealed patch as sent or kept with the manifest it leads to: `base` is the manifest it starts from. */
export interface PatchFor { base: string, bytes: Uint8Array }

/**
 * Patches on the wire (a publish commit, a `manifest-patches` reply): distinct base ids, one part
 * each, every part framed as a patch; anything else is DecodeError for `what`.
 */
export function decodePatchList (bases: readonly string[], parts: readonly Uint8Array[], what: string): PatchFor[] {
  if (new Set(bases).size !== bases.length || parts.length !== bases.length) throw new DecodeError(what, 'patches must name distinct bases, one per part')
  return bases.map((base, i) => {
    const bytes = parts[i] as Uint8Array
    try {
      checkPayloadPatch(bytes)
    } catch (err) {
      throw new DecodeError(what, `patch ${i + 1}: ${(err as Error).message}`, { cause: err })
    }
    return { base, bytes }
  })
}

/** The delta a sealed patch holds: ManifestPatchError unless it opens for exactly this base, target, package and channel. */
export function openPayloadPatch (patch: Uint8Array, o: PatchBinding): Uint8Array {
  checkPayloadPatch(patch)
  const nonce = patch.subarray(1, 1 + PAYLOAD_NONCE_BYTES)
  const plain = openGcm(contentSubkey(o.contentKey, PATCH_KEY_INFO), nonce, patchAad(o.baseId, o.targetId, o.package, o.channel), patch.subarray(1 + PAYLOAD_NONCE_BYTES))
  if (plain === null) throw new ManifestPatchError(`it does not open for ${o.baseId.slice(0, 12)}… → ${o.targetId.slice(0, 12)}… with this fleet's content key (another base, target or fleet, or tampered)`)
  return plain
}

/** What of the target the stripped bytes tell, read as untrusted JSON (the id check decides). */
function sealingOf (stripped: Uint8Array): { package: string, version: string, seq: number, channel: string, nonce: Buffer } {
  let v: unknown
  try {
    v = JSON.parse(dec.decode(stripped))
  } catch (err) {
    throw new ManifestPatchError('the rebuilt manifest bytes are not JSON', { cause: err })
  }
  const s = (v as { signed?: Record<string, unknown> } | null)?.signed
  const p = s?.payload as Record<string, unknown> | undefined
  if (s === undefined || typeof s.package !== 'string' || typeof s.version !== 'string' || typeof s.channel !== 'string' ||
    !Number.isSafeInteger(s.seq) || typeof p?.nonce !== 'string' || p.ciphertext !== '') {
    throw new ManifestPatchError('the rebuilt manifest bytes lack the fields the payload is sealed under')
  }
  const nonce = Buffer.from(p.nonce, 'base64')
  if (nonce.length !== PAYLOAD_NONCE_BYTES) throw new ManifestPatchError('the rebuilt manifest names a malformed payload nonce')
  return { package: s.package, version: s.version, seq: s.seq as number, channel: s.channel, nonce }
}

/**
 * Manifest `id` rebuilt from `base` (held, verified), `delta` (of the stripped target against the
 * stripped base) and `patch`: ManifestPatchError (or a DeltaError) unless the bytes hash to `id`.
 */
export function applyPayloadPatch (base: PatchRelease, delta: Uint8Array, patch: Uint8Array, id: string, contentKey: Uint8Array): Uint8Array {
  const bm = base.manifest ?? decodeManifest(base.bytes)
  let stripped: Uint8Array
  let plain: Uint8Array
  try {
    const strippedBase = stripPayload(base.bytes)
    if (!isManifestDeltaBase(strippedBase)) throw new ManifestPatchError('the base is above the delta-base limit')
    stripped = new DeltaDecoder(strippedBase, MAX_MANIFEST_BYTES).decode(delta, MAX_MANIFEST_BYTES)
    const basePlain = openPayloadBytes(bm, contentKey)
    if (basePlain.length > MAX_DELTA_BASE_BYTES) throw new ManifestPatchError('the base payload is above the delta-base limit')
    const patchDelta = openPayloadPatch(patch, { baseId: base.id, targetId: id, package: bm.signed.package, channel: bm.signed.channel, contentKey })
    plain = new DeltaDecoder(basePlain, MAX_MANIFEST_BYTES).decode(patchDelta, MAX_MANIFEST_BYTES)
  } catch (err) {
    if (err instanceof ManifestPatchError) throw err
    if (err instanceof DeltaError || err instanceof DecodeError) throw new ManifestPatchError(err.message, { cause: err })
    throw new ManifestPatchError(`the base does not open (${(err as Error).message})`, { cause: err })
  }
  const b = sealingOf(stripped)
  const { start, end } = ciphertextSpan(stripped)
  if (end !== start) throw new ManifestPatchError('the rebuilt manifest still holds a ciphertext')
  const ct = enc.encode(sealPayloadBytes(b, b.nonce, plain, contentKey).toString('base64'))
  if (stripped.length + ct.length > MAX_MANIFEST_BYTES) throw new ManifestPatchError(`the rebuilt manifest would exceed ${MAX_MANIFEST_BYTES} bytes`)
  const out = new Uint8Array(stripped.length + ct.length)
  out.set(stripped.subarray(0, start), 0)
  out.set(ct, start)
  out.set(stripped.subarray(start), start + ct.length)
  if (manifestId(out) !== id) throw new ManifestPatchError(`the rebuilt ${out.length} bytes are not manifest ${id.slice(0, 12)}…`)
  return out
}

/** The delta of the stripped target against the stripped base, sent beside a patch; null when none is worth it. */
export async function encodeStrippedDelta (base: Uint8Array, target: Uint8Array): Promise<Uint8Array | null> {
  return await encodeManifestDelta(stripPayload(base), stripPayload(target))
}
