// Publishing a release into a repository: walk the input in a fixed order, cut each file on its
// own with FastCDC, seal the chunks on worker threads, store the blobs the repo lacks, and sign
// the manifest. Memory stays bounded by the number of chunks in flight, whatever the input size.
// Then delta blobs against the previous releases in the repo (./delta-plan.ts, docs/delta.md
// "Delta blobs in the manifest"), listed after the file chunks and in the payload's `deltas`.
import { createHash } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { ShoalError, InvalidArgumentError } from '../core/errors.js'
import { FastCdc, DEFAULT_CHUNKER_OPTIONS, validateChunkerOptions, type ChunkerOptions } from '../core/chunker.js'
import { SealPool } from '../core/seal-pool.js'
import { cidToHex, type SealedChunk } from '../core/seal.js'
import { buildManifest, decodeManifest, validatePackageName, validateVersion, type ChunkRef, type FileEntry, type ManifestPayload } from '../core/manifest.js'
import { planFetch } from '../core/delta-apply.js'
import type { DeltaOptions, DeltaPlanOptions } from '../core/delta.js'
import { loadPreviousReleases, produceDeltas } from './delta-plan.js'
import type { KeyPair } from '../core/keys.js'
import { BlobStore } from '../store/blob-store.js'
import { RepoLayout, ReuseIndex } from '../store/repo.js'
import { syncFilesystem } from '../store/fs-util.js'
import { prepareInput, readFilePieces, type InputEntry } from './input.js'

export class VersionExistsError extends ShoalError {
  constructor (pkg: string, version: string, path: string) {
    super('ERR_VERSION_EXISTS', `${pkg}@${version} is already published in this repository (${path}); publish a new version — endpoints treat a version as immutable`)
  }
}

export interface PublishOptions {
  input: string
  package: string
  version: string
  channel: string
  repoDir: string
  signers: KeyPair[]
  contentKey: Uint8Array
  /** Defaults to one more than the highest sequence of this package in the repo. */
  seq?: number
  expires: Date
  now?: Date
  chunker?: Partial<ChunkerOptions>
  brotliQuality?: number
  threads?: number
  hooks?: { preinstall?: string, postinstall?: string }
  notes?: string
  rollout?: unknown
  /**
   * How many previous releases of this package in the repo (newest first) to encode delta blobs
   * against; default 2, 0 disables (the output is then exactly what a publish without deltas gives).
   */
  deltaReleases?: number
  /** Codec and base-plan settings (tests, benchmarks); defaults in src/core/delta.ts. */
  delta?: Partial<DeltaOptions>
  deltaPlan?: Partial<DeltaPlanOptions>
  onProgress?: (doneBytes: number, totalBytes: number) => void
}

export interface PublishResult {
  package: string
  version: string
  channel: string
  seq: number
  manifestId: string
  manifestPath: string
  manifestBytes: number
  files: number
  chunks: number
  uniqueChunks: number
  newChunks: number
  inputBytes: number
  blobBytes: number
  newBlobBytes: number
  seconds: number
  mbPerSec: number
  /** Delta blobs in the chunk table, and their blob bytes (all new in this publish). */
  deltaBlobs: number
  deltaBytes: number
  /** Versions delta blobs were encoded against, newest first. */
  deltaBaseReleases: string[]
  /**
   * Blob bytes an endpoint holding exactly the previous release (its file chunks) fetches for this
   * one, per planFetch: delta blobs where they serve, full blobs otherwise, nothing it holds. All
   * blob bytes of the release when there is no previous release.
   */
  fetchBytesFromPrevious: number
}

/** Delta blobs against the two previous releases (issue 5): endpoints fetch by `planFetch`, so a holder of either pays a delta. */
export const DEFAULT_DELTA_RELEASES = 2

interface Pending {
  file: FileEntry
  done: Promise<SealedChunk>
}

/** Highest manifest sequence of a package in the repo, 0 when none. */
export async function lastSeq (repo: RepoLayout, pkg: string): Promise<number> {
  let max = 0
  for (const v of await repo.versions(pkg)) {
    const bytes = await repo.readManifestBytes(pkg, v)
    if (bytes === null) continue
    const m = decodeManifest(bytes)
    if (m.signed.seq > max) max = m.signed.seq
  }
  return max
}

