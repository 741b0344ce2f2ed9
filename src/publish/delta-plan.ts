// Publisher side of delta blobs (issue 5, docs/delta.md "Delta blobs in the manifest"): for each
// file of the release being published and each of the previous releases of the package held in
// the repo (newest first), the chunks a holder of that release lacks are encoded against base
// bytes of the same file there (chooseBaseFile + planDeltaBases), one delta per plan, kept only
// when clearly smaller than the full blobs it replaces, sealed like any chunk and stored.
//
// Memory: one plan at a time — its base (≤ 1 MiB of old chunks, opened from the repo's blobs with
// the old payload's keys) and its targets (≤ 512 KiB + one chunk, opened from the blobs just
// written), one DeltaEncoder; the event loop turns after every plan so the binding's native
// memory is released (docs/delta.md "Native memory"). No file is ever held whole.
import { setImmediate as turn } from 'node:timers/promises'
import { chooseBaseFile, DeltaEncoder, planDeltaBases, type DeltaOptions, type DeltaPlanOptions } from '../core/delta.js'
import { cidFromHex, cidToHex, openBlob, TAG_BYTES, HEADER_BYTES, type SealedChunk } from '../core/seal.js'
import { decodeManifest, openPayload, MAX_DELTA_BASE_CHUNKS, MAX_DELTA_TARGETS, type ChunkRef, type FileChunk, type FileEntry, type PayloadDelta } from '../core/manifest.js'
import type { HeldRelease } from '../core/delta-apply.js'
import type { BlobStore } from '../store/blob-store.js'
import type { RepoLayout } from '../store/repo.js'

/** Sealing overhead of a blob over its encoded message (header + GCM tag). */
const BLOB_OVERHEAD = HEADER_BYTES + TAG_BYTES

export interface PreviousRelease extends HeldRelease {
  seq: number
  /** path → size, for chooseBaseFile. */
  sizes: Map<string, number>
  files: Map<string, FileChunk[]>
  /** Chunk keys of its files: what a holder of this release already has. */
  keys: Set<string>
  /** cids of its file chunks (not its delta blobs). */
  fileCids: Set<string>
}

/**
 * The `count` newest releases of `pkg` in the repo (by sequence, other than `exclude`) whose payload
 * opens with this content key, newest first. A manifest that does not decode or open (another
 * fleet's, damaged) is skipped: deltas are an optimization, never a reason to fail a publish.
 */
export async function loadPreviousReleases (repo: RepoLayout, pkg: string, exclude: string, contentKey: Uint8Array, count: number): Promise<PreviousRelease[]> {
  if (count <= 0) return []
  const found: Array<{ version: string, seq: number, bytes: Uint8Array }> = []
  for (const v of await repo.versions(pkg)) {
    if (v === exclude) continue
    const bytes = await repo.readManifestBytes(pkg, v)
    if (bytes === null) continue
    try {
      found.push({ version: v, seq: decodeManifest(bytes).signed.seq, bytes })
    } catch { /* not a manifest this shoal reads: no base */ }
  }
  found.sort((a, b) => b.seq - a.seq)
  const out: PreviousRelease[] = []
  for (const f of found) {
    if (out.length >= count) break
    let payload
    const m = decodeManifest(f.bytes)
    try { payload = openPayload(m, contentKey) } catch { continue }
    const sizes = new Map<string, number>()
    const files = new Map<string, FileChunk[]>()
    const keys = new Set<string>()
    const fileCids = new Set<string>()
    for (const e of payload.files) {
      if (e.type !== 'file' || e.chunks === undefined) continue
      sizes.set(e.path, e.size)
      files.set(e.path, e.chunks)
      for (const c of e.chunks) {
        keys.add(c.key)
        fileCids.add((m.signed.chunks[c.index] as ChunkRef).cid)
      }
    }
    out.push({ version: m.signed.version, seq: m.signed.seq, chunks: m.signed.chunks, payload, sizes, files, keys, fileCids })
  }
  return out
}

export interface ProduceDeltasOptions {
  files: readonly FileEntry[]
  /** The new release's chunk table so far: delta blobs are appended to it. */
  chunks: ChunkRef[]
  chunkIndex: Map<string, number>
  previous: readonly PreviousRelease[]
  blobs: BlobStore
  seal: (plaintext: Uint8Array) => Promise<SealedChunk>
  delta?: Partial<DeltaOptions>
  plan?: Partial<DeltaPlanOptions>
}

export interface ProducedDeltas {
  deltas: PayloadDelta[]
  /** Distinct delta blobs in the chunk table, and their bytes. */
  blobs: number
  bytes: number
  /** Plans encoded (each one DeltaEncoder), and those whose delta was kept. */
  plansEncoded: number
  plansKept: number
}

