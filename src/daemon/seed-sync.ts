// Several seeds: a seed keeps up with its peer seeds (`seeds` in a seed's config) and its `origins`,
// so a release published to one seed reaches all, and a seed can run behind an origin alone.
//
// A head from a peer or an origin is verified like an endpoint verifies it (online-key threshold,
// unexpired, the channel asked). Before it is served, the seed fetches what the head names and it
// lacks — manifests (checked against the head's ids and the root) and their blobs (checked against
// their cids) — from the sender first, then the other peer seeds, then the origins. Then:
// - the head moves the channel forward: it is adopted as is (stored, pushed to connected peers);
// - it conflicts (two seeds signed the same sequence, or a package's sequence would go down): the
//   seed signs a merged head — every package at its highest sequence, a sequence above both — when
//   it holds something the other lacks, or, for the very same packages, when its own head's id is
//   the lower one; so exactly one side re-signs and both converge on the next head.
import { setMaxListeners } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import { isMultiaddr, multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { checkHeadAdvance, decodeHead, headId, MixAndMatchError, verifyHead, type HeadBody, type HeadEntry } from '../core/head.js'
import { decodeManifest, manifestId, verifyManifest, type ChunkRef } from '../core/manifest.js'
import { cidFromHex } from '../core/seal.js'
import { RollbackError } from '../core/signed.js'
import { OriginClient } from '../net/origin-client.js'
import { syncFilesystem } from '../store/fs-util.js'
import { distinctChunks } from '../swarm/release-fetch.js'
import { TokenBucket } from '../swarm/token-bucket.js'
import { originSource, seedSource, WanSources, type WanSource } from '../swarm/wan-sources.js'
import { loadHead } from './announce.js'
import type { Seed, SeedDeps } from './seed.js'
import { BlobCache } from './blob-cache.js'

/** Blobs a seed pulls from its upstream at once. */
const SYNC_CONCURRENCY = 32

/** What the seed role has, minus its signing and records, plus the seed that adopts heads. */
export type SeedSyncDeps = Pick<SeedDeps, 'node' | 'db' | 'blobs' | 'client' | 'announce' | 'root' | 'cfg' | 'log' | 'metrics' | 'now'> & { seed: Seed }

type From = PeerId | Multiaddr | OriginClient

/** Every package at its highest sequence. */
export function mergePackages (a: Record<string, HeadEntry>, b: Record<string, HeadEntry>): Record<string, HeadEntry> {
  const out = { ...a }
  for (const [name, e] of Object.entries(b)) {
    const cur = out[name]
    if (cur === undefined || cur.seq < e.seq) out[name] = e
  }
  return out
}

function samePackages (a: Record<string, HeadEntry>, b: Record<string, HeadEntry>): boolean {
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every(k => b[k]?.manifest === a[k]?.manifest)
}

export class SeedSync {
  private readonly peers: Multiaddr[]
  private readonly origins: OriginClient[]
  private readonly bucket: TokenBucket
  private readonly stopCtl = new AbortController()
  private timer: NodeJS.Timeout | undefined
  /** Heads are considered one at a time: each may pull a release. */
  private chain: Promise<void> = Promise.resolve()
  /** Cache mode (`cacheSize` > 0): blobs are fetched when asked for, not when a head is adopted. */
  cache: BlobCache | undefined

  constructor (private readonly d: SeedSyncDeps) {
    const self = d.node.peerId.toString()
    this.peers = d.cfg.seeds.map(s => multiaddr(s)).filter(a => a.getComponents().find(c => c.name === 'p2p')?.value !== self)
    this.origins = d.cfg.origins.map(u => new OriginClient(u))
    this.bucket = new TokenBucket({ rate: d.cfg.wanRate })
    setMaxListeners(0, this.stopCtl.signal) // every blob pulled at once listens to it
  }

  /** Polls peer seeds and origins when there are any; pushed heads are taken in any case. */
  async start (): Promise<void> {
    if (this.d.cfg.cacheSize > 0) {
      const upstream = this.upstream()
      this.cache = await BlobCache.open({
        blobs: this.d.blobs,
        limit: this.d.cfg.cacheSize,
        upstream: async (cid, maxSize) => {
          const { blob, source } = await upstream.fetch(cid, maxSize, this.stopCtl.signal)
          return { blob, source: source.kind }
        },
        log: this.d.log,
        onFill: async (source, bytes) => { await this.count(source, bytes) }
      })
      for await (const [, bytes] of this.d.db.manifests.entries()) this.cache.allow(decodeManifest(bytes).signed.chunks)
    }
    if (this.peers.length + this.origins.length === 0) return
    this.timer = setInterval(() => { this.pollSoon() }, this.d.cfg.pollInterval)
    this.timer.unref()
    this.pollSoon()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.stopCtl.abort()
    await this.chain.catch(() => {})
    for (const o of this.origins) o.close()
  }

  /** A head pushed by a peer (a seed after a publish, or anyone: it is verified). */
  onPush (channel: string, bytes: Uint8Array, from: PeerId): void {
    this.enqueue(async () => { await this.consider(channel, bytes, from) })
  }

  private enqueue (job: () => Promise<void>): void {
    this.chain = this.chain.then(job).catch(err => {
      if (!this.stopCtl.signal.aborted) this.d.log.warn({ err }, 'seed sync: head not taken')
    })
  }

  private pollSoon (): void {
    this.enqueue(async () => { await this.poll() })
  }

  /** Catch-up after a restart or a lost push: ask every peer seed and origin for its heads. */
  private async poll (): Promise<void> {
    const channels = new Set(this.d.cfg.channels)
    for await (const [c] of this.d.db.heads.entries()) channels.add(c)
    const list = [...channels].slice(0, 64)
    const sources: Array<{ from: From, name: string, heads: () => Promise<Map<string, Uint8Array>> }> = [
      ...this.peers.map(p => ({ from: p, name: p.toString(), heads: async () => await this.d.announce.fetchHeads(p, list, this.stopCtl.signal) })),
      ...this.origins.map(o => ({ from: o, name: o.base, heads: async () => await o.heads(list, this.stopCtl.signal) }))
    ]
    for (const s of sources) {
      if (this.stopCtl.signal.aborted) return
      let heads: Map<string, Uint8Array>
      try { heads = await s.heads() } catch (err) { this.d.log.debug({ err, source: s.name }, 'seed sync: source unreachable'); continue }
      for (const [channel, bytes] of heads) {
        try { await this.consider(channel, bytes, s.from) } catch (err) { this.d.log.warn({ err, channel, source: s.name }, 'seed sync: head refused') }
      }
    }
  }

  private async consider (channel: string, bytes: Uint8Array, from: From): Promise<void> {
    const head = decodeHead(bytes)
    verifyHead(head, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace, expectChannel: channel })
    const mineBytes = await loadHead(this.d.db, channel)
    const mine = mineBytes === null ? null : decodeHead(mineBytes).signed
    let advance: 'new' | 'same' | 'conflict'
    try {
      advance = checkHeadAdvance(mine, head.signed)
    } catch (err) {
      if (!(err instanceof RollbackError)) throw err
      advance = 'conflict'
    }
    if (advance === 'same') return
    const theirs = head.signed.packages
    const ahead = Object.entries(theirs).filter(([name, e]) => (mine?.packages[name]?.seq ?? 0) < e.seq)
    for (const [name, e] of ahead) await this.fetchRelease(name, e, from)
    if (advance === 'new') {
      if (await this.d.seed.adoptHead(channel, bytes, isPeer(from) && !isMultiaddr(from) ? from : undefined)) {
        this.d.log.info({ channel, seq: head.signed.seq, source: sourceName(from) }, 'seed sync: head adopted')
      }
      return
    }
    const m = mine as HeadBody
    const merged = mergePackages(m.packages, theirs)
    const iHoldMore = !samePackages(merged, theirs)
    const tie = samePackages(m.packages, theirs) && headId(mineBytes as Uint8Array) < headId(bytes)
    if (ahead.length > 0 || (iHoldMore && head.signed.seq >= m.seq) || tie) {
      const seq = await this.d.seed.updateHead(channel, p => mergePackages(p, theirs), Math.max(m.seq, head.signed.seq) + 1)
      this.d.log.info({ channel, seq, source: sourceName(from) }, 'seed sync: merged a conflicting head')
    }
  }

  /** The manifest and blobs of a release another seed or origin lists, unless all held already. */
  private async fetchRelease (name: string, e: HeadEntry, from: From): Promise<void> {
    const release = `${name}@${e.version}`
    let bytes = await this.d.db.manifests.get(e.manifest)
    const fresh = bytes === null
    if (bytes === null) bytes = await this.fetchManifest(name, e, from)
    const manifest = decodeManifest(bytes)
    verifyManifest(manifest, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace, expectPackage: name })
    // A peer seed's payload patches too (docs/protocol.md §6.5), before the manifest is held and
    // served; an optimization only: a peer before patches, or none held, is no failure.
    if (fresh && isPeer(from)) {
      const patches = await this.d.announce.fetchManifestPatches(from, e.manifest, this.stopCtl.signal).catch(() => [])
      await this.d.seed.keepPatches(e.manifest, bytes, patches)
    }
    const table = distinctChunks(manifest.signed.chunks)
    if (this.cache !== undefined) {
      this.cache.allow(table)
      await this.holdRelease(release, e.manifest, bytes, table)
      return
    }
    const missing: typeof table = []
    for (const c of table) if (!(await this.d.blobs.has(cidFromHex(c.cid)))) missing.push(c)
    const wan = this.upstream(isPeer(from) ? [seedSource(this.d.client, from)] : [])
    let fetched = 0
    let fetchedBytes = 0
    const worker = async (): Promise<void> => {
      for (let c = missing.pop(); c !== undefined; c = missing.pop()) {
        const cid = cidFromHex(c.cid)
        const { blob, source } = await wan.fetch(cid, c.size, this.stopCtl.signal)
        await this.d.blobs.put(cid, blob, { durable: false, verified: true, absent: true })
        fetched++
        fetchedBytes += blob.byteLength
        await this.count(source.kind, blob.byteLength)
      }
    }
    await Promise.all(Array.from({ length: Math.min(SYNC_CONCURRENCY, missing.length) }, worker))
    if (fetched > 0) await syncFilesystem(this.d.cfg.stateDir)
    await this.holdRelease(release, e.manifest, bytes, table)
    if (fetched > 0) this.d.log.info({ release, fetched, fetchedBytes, source: sourceName(from) }, 'seed sync: release pulled')
  }

  // The index first: once the manifest is here, its blobs are indexed.
  private async holdRelease (release: string, id: string, bytes: Uint8Array, table: readonly ChunkRef[]): Promise<void> {
    await this.d.db.blobIndex.add(release, table.map(c => c.cid))
    await this.d.db.manifests.put(id, bytes, { durable: true }) // served under a head from now on
  }

  /** `first`, then the peer seeds, then the origins, with failover. */
  private upstream (first: WanSource[] = []): WanSources {
    return new WanSources([...first, ...this.peers.map(p => seedSource(this.d.client, p)), ...this.origins.map(originSource)], this.bucket,
      (source, cid, err) => {
        if ((err as { code?: string }).code === 'ERR_BLOB_VERIFY') this.d.metrics.badBlobs.inc({ source: source.kind })
        this.d.log.warn({ source: source.name, cid, err }, 'seed sync: blob fetch failed; asking the next source')
      })
  }

  private async count (source: WanSource['kind'], bytes: number): Promise<void> {
    this.d.metrics.bytesReceived.inc({ source }, bytes)
    this.d.metrics.blobsReceived.inc({ source })
    await this.d.db.counters.add(`bytes.${source}`, bytes)
  }

  private async fetchManifest (name: string, e: HeadEntry, from: From): Promise<Uint8Array> {
    const tries: Array<() => Promise<Uint8Array>> = []
    const viaPeer = (p: PeerId | Multiaddr) => async () => (await this.d.announce.fetchManifest(p, e.manifest, this.stopCtl.signal)).bytes
    if (isPeer(from)) tries.push(viaPeer(from))
    else tries.push(async () => await from.manifest(name, e.version, this.stopCtl.signal))
    for (const p of this.peers) tries.push(viaPeer(p))
    for (const o of this.origins) if (o !== from) tries.push(async () => await o.manifest(name, e.version, this.stopCtl.signal))
    let last: unknown
    for (const t of tries) {
      try {
        const b = await t()
        if (manifestId(b) === e.manifest) return b
        last = new MixAndMatchError(`a source served ${name}@${e.version} with another manifest than the head names (stale or tampered)`)
      } catch (err) { last = err }
    }
    throw last instanceof Error ? last : new Error(`manifest ${e.manifest} not found`)
  }
}

function isPeer (from: From): from is PeerId | Multiaddr {
  return !(from instanceof OriginClient)
}

function sourceName (from: From): string {
  return from instanceof OriginClient ? from.base : isMultiaddr(from) ? from.toString() : from.toString()
}
