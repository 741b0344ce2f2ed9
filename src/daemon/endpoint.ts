// The endpoint role: learn channel heads from the seeds, verify root → head → manifest, fetch the
// blobs this machine lacks, install atomically, keep what the next update will need.
//
// Each step leaves a record in the state database before the next begins, so a restart (or a
// kill -9) resumes where it stopped: blobs already on disk are never fetched again, an install
// cut short is recovered by the installer into the old tree or the new one, then retried.
import type { PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { ShoalError } from '../core/errors.js'
import { checkHeadAdvance, checkManifestInHead, decodeHead, verifyHead, type HeadBody, type HeadEntry } from '../core/head.js'
import { decodeManifest, manifestId, openPayload, verifyManifest, type ChunkRef, type FileEntry, type ManifestPayload, type SignedManifest } from '../core/manifest.js'
import { fileBytes, MissingBlobError } from '../core/release.js'
import type { SignedRoot } from '../core/root.js'
import { cidFromHex } from '../core/seal.js'
import { MetadataExpiredError } from '../core/signed.js'
import { HookFailedError } from '../install/errors.js'
import type { Installer } from '../install/installer.js'
import type { InstallFile } from '../install/stage.js'
import type { BlobClient } from '../net/blobs.js'
import type { BlobStore } from '../store/blob-store.js'
import { syncFilesystem } from '../store/fs-util.js'
import type { ReleaseRecord, StateDb } from '../store/state-db.js'
import { HaveMap } from '../swarm/have-map.js'
import { ownershipWeight, rankOwners } from '../swarm/ownership.js'
import { PeerScores } from '../swarm/peer-scores.js'
import { distinctChunks, ReleaseFetch } from '../swarm/release-fetch.js'
import { Site, type SiteMember } from '../swarm/site.js'
import type { TokenBucket } from '../swarm/token-bucket.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ShoalNode } from '../net/node.js'
import type { HostInfo } from './host-info.js'
import { loadHead, storeHead, type Announce } from './announce.js'
import type { DaemonConfig } from './config.js'
import type { Logger } from './log.js'
import type { DaemonMetrics } from './metrics.js'

/** Errors of availability, not of trust: worth retrying at the next pass. */
const TRANSIENT = /^ERR_(NET_|PEER_CONNECTION|PEER_PROTOCOL|RPC_REMOTE|NOT_FOUND|ABORTED|ADMISSION|STREAM_|BLOB_NOT_FOUND|BLOB_BUSY|BLOB_REMOTE|PAUSED|FRAME_)/
function isTransient (err: unknown): boolean {
  return !(err instanceof ShoalError) || TRANSIENT.test(err.code)
}
/** A site member not the manifest's owner waits this long for a member to hold it before asking the seed. */
const MANIFEST_WAIT_MS = 5_000

/** How long stop() lets requests in flight finish. */
const STOP_GRACE_MS = 5_000

export interface EndpointDeps {
  node: ShoalNode
  host: HostInfo
  db: StateDb
  blobs: BlobStore
  client: BlobClient
  announce: Announce
  installer: Installer
  bucket: TokenBucket
  root: SignedRoot
  contentKey: Uint8Array
  cfg: DaemonConfig
  log: Logger
  metrics: DaemonMetrics
  now: () => Date
}

export interface ReleaseProgress { blobs: number, blobsTotal: number, bytes: number, bytesTotal: number }

export interface PackageStatus {
  name: string
  /** The version `current` points to, or null. */
  installed: string | null
  /** The release the channel head names for this package. */
  target: string | null
  state: ReleaseRecord['state'] | 'idle'
  channel: string | null
  progress?: ReleaseProgress
  error?: ReleaseRecord['error']
}

export interface HeadStatus { channel: string, seq: number, issued: string, expires: string, stale: boolean, error?: string }

export class Endpoint {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private stopped = false
  /** Aborted at stop: no new request starts. */
  private readonly soft = new AbortController()
  /** Aborted a few seconds after stop: requests in flight are cut (their blobs were not verified). */
  private readonly abort = new AbortController()
  #paused = false
  /** Aborted when paused or stopped: downloads stop starting requests. */
  private halt = new AbortController()
  private readonly progress = new Map<string, ReleaseProgress>()
  /** What I hold per release (manifest id), announced to the site: downloads in progress and installed releases. */
  private readonly haveMaps = new Map<string, HaveMap>()
  private readonly fetches = new Map<string, ReleaseFetch>()
  readonly scores = new PeerScores()
  readonly site: Site
  private readonly headErrors = new Map<string, string>()
  private readonly seeds: Multiaddr[]

  constructor (private readonly d: EndpointDeps) {
    this.seeds = d.cfg.seeds.map(s => multiaddr(s))
    this.site = new Site(d.node, d.cfg.site, {
      haves: () => new Map([...this.haveMaps].map(([id, m]) => [id, m.encode()])),
      weight: () => ownershipWeight(d.host),
      wan: () => [...this.fetches.values()].some(f => f.fetchingWan)
    }, {
      onHave: (m, release, indices) => this.fetches.get(release)?.onHave(m, indices),
      onLeave: (m: SiteMember) => { for (const f of this.fetches.values()) f.onLeave(m) }
    })
    this.site.banned = (p) => this.scores.isBanned(p)
  }

  get paused (): boolean {
    return this.#paused
  }

  set paused (v: boolean) {
    if (v === this.#paused) return
    this.#paused = v
    if (v) this.halt.abort(new ShoalError('ERR_PAUSED', 'paused'))
    else this.halt = new AbortController()
  }

  async start (): Promise<void> {
    // Whatever a crash left in the install root becomes the old tree or the new one before anything else.
    for (const pkg of await this.d.installer.packages()) {
      const r = await this.d.installer.recover(pkg)
      if (r.removed.length > 0 || r.interrupted !== undefined) this.d.log.warn({ recover: r }, 'recovered an interrupted install')
    }
    // Releases installed here are served to the site whole.
    for await (const [, rec] of this.d.db.releases.entries()) {
      if (rec.state !== 'installed') continue
      const bytes = await this.d.db.manifests.get(rec.manifestId)
      if (bytes !== null) this.haveMaps.set(rec.manifestId, HaveMap.full(distinctChunks(decodeManifest(bytes).signed.chunks).length))
    }
    await this.site.start()
    this.timer = setInterval(() => { this.kick() }, this.d.cfg.pollInterval)
    this.timer.unref()
    this.kick()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    this.soft.abort()
    // Blobs in flight are let land (a restart would fetch them again otherwise), within reason.
    const hard = setTimeout(() => { this.abort.abort() }, STOP_GRACE_MS)
    await this.running?.catch(() => {})
    clearTimeout(hard)
    this.abort.abort()
    await this.site.stop()
  }

  /** Runs a sync pass now (or right after the one running). */
  kick (): void {
    if (this.stopped) return
    if (this.running !== undefined) { this.again = true; return }
    this.running = this.pass()
      .catch(err => { if (!this.stopped) this.d.log.warn({ err }, 'sync pass failed') })
      .finally(() => {
        this.running = undefined
        if (this.again && !this.stopped) { this.again = false; this.kick() }
      })
  }

  /** Resolves when no pass is running or pending: for tests and `install-now`. */
  async idle (): Promise<void> {
    while (this.running !== undefined) await this.running
  }

  /** A head pushed by a peer: checked like a polled one, then a pass runs. */
  onPush (channel: string, bytes: Uint8Array, from: PeerId): void {
    if (!this.d.cfg.channels.includes(channel)) return
    this.acceptHead(channel, bytes)
      .then(changed => { if (changed) this.kick() })
      .catch(err => this.d.log.warn({ err, from: from.toString(), channel }, 'pushed head refused'))
  }

  private async pass (): Promise<void> {
    await this.pollHeads()
    await this.findLabelMates()
    await this.site.refresh()
    if (this.paused) return
    for (const channel of this.d.cfg.channels) {
      const bytes = await loadHead(this.d.db, channel)
      if (bytes === null) continue
      const head = decodeHead(bytes).signed
      for (const [name, entry] of Object.entries(head.packages)) {
        if (this.stopped || this.paused) return
        try {
          await this.processRelease(head, name, entry)
        } catch (err) {
          if (this.stopped || this.paused) return
          await this.recordError(name, entry, err)
        }
      }
    }
  }

  private async pollHeads (): Promise<void> {
    for (const seed of this.seeds) {
      let heads: Map<string, Uint8Array>
      try {
        heads = await this.d.announce.fetchHeads(seed, this.d.cfg.channels, this.soft.signal)
      } catch (err) {
        this.d.log.warn({ err, seed: seed.toString() }, 'cannot reach seed')
        continue
      }
      for (const [channel, bytes] of heads) {
        try {
          await this.acceptHead(channel, bytes)
        } catch (err) {
          this.d.log.warn({ err, channel, seed: seed.toString() }, 'channel head refused')
        }
      }
      return // one seed that answers is enough; the swarm issue spreads the load
    }
  }

  /** With a site label, the seed's directory introduces the label mates mDNS cannot see. */
  private async findLabelMates (): Promise<void> {
    const label = this.d.cfg.site
    const seed = this.seeds[0]
    if (label === null || seed === undefined) return
    try {
      const addrs = this.d.node.getMultiaddrs().map(a => a.toString())
      for (const mate of await this.d.announce.siteMates(seed, label, addrs, this.soft.signal)) {
        await this.site.introduce(peerIdFromString(mate.id), mate.addrs).catch(() => {})
      }
    } catch (err) {
      this.d.log.debug({ err }, 'site directory unavailable')
    }
  }

  /** Verifies a head and keeps it when it moves the channel forward. Returns true when it did. */
  private async acceptHead (channel: string, bytes: Uint8Array): Promise<boolean> {
    try {
      const head = decodeHead(bytes)
      verifyHead(head, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace, expectChannel: channel })
      const lastBytes = await loadHead(this.d.db, channel)
      const advance = checkHeadAdvance(lastBytes === null ? null : decodeHead(lastBytes).signed, head.signed)
      this.headErrors.delete(channel)
      if (advance === 'same') return false
      await storeHead(this.d.db, channel, bytes)
      this.d.log.info({ channel, seq: head.signed.seq }, 'new channel head')
      return true
    } catch (err) {
      // An expired head is the freeze attack (or a seed that stopped re-signing): say so, install nothing from it.
      this.headErrors.set(channel, err instanceof ShoalError ? `${err.message} [${err.code}]` : String(err))
      if (err instanceof MetadataExpiredError) this.d.log.error({ channel, err }, 'channel head is stale: nothing new will install until a fresh head arrives')
      throw err
    }
  }

  private releaseKey (name: string, version: string): string {
    return `${name}@${version}`
  }

  private async processRelease (head: HeadBody, name: string, entry: HeadEntry): Promise<void> {
    const key = this.releaseKey(name, entry.version)
    const rec = await this.d.db.releases.get(key)
    const current = await this.d.installer.current(name)
    if (rec?.manifestId === entry.manifest && (rec.state === 'failed' || (rec.state === 'installed' && current === entry.version))) return
    if (rec === null && current === entry.version) return

    const { manifest, bytes } = await this.manifestFor(head, entry)
    const payload = openPayload(manifest, this.d.contentKey)
    const base: ReleaseRecord = {
      package: name, version: entry.version, manifestId: entry.manifest, channel: head.channel, seq: entry.seq,
      state: 'downloading', updatedAt: this.d.now().toISOString()
    }
    const cids = [...new Set(manifest.signed.chunks.map(c => c.cid))]
    await this.d.db.batch([
      this.d.db.manifests.putOp(entry.manifest, bytes),
      this.d.db.releases.putOp(key, base),
      ...this.d.db.blobIndex.addOps(key, cids)
    ])
    await this.download(key, entry.manifest, manifest)
    await this.setState(key, { ...base, state: 'installing' })
    await this.install(key, base, manifest, payload)
  }

  /** The manifest a verified head names, checked against that head (mix-and-match) and the root. */
  private async manifestFor (head: HeadBody, entry: HeadEntry): Promise<{ manifest: SignedManifest, bytes: Uint8Array }> {
    const bytes = await this.d.db.manifests.get(entry.manifest) ?? await this.fetchManifest(entry.manifest)
    const manifest = decodeManifest(bytes)
    const id = manifestId(bytes)
    checkManifestInHead(head, manifest, id)
    verifyManifest(manifest, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace, expectChannel: head.channel })
    return { manifest, bytes }
  }

  /**
   * A manifest by id, fetched once per site like a chunk: from a site member that holds it; else
   * the rendezvous owner of the id among the members asks the seed while the others wait up to
   * MANIFEST_WAIT_MS for a member to hold it (a 2.5 MB manifest fetched by every endpoint of a site
   * was 12 % of a small update's WAN bytes). Bytes from anyone are checked against the id by the caller.
   */
  private async fetchManifest (id: string): Promise<Uint8Array> {
    const fromMembers = async (): Promise<Uint8Array | null> => {
      for (const m of this.site.members.values()) {
        if (!m.haves.has(id) || this.scores.isBanned(m.id)) continue
        try {
          const b = await this.d.announce.fetchManifest(m.peerId, id, this.soft.signal)
          if (manifestId(b) === id) return b
        } catch { /* next member, then the seed */ }
      }
      return null
    }
    let bytes = await fromMembers()
    if (bytes !== null) return bytes
    const me = { id: this.d.node.peerId.toString(), weight: ownershipWeight(this.d.host) }
    const owner = rankOwners(id, [me, ...[...this.site.members.values()].map(m => ({ id: m.id, weight: m.weight }))])[0]
    if (owner?.id !== me.id) {
      const until = Date.now() + MANIFEST_WAIT_MS
      while (Date.now() < until && !this.soft.signal.aborted) {
        await new Promise(resolve => setTimeout(resolve, 250))
        bytes = await fromMembers()
        if (bytes !== null) return bytes
      }
    }
    let lastErr: unknown
    for (const seed of this.seeds) {
      try { return await this.d.announce.fetchManifest(seed, id, this.soft.signal) } catch (err) { lastErr = err }
    }
    throw lastErr instanceof Error ? lastErr : new ShoalError('ERR_NOT_FOUND', `manifest ${id} is on no seed`)
  }

  private async download (key: string, id: string, manifest: SignedManifest): Promise<void> {
    const table = distinctChunks(manifest.signed.chunks)
    const prog: ReleaseProgress = { blobs: 0, blobsTotal: table.length, bytes: 0, bytesTotal: table.reduce((n, c) => n + c.size, 0) }
    this.progress.set(key, prog)
    const have = new HaveMap(table.length)
    for (let i = 0; i < table.length; i += 256) {
      const present = await Promise.all(table.slice(i, i + 256).map(async c => await this.d.blobs.has(cidFromHex(c.cid))))
      present.forEach((p, k) => { if (p) { have.set(i + k); prog.blobs++; prog.bytes += (table[i + k] as ChunkRef).size } })
    }
    this.haveMaps.set(id, have)
    if (have.complete) return
    const seed = this.seeds[0] as Multiaddr
    let fetched = 0
    const fetch = new ReleaseFetch({
      self: this.d.node.peerId,
      release: id,
      chunks: manifest.signed.chunks,
      store: this.d.blobs,
      client: this.d.client,
      site: this.site,
      seed,
      bucket: this.d.bucket,
      wanRate: this.d.cfg.wanRate,
      weight: ownershipWeight(this.d.host),
      scores: this.scores,
      soft: AbortSignal.any([this.soft.signal, this.halt.signal]),
      hard: this.abort.signal,
      progress: prog,
      have,
      onBlob: async (from, bytes) => {
        fetched++
        const source = from === 'seed' ? 'seed' : 'lan'
        this.d.metrics.bytesReceived.inc({ source }, bytes)
        this.d.metrics.blobsReceived.inc({ source })
        await this.d.db.counters.add(`bytes.${source}`, bytes)
      },
      onBadBlob: (peer, banned) => {
        this.d.metrics.badBlobs.inc({ source: 'lan' })
        this.d.log.warn({ peer, banned }, banned ? 'peer banned after blobs that failed their cid' : 'a blob from a peer failed its cid')
      },
      log: (msg, fields) => this.d.log.debug(fields ?? {}, msg)
    })
    this.fetches.set(id, fetch)
    try {
      await fetch.run()
    } finally {
      this.fetches.delete(id)
      if (fetched > 0) await syncFilesystem(this.d.cfg.stateDir)
    }
    this.d.log.info({ release: key, fetched, bytes: prog.bytes }, 'release downloaded')
  }

  private async install (key: string, base: ReleaseRecord, manifest: SignedManifest, payload: ManifestPayload): Promise<void> {
    const chunks = manifest.signed.chunks
    const byPath = new Map<string, FileEntry>(payload.files.map(f => [f.path, f]))
    const getBlob = async (cid: Uint8Array, size: number): Promise<Uint8Array> => {
      const blob = await this.d.blobs.get(cid, { maxSize: size }) // reads stop at the signed length
      if (blob === null) throw new MissingBlobError(Buffer.from(cid).toString('hex'), this.d.blobs.dir)
      return blob
    }
    try {
      const res = await this.d.installer.install({
        package: manifest.signed.package,
        version: manifest.signed.version,
        files: payload.files as InstallFile[],
        ...(payload.hooks !== undefined ? { hooks: payload.hooks } : {}),
        open: (file) => fileBytes(byPath.get(file.path) as FileEntry, chunks, getBlob)
      }, { hookTimeoutMs: this.d.cfg.hookTimeout })
      this.d.metrics.installs.inc({ result: res.status })
      await this.setState(key, { ...base, state: 'installed', previous: res.previous })
      this.d.log.info({ release: key, status: res.status, previous: res.previous }, 'release installed')
      await this.retain(manifest.signed.package, res.previous)
    } catch (err) {
      if (!(err instanceof HookFailedError)) throw err
      this.d.metrics.installs.inc({ result: 'failed' })
      await this.setState(key, {
        ...base,
        state: 'failed',
        error: { code: err.code, message: err.message, exitCode: err.exitCode ?? undefined, logTail: err.logTail }
      })
      this.d.log.error({ release: key, hook: err.hook, exitCode: err.exitCode, active: err.activeVersion }, 'install failed; previous version kept')
    }
  }

  /** Keeps the installed and the previous version (trees and blobs: the next delta's base); drops the rest. */
  private async retain (pkg: string, previous: string | null): Promise<void> {
    const current = await this.d.installer.current(pkg)
    const keepSet = new Set([current, previous].filter((v): v is string => v !== null))
    await this.d.installer.prune(pkg, [...keepSet])
    for await (const [key, rec] of this.d.db.releases.entries({ gte: `${pkg}@`, lt: `${pkg}A` })) {
      if (rec.package !== pkg || keepSet.has(rec.version)) continue
      if (rec.state === 'downloading' || rec.state === 'installing') continue
      this.haveMaps.delete(rec.manifestId)
      const orphans = await this.d.db.blobIndex.removeRelease(key)
      for (const cid of orphans) await this.d.blobs.delete(cidFromHex(cid))
      if (rec.state !== 'superseded') await this.setState(key, { ...rec, state: 'superseded' })
    }
  }

  private async setState (key: string, rec: ReleaseRecord): Promise<void> {
    await this.d.db.releases.put(key, { ...rec, updatedAt: this.d.now().toISOString() })
  }

  private async recordError (name: string, entry: HeadEntry, err: unknown): Promise<void> {
    const key = this.releaseKey(name, entry.version)
    const e = err instanceof ShoalError ? { code: err.code, message: err.message } : { code: 'ERR_INTERNAL', message: String((err as Error)?.message ?? err) }
    this.d.log.warn({ release: key, err }, 'release not installed yet')
    const rec = await this.d.db.releases.get(key)
    if (rec !== null) await this.setState(key, { ...rec, error: e })
    else {
      // Refused before anything was recorded: remember why, for status and reports. A refusal on
      // trust (bad signature, mix-and-match) waits for a new head; a network failure (the manifest
      // fetch timed out, the seed was away) is retried at the next pass.
      await this.setState(key, {
        package: name, version: entry.version, manifestId: entry.manifest, state: isTransient(err) ? 'announced' : 'failed', updatedAt: '', error: e
      })
    }
  }

  async packages (): Promise<PackageStatus[]> {
    const out = new Map<string, PackageStatus>()
    for (const pkg of await this.d.installer.packages()) {
      out.set(pkg, { name: pkg, installed: await this.d.installer.current(pkg), target: null, state: 'idle', channel: null })
    }
    for (const channel of this.d.cfg.channels) {
      const bytes = await loadHead(this.d.db, channel)
      if (bytes === null) continue
      for (const [name, entry] of Object.entries(decodeHead(bytes).signed.packages)) {
        const key = this.releaseKey(name, entry.version)
        const rec = await this.d.db.releases.get(key)
        const st: PackageStatus = out.get(name) ?? { name, installed: await this.d.installer.current(name), target: null, state: 'idle', channel }
        st.target = entry.version
        st.channel = channel
        st.state = rec?.state ?? 'announced'
        const prog = this.progress.get(key)
        if (prog !== undefined) st.progress = { ...prog }
        if (rec?.error !== undefined) st.error = rec.error
        out.set(name, st)
      }
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  async heads (): Promise<HeadStatus[]> {
    const out: HeadStatus[] = []
    for (const channel of this.d.cfg.channels) {
      const bytes = await loadHead(this.d.db, channel)
      const err = this.headErrors.get(channel)
      if (bytes === null) { if (err !== undefined) out.push({ channel, seq: 0, issued: '', expires: '', stale: true, error: err }); continue }
      const h = decodeHead(bytes).signed
      const stale = Date.parse(h.expires) + this.d.cfg.expiryGrace * 1000 < this.d.now().getTime()
      out.push({ channel, seq: h.seq, issued: h.issued, expires: h.expires, stale, ...(err !== undefined ? { error: err } : {}) })
    }
    return out
  }
}