async function openChunk (blobs: BlobStore, cid: string, key: string, size: number): Promise<Uint8Array | null> {
  const c = cidFromHex(cid)
  const blob = await blobs.get(c)
  if (blob === null) return null
  return openBlob(blob, Buffer.from(key, 'hex'), { cid: c, plainSize: size })
}

export async function produceDeltas (o: ProduceDeltasOptions): Promise<ProducedDeltas> {
  const deltas: PayloadDelta[] = []
  const deltaIndices = new Set<number>()
  let bytes = 0
  let plansEncoded = 0
  let plansKept = 0
  // Same base bytes (by chunk keys) and same targets give the same delta: encode it once, even
  // when two previous releases share the region.
  const done = new Map<string, { index: number, key: string, size: number } | null>()
  for (const file of o.files) {
    const fc = file.chunks
    if (file.type !== 'file' || fc === undefined || fc.length === 0) continue
    for (const prev of o.previous) {
      if (fc.every(c => prev.keys.has(c.key))) continue
      const basePath = chooseBaseFile(file.path, file.size, prev.sizes)
      if (basePath === undefined) continue
      const old = prev.files.get(basePath) as FileChunk[]
      const plans = planDeltaBases(old.map(c => ({ key: c.key, length: c.size })), fc.map(c => ({ key: c.key, length: c.size })), o.plan)
      for (const plan of plans) {
        if (plan.baseEnd <= plan.baseStart) continue
        const targets: number[] = []
        for (const t of plan.targets) {
          const c = fc[t] as FileChunk
          if (!prev.keys.has(c.key) && !targets.includes(c.index)) targets.push(c.index)
        }
        // Caps every endpoint applies (validatePayload); only tiny custom chunk sizes reach them.
        if (targets.length === 0 || targets.length > MAX_DELTA_TARGETS || plan.baseEnd - plan.baseStart > MAX_DELTA_BASE_CHUNKS) continue
        const baseChunks = old.slice(plan.baseStart, plan.baseEnd)
        const sig = baseChunks.map(c => c.key).join('') + '|' + targets.join(',')
        let got = done.get(sig)
        if (got === undefined) {
          got = null
          const keyOf = new Map(fc.map(c => [c.index, c]))
          const baseParts: Uint8Array[] = []
          for (const c of baseChunks) {
            // An old blob missing or damaged in the repo only costs this delta, never the publish.
            const p = await openChunk(o.blobs, (prev.chunks[c.index] as ChunkRef).cid, c.key, c.size).catch(() => null)
            if (p === null) break
            baseParts.push(p)
          }
          const targetParts: Uint8Array[] = []
          let fullBytes = 0
          for (const t of targets) {
            const c = keyOf.get(t) as FileChunk
            const ref = o.chunks[t] as ChunkRef
            const p = await openChunk(o.blobs, ref.cid, c.key, c.size)
            if (p === null) break
            targetParts.push(p)
            fullBytes += ref.size
          }
          if (baseParts.length === baseChunks.length && targetParts.length === targets.length) {
            plansEncoded++
            const enc = new DeltaEncoder(Buffer.concat(baseParts), o.delta)
            const plain = enc.encode(Buffer.concat(targetParts), { fullBytes: fullBytes - BLOB_OVERHEAD })
            if (plain !== null) {
              const size = plain.length
              const sealed = await o.seal(plain)
              const cidHex = cidToHex(sealed.cid)
              const at = o.chunkIndex.get(cidHex)
              if (at === undefined) {
                await o.blobs.put(sealed.cid, sealed.blob, { durable: false })
                const index = o.chunks.length
                o.chunkIndex.set(cidHex, index)
                o.chunks.push({ cid: cidHex, size: sealed.blob.length })
                deltaIndices.add(index)
                bytes += sealed.blob.length
                got = { index, key: Buffer.from(sealed.key).toString('hex'), size }
              } else if (deltaIndices.has(at)) {
                got = { index: at, key: Buffer.from(sealed.key).toString('hex'), size }
              }
              // else: the delta's blob is a file chunk of this release (never in practice): no delta.
            }
          }
          done.set(sig, got)
          // Let the event loop turn: the binding's finalizers free the encoder's native tables.
          await turn()
        }
        if (got === null) continue
        plansKept++
        deltas.push({
          index: got.index,
          key: got.key,
          size: got.size,
          targets,
          base: { version: prev.version, path: basePath, first: plan.baseStart, count: plan.baseEnd - plan.baseStart, size: plan.baseBytes }
        })
      }
    }
  }
  return { deltas, blobs: deltaIndices.size, bytes, plansEncoded, plansKept }
}
