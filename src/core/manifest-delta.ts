// Manifests on the wire as deltas (docs/protocol.md §6.5, `manifest` with `base`): a small update
// shares most of its chunk table with the release before it, so a peer that holds that earlier
// manifest takes the new one as a zstd delta against its exact bytes (the codec of delta blobs,
// src/core/delta.ts). The delta is only a transport encoding: the rebuilt bytes must hash to the id
// that was asked for, and the caller then verifies them as it would any manifest (canonical form,
// signatures), so a lying or broken delta can cost a refetch, never an install.
import { DeltaDecoder, DeltaEncoder, DeltaError, MAX_DELTA_BASE_BYTES, type DeltaOptions } from './delta.js'
import { MAX_MANIFEST_BYTES, manifestId } from './manifest.js'

/**
 * Level 9: a manifest's new bytes are mostly its sealed payload (random ciphertext in base64),
 * which no level compresses below ~75 %, while the shared chunk-table rows are long matches any
 * level finds; level 19 would cost ~32 bytes of encoder memory per base byte for little gain.
 */
export const MANIFEST_DELTA_OPTIONS: Readonly<DeltaOptions> = Object.freeze({ level: 9, maxRatio: 0.9, minSavedBytes: 1024 })

/** A manifest delta that does not rebuild the manifest asked for; the caller fetches the full manifest. */
export class ManifestDeltaError extends DeltaError {
  constructor (why: string, options?: { cause?: unknown }) {
    super('ERR_MANIFEST_DELTA', 'corrupt', `manifest delta refused: ${why}; fetching the full manifest`, options)
  }
}

/** Whether `base` may serve as a manifest delta's base (what one decode holds is bounded). */
export function isManifestDeltaBase (base: Uint8Array): boolean {
  return base.length <= MAX_DELTA_BASE_BYTES
}

/** The delta of `target` against `base`, or null when the base is too large or the delta not clearly smaller. */
export async function encodeManifestDelta (base: Uint8Array, target: Uint8Array): Promise<Uint8Array | null> {
  if (!isManifestDeltaBase(base) || target.length > MAX_MANIFEST_BYTES) return null
  return await new DeltaEncoder(base, MANIFEST_DELTA_OPTIONS, MAX_MANIFEST_BYTES).encodeAsync(target)
}

/**
 * The manifest `id` rebuilt from `base` and `delta`: throws ManifestDeltaError unless the bytes
 * hash to `id` (a wrong base, a damaged or hostile delta, an oversize target are all refused).
 */
export function rebuildManifest (base: Uint8Array, delta: Uint8Array, id: string): Uint8Array {
  let bytes: Uint8Array
  try {
    bytes = new DeltaDecoder(base, MAX_MANIFEST_BYTES).decode(delta, MAX_MANIFEST_BYTES)
  } catch (err) {
    if (err instanceof DeltaError) throw new ManifestDeltaError(err.message, { cause: err })
    throw err
  }
  if (manifestId(bytes) !== id) throw new ManifestDeltaError(`the rebuilt ${bytes.length} bytes are not manifest ${id.slice(0, 12)}…`)
  return bytes
}
