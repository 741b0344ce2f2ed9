// `shoal extract`: rebuild a release's tree from a repository folder, trusting nothing on disk
// but the enrollment bundle: the manifest is verified against the pinned root, every blob
// against its cid and key, every file against its SHA-256.
import { decodeEndpointEnrollment, MAX_BUNDLE_BYTES } from '../core/enroll.js'
import { decodeManifest, manifestId, openPayload, verifyManifest, MAX_MANIFEST_BYTES } from '../core/manifest.js'
import { verifyRoot } from '../core/root.js'
import { deriveFleetKeys } from '../core/fleet-keys.js'
import { fileBytes, MissingBlobError } from '../core/release.js'
import { cidToHex } from '../core/seal.js'
import { BlobStore } from '../store/blob-store.js'
import { readFileCapped } from '../store/fs-util.js'
import { writeTree } from '../install/stage.js'
import type { InstallFile } from '../install/stage.js'

export interface ExtractOptions { repoDir: string, manifestPath: string, enrollPath: string, to: string, now?: Date }
export interface ExtractResult { package: string, version: string, manifestId: string, files: number, bytes: number, to: string }

export async function extractRelease (o: ExtractOptions): Promise<ExtractResult> {
  const now = o.now ?? new Date()
  const enrollment = decodeEndpointEnrollment(await readFileCapped(o.enrollPath, MAX_BUNDLE_BYTES, 'enrollment bundle'))
  verifyRoot(enrollment.root, now)
  const bytes = await readFileCapped(o.manifestPath, MAX_MANIFEST_BYTES, 'manifest')
  const manifest = decodeManifest(bytes)
  verifyManifest(manifest, enrollment.root, now)
  const { contentKey } = deriveFleetKeys(enrollment.fleetSecret)
  const payload = openPayload(manifest, contentKey)
  const blobs = await BlobStore.open(o.repoDir)
  const chunks = manifest.signed.chunks
  const getBlob = async (cid: Uint8Array, size: number): Promise<Uint8Array> => {
    const blob = await blobs.get(cid, { maxSize: size }) // reads stop at the signed length
    if (blob === null) throw new MissingBlobError(cidToHex(cid), o.repoDir)
    return blob
  }
  const byPath = new Map(payload.files.map(f => [f.path, f]))
  await writeTree(o.to, {
    package: manifest.signed.package,
    version: manifest.signed.version,
    files: payload.files as InstallFile[],
    open: (file) => {
      const entry = byPath.get(file.path)
      if (entry === undefined) throw new Error(`internal: ${file.path} is not in the payload`)
      return fileBytes(entry, chunks, getBlob)
    }
  })
  return {
    package: manifest.signed.package,
    version: manifest.signed.version,
    manifestId: manifestId(bytes),
    files: payload.files.length,
    bytes: payload.files.reduce((n, f) => n + f.size, 0),
    to: o.to
  }
}