export async function publishRelease (o: PublishOptions): Promise<PublishResult> {
  const started = performance.now()
  validatePackageName(o.package, 'package name')
  validatePackageName(o.channel, 'channel')
  validateVersion(o.version)
  const chunker = validateChunkerOptions({ ...DEFAULT_CHUNKER_OPTIONS, ...o.chunker })
  const threads = o.threads ?? Math.max(1, availableParallelism())
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new InvalidArgumentError(`threads must be 1–64, got ${threads}`)
  const deltaReleases = o.deltaReleases ?? DEFAULT_DELTA_RELEASES
  if (!Number.isInteger(deltaReleases) || deltaReleases < 0 || deltaReleases > 16) throw new InvalidArgumentError(`deltaReleases must be 0–16, got ${deltaReleases}`)

  const repo = await RepoLayout.create(o.repoDir)
  const existing = await repo.readManifestBytes(o.package, o.version)
  if (existing !== null) throw new VersionExistsError(o.package, o.version, repo.manifestPath(o.package, o.version))
  const seq = o.seq ?? (await lastSeq(repo, o.package)) + 1
  // The previous release (for fetchBytesFromPrevious) is read even when deltas are off.
  const previous = await loadPreviousReleases(repo, o.package, o.version, o.contentKey, Math.max(1, deltaReleases))
  const blobs = await BlobStore.open(o.repoDir)
  const reuse = await ReuseIndex.load(repo.reuseIndexPath)
  const input = await prepareInput(o.input)
  const pool = new SealPool({ contentKey: o.contentKey, threads, seal: { brotliQuality: o.brotliQuality ?? 5 } })

  const chunkIndex = new Map<string, number>()
  const chunks: ChunkRef[] = []
  const files: FileEntry[] = []
  let chunkRefs = 0
  let newChunks = 0
  let newBlobBytes = 0
  let blobBytes = 0
  let inputBytes = 0
  const totalBytes = input.entries.reduce((n, e) => n + e.size, 0)
  // Enough chunks in flight to keep every worker busy, few enough to bound memory (≈ 64 × max chunk).
  const maxInflight = Math.max(8, threads * 16)
  const inflight: Pending[] = []
  let produced: Awaited<ReturnType<typeof produceDeltas>> | undefined

  // Blob writes run concurrently (bounded): one at a time, file-system latency, not sealing,
  // would set the pace. Chunk-table order is decided in settle(), synchronously, so it stays
  // deterministic whatever order the writes finish in.
  const writes = new Set<Promise<void>>()
  const maxWrites = 32
  let writeError: unknown = null
  const write = async (cid: Uint8Array, blob: Uint8Array): Promise<void> => {
    if (writeError !== null) throw writeError
    const tracked: Promise<void> = blobs.put(cid, blob, { durable: false }).then(
      (added) => { if (added) { newChunks++; newBlobBytes += blob.length } },
      (err: unknown) => { writeError ??= err }
    ).finally(() => { writes.delete(tracked) })
    writes.add(tracked)
    while (writes.size >= maxWrites) await Promise.race(writes)
    if (writeError !== null) throw writeError
  }

  const settle = async (p: Pending): Promise<void> => {
    const sealed = await p.done
    const keyHex = Buffer.from(sealed.key).toString('hex')
    let cid = sealed.cid
    let size = sealed.blob.length
    const known = reuse.lookup(sealed.key)
    const knownHex = known !== undefined ? cidToHex(known.cid) : undefined
    if (known !== undefined && knownHex !== undefined && (chunkIndex.has(knownHex) || await blobs.has(known.cid))) {
      cid = known.cid
      size = known.size
    } else if (!chunkIndex.has(cidToHex(cid))) {
      await write(cid, sealed.blob)
      reuse.add(sealed.key, cid, size)
    }
    const cidHex = cidToHex(cid)
    let index = chunkIndex.get(cidHex)
    if (index === undefined) {
      index = chunks.length
      chunkIndex.set(cidHex, index)
      chunks.push({ cid: cidHex, size })
      blobBytes += size
    }
    p.file.chunks?.push({ index, key: keyHex, size: sealed.plainSize })
    chunkRefs++
  }

  const submit = async (file: FileEntry, chunk: Uint8Array): Promise<void> => {
    inflight.push({ file, done: pool.seal(chunk) })
    while (inflight.length > maxInflight) await settle(inflight.shift() as Pending)
  }

  try {
    for (const e of input.entries) {
      files.push(await fileEntry(e, chunker, submit, (n) => {
        inputBytes += n
        o.onProgress?.(inputBytes, totalBytes)
      }))
    }
    while (inflight.length > 0) await settle(inflight.shift() as Pending)
    await Promise.all(writes)
    if (writeError !== null) throw writeError
    if (deltaReleases > 0 && previous.length > 0) {
      produced = await produceDeltas({
        files,
        chunks,
        chunkIndex,
        previous: previous.slice(0, deltaReleases),
        blobs,
        seal: async (plain) => await pool.seal(plain),
        ...(o.delta !== undefined ? { delta: o.delta } : {}),
        ...(o.deltaPlan !== undefined ? { plan: o.deltaPlan } : {})
      })
    }
  } finally {
    await Promise.all(writes)
    await pool.close()
    await input.cleanup()
  }
  await reuse.flush()
  await syncFilesystem(o.repoDir)

  const payload: ManifestPayload = { files }
  if (o.hooks !== undefined && (o.hooks.preinstall !== undefined || o.hooks.postinstall !== undefined)) payload.hooks = o.hooks
  if (o.notes !== undefined) payload.notes = o.notes
  if (produced !== undefined && produced.deltas.length > 0) payload.deltas = produced.deltas
  const now = o.now ?? new Date()
  const built = buildManifest({
    package: o.package,
    version: o.version,
    seq,
    channel: o.channel,
    created: now,
    expires: o.expires,
    chunker,
    ...(o.rollout !== undefined ? { rollout: o.rollout } : {}),
    chunks,
    payload,
    contentKey: o.contentKey,
    signers: o.signers
  })
  const manifestPath = await repo.writeManifest(o.package, o.version, built.bytes)
  const prev = previous[0]
  const fetchBytesFromPrevious = planFetch(built.manifest, payload, prev !== undefined ? (cid) => prev.fileCids.has(cid) : () => false, previous.slice(0, 1)).bytes
  const seconds = (performance.now() - started) / 1000
  return {
    package: o.package,
    version: o.version,
    channel: o.channel,
    seq,
    manifestId: built.id,
    manifestPath,
    manifestBytes: built.bytes.length,
    files: files.length,
    chunks: chunkRefs,
    uniqueChunks: chunks.length - (produced?.blobs ?? 0),
    newChunks,
    inputBytes,
    blobBytes,
    newBlobBytes,
    seconds,
    mbPerSec: inputBytes / 1e6 / Math.max(seconds, 1e-6),
    deltaBlobs: produced?.blobs ?? 0,
    deltaBytes: produced?.bytes ?? 0,
    deltaBaseReleases: produced !== undefined ? previous.slice(0, deltaReleases).map(r => r.version) : [],
    fetchBytesFromPrevious
  }
}

async function fileEntry (
  e: InputEntry,
  chunker: ChunkerOptions,
  submit: (file: FileEntry, chunk: Uint8Array) => Promise<void>,
  onBytes: (n: number) => void
): Promise<FileEntry> {
  if (e.type === 'dir') return { path: e.path, type: 'dir', mode: e.mode, size: 0 }
  if (e.type === 'symlink') return { path: e.path, type: 'symlink', mode: 0o777, size: 0, target: e.target as string }
  const file: FileEntry = { path: e.path, type: 'file', mode: e.mode, size: 0, chunks: [] }
  const hash = createHash('sha256')
  const cdc = new FastCdc(chunker)
  let size = 0
  for await (const piece of readFilePieces(e.absPath)) {
    hash.update(piece)
    size += piece.length
    onBytes(piece.length)
    for (const c of cdc.push(piece)) await submit(file, c)
  }
  const tail = cdc.finish()
  if (tail !== null) await submit(file, tail)
  if (size !== e.size) {
    throw new ShoalError('ERR_INPUT_CHANGED', `${e.path} changed while it was being published (${e.size} bytes expected, ${size} read); publish again from a folder nobody writes to`)
  }
  file.size = size
  file.sha256 = hash.digest('hex')
  return file
}
