// The endpoint role: learn channel heads from the seeds, verify root → head → manifest, fetch the
// blobs this machine lacks, install atomically, keep what the next update will need.
//
// Each step leaves a record in the state database before the next begins, so a restart (or a
// kill -9) resumes where it stopped: blobs already on disk are never fetched again, an install
// cut short is recovered by the installer into the old tree or the new one, then retried.
import type { PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { CoalescedTask } from '../core/coalesced.js'
import { ShoalError } from '../core/errors.js'
import { checkHeadAdvance, checkManifestInHead, decodeHead, verifyHead, type HeadBody, type HeadEntry } from '../core/head.js'
import { ChunkTable, compactPayload, type CompactPayload, type PayloadLike } from '../core/chunk-table.js'
import { decodeManifest, manifestId, manifestTable, openPayload, verifyManifest, type ManifestPayload, type ManifestTable, type SignedManifest } from '../core/manifest.js'
import type { SignedRoot } from '../core/root.js'
import { BlobAuthError, cidFromHex, cidToHex } from '../core/seal.js'
import { MetadataExpiredError } from '../core/signed.js'
import { HookFailedError } from '../install/errors.js'
import type { Installer } from '../install/installer.js'
import { releaseSpec } from '../install/release-source.js'
import type { BlobClient } from '../net/blobs.js'
import { sha256Hex, type BlobStorage } from '../store/blob-store.js'
import { BlobVerifyError } from '../net/errors.js'
import { OriginClient } from '../net/origin-client.js'
import { isDiskFull, StorageFullError, syncFilesystem } from '../store/fs-util.js'
import { CounterBatch, type ReleaseRecord, type StateDb, type StateOp } from '../store/state-db.js'
import { HaveMap } from '../swarm/have-map.js'
import { ownershipWeight, rankOwners } from '../swarm/ownership.js'
import { PeerScores } from '../swarm/peer-scores.js'
import { gcAfterManifest } from './gc.js'
import { ReleaseFetch } from '../swarm/release-fetch.js'
import { Site, type SiteMember } from '../swarm/site.js'
import type { TokenBucket } from '../swarm/token-bucket.js'
import { originSource, seedSource, WanSources } from '../swarm/wan-sources.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ShoalNode } from '../net/node.js'
import type { HostInfo } from './host-info.js'
import { loadHead, storeHead, type Announce, type FetchedManifest, type ManifestBase } from './announce.js'
import type { TrustedRoot } from './trusted-root.js'
import type { DaemonConfig } from './config.js'
import { DeltaDownload, heldReleases, presentMap, type DeltaFallback } from './delta-download.js'
import type { Logger } from './log.js'
import type { ByteSource, DaemonMetrics } from './metrics.js'
import { ringState, type RingState } from '../rollout/policy.js'
import type { RecordStore } from '../rollout/record-store.js'
import { describeRecord } from '../rollout/records.js'
import { runNotify } from '../rollout/notify.js'

/** Errors of availability, not of trust: worth retrying at the next pass. */
const TRANSIENT = /^ERR_(NET_|PEER_CONNECTION|PEER_PROTOCOL|RPC_REMOTE|NOT_FOUND|ABORTED|ADMISSION|STREAM_|BLOB_NOT_FOUND|BLOB_BUSY|BLOB_REMOTE|PAUSED|FRAME_|DISK_FULL)/
function isTransient (err: unknown): boolean {
  return !(err instanceof ShoalError) || TRANSIENT.test(err.code)
}
/** A site member not the manifest's owner waits this long for a member to hold it before asking the seed. */
const MANIFEST_WAIT_MS = 5_000

/** Blobs read at a time when a failed install checks a release's blobs against their cids. */
const CHECK_WINDOW = 64

/** How long stop() lets requests in flight finish. */
const STOP_GRACE_MS = 5_000
/** A download's bytes-by-source counters reach the state db at most this often (CounterBatch). */
const COUNTER_FLUSH_MS = 250

/**
 * A pass that failed for availability (seed away, blobs on no source) is retried after
 * RETRY_MIN_MS, doubling up to pollInterval, each delay drawn in its upper half: a seed back from a
 * restart is noticed within seconds rather than a poll interval, one that stays away costs each
 * endpoint at most one attempt per pollInterval, and a fleet does not come back in step.
 */
export const RETRY_MIN_MS = 1_000
export function retryDelay (attempt: number, pollInterval: number, random = Math.random()): number {
  const cap = Math.min(pollInterval, RETRY_MIN_MS * 2 ** Math.min(attempt, 30))
  return Math.round(cap * (0.5 + random / 2))
}

export interface EndpointDeps {
  node: ShoalNode
  host: HostInfo
  db: StateDb
  blobs: BlobStorage
  client: BlobClient
  announce: Announce
  installer: Installer
  bucket: TokenBucket
  /** The trusted root (read at each check: `trust` may rotate it). */
  root: SignedRoot
  trust: TrustedRoot
  contentKey: Uint8Array
  cfg: DaemonConfig
  log: Logger
  metrics: DaemonMetrics
  now: () => Date
  /** Called after each release state write (the fleet reporter sends a report). */
  onStateChange?: () => void
  /** Accepted control records (promote, halt, rollback). */
  records: RecordStore
}

/** A release's rollout gate for this endpoint's ring, as last evaluated (docs/rollout.md §4). */
export type GateStatus = RingState

export class RollbackTargetError extends ShoalError {
  constructor (release: string, to: string, why: string) {
    super('ERR_ROLLBACK_TARGET', `cannot roll ${release} back to ${to}: ${why}; the current version is kept (publish ${to} again as a new version to get there)`)
  }
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
  /** The rollout gate of the target release for this ring (waiting-for-ring: why, and when it opens). */
  gate?: GateStatus
  /** state 'deferred': when the notify command is asked again. */
  deferUntil?: string
  /** state 'halted' by a rollback record: the version endpoints go back to. */
  rollbackTo?: string
}

/** `/status` `disk`: whether the last pass stopped on a full disk (state dir or install root), and which. */
export interface DiskStatus { full: boolean, path?: string, code?: string, message?: string, since?: string }

export interface HeadStatus { channel: string, seq: number, issued: string, expires: string, stale: boolean, error?: string }

/** The trusted root: its version, and why the last new root offered by a seed was refused. */
export interface RootStatus { version: number, expires: string, error?: string }

/** Root versions walked in one pass at most (each is an RPC and two threshold checks). */
const MAX_ROOT_STEPS = 16

export class Endpoint {
  private timer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  /** Passes in a row that failed for availability (retryDelay). */
  private retries = 0
  /** Sync passes, one at a time; a kick during a pass runs one more after it. */
  private readonly passes = new CoalescedTask(async () => await this.pass(), err => { this.d.log.warn({ err }, 'sync pass failed') })
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
  private rootError: string | undefined
  /** Set when a pass stopped on a full disk; cleared by the next pass that does not (space came back). */
  diskFull: { path: string, message: string, since: string } | undefined
  /** The last delta that did not rebuild (its chunks were fetched whole), for status. */
  lastDeltaFallback: DeltaFallback | undefined
  private readonly seeds: Multiaddr[]
  /** Static-HTTP origins: WAN sources after the seeds (heads, manifests, blobs). */
  private readonly origins: OriginClient[]
  private readonly wan: WanSources
  /** Head polls start at a different source each pass (spreads the load, outruns a stale one). */
  private pollTurn = Math.floor(Math.random() * 1024)
  /** Some seed or origin answered this pass's head poll: a failed blob request is then retried a while (ReleaseFetch's wanGraceMs). */
  private wanReached = true

  constructor (private readonly d: EndpointDeps) {
    this.seeds = d.cfg.seeds.map(s => multiaddr(s))
    this.origins = d.cfg.origins.map(u => new OriginClient(u))
    this.wan = new WanSources([...this.seeds.map(s => seedSource(d.client, s)), ...this.origins.map(originSource)], d.bucket, (source, cid, err) => {
      if (err instanceof BlobVerifyError) {
        d.metrics.badBlobs.inc({ source: source.kind })
        d.log.warn({ source: source.name, cid, err }, 'a WAN blob failed its cid (tampered or broken mirror); asking the next source')
      } else {
        d.log.warn({ source: source.name, cid, err }, 'WAN source failed; asking the next source')
      }
    })
    this.site = new Site(d.node, d.cfg.site, {
      haves: () => new Map([...this.haveMaps].map(([id, m]) => [id, m.encode()])),
      // A release not being fetched (installed, or paused) wants exactly what it holds: with delta
      // blobs an installed release lacks the deltas it did not need, and must not own them.
      wants: () => new Map([...this.haveMaps].flatMap(([id, have]) => {
        const f = this.fetches.get(id)
        const w = f !== undefined ? f.wantBits : have.complete ? undefined : have.encode()
        return w === undefined ? [] : [[id, w] as const]
      })),
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
    // Releases installed here are served to the site: every chunk, and the delta blobs fetched for them.
    for await (const [, rec] of this.d.db.releases.entries()) {
      if (rec.state !== 'installed' && rec.state !== 'waiting-for-ring' && rec.state !== 'deferred') continue
      const bytes = await this.d.db.manifests.get(rec.manifestId)
      if (bytes !== null) this.haveMaps.set(rec.manifestId, await presentMap(ChunkTable.of(decodeManifest(bytes).signed.chunks).distinct().table, this.d.blobs))
    }
    await this.site.start()
    // A pass under way has just polled, and a failed one has its retry scheduled sooner: the tick
    // would only queue a second pass right behind them.
    this.timer = setInterval(() => { if (!this.passes.busy && this.retryTimer === undefined) this.kick() }, this.d.cfg.pollInterval)
    this.timer.unref()
    this.kick()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.retryTimer)
    this.soft.abort()
    // Blobs in flight are let land (a restart would fetch them again otherwise), within reason.
    const hard = setTimeout(() => { this.abort.abort() }, STOP_GRACE_MS)
    await this.passes.stop()
    clearTimeout(hard)
    this.abort.abort()
    for (const o of this.origins) o.close()
    await this.site.stop()
  }

  /** Runs a sync pass now (or right after the one running). */
  kick (): void {
    if (!this.stopped) this.passes.request()
  }

  /** Resolves when no pass is running or pending: for tests and `install-now`. */
  async idle (): Promise<void> {
    await this.passes.idle()
  }

  /** A head pushed by a peer: checked like a polled one, then a pass runs. */
  onPush (channel: string, bytes: Uint8Array, from: PeerId): void {
    if (!this.d.cfg.channels.includes(channel)) return
    this.acceptHead(channel, bytes)
      .then(changed => { if (changed) this.kick() })
      .catch(err => this.d.log.warn({ err, from: from.toString(), channel }, 'pushed head refused'))
  }

  /** A control record pushed by a peer: verified and replay-checked like a polled one, then a pass runs. */
  onPushRecord (bytes: Uint8Array, from: PeerId): void {
    this.acceptRecord(bytes)
      .then(isNew => { if (isNew) this.kick() })
      .catch(err => this.d.log.warn({ err, from: from.toString() }, 'pushed control record refused'))
  }

  private async acceptRecord (bytes: Uint8Array): Promise<boolean> {
    const r = await this.d.records.accept(bytes, this.d.now())
    if (r.outcome === 'new') this.d.log.info({ record: describeRecord(r.record.signed), id: r.id }, 'control record accepted')
    return r.outcome === 'new'
  }

  /** The control records of the packages my heads name, from the first seed that answers. */
  private async pollRecords (): Promise<void> {
    const packages = new Set<string>()
    for (const channel of this.d.cfg.channels) {
      const bytes = await loadHead(this.d.db, channel)
      if (bytes !== null) for (const name of Object.keys(decodeHead(bytes).signed.packages)) packages.add(name)
    }
    if (packages.size === 0) return
    for (const seed of this.seeds) {
      let records: Uint8Array[]
      try {
        records = await this.d.announce.fetchRecords(seed, [...packages], this.soft.signal)
      } catch (err) {
        this.d.log.debug({ err, seed: seed.toString() }, 'records not available from seed')
        continue
      }
      for (const bytes of records) {
        try { await this.acceptRecord(bytes) } catch (err) { this.d.log.warn({ err, seed: seed.toString() }, 'control record refused') }
      }
      return
    }
  }

  private async pass (): Promise<void> {
    this.wanReached = await this.pollHeads()
    await this.pollRecords()
    await this.findLabelMates()
    await this.site.refresh()
    if (this.paused) return
    let unavailable = false
    let full: StorageFullError | undefined
    for (const channel of this.d.cfg.channels) {
      const bytes = await loadHead(this.d.db, channel)
      if (bytes === null) continue
      const head = decodeHead(bytes).signed
      for (const [name, entry] of Object.entries(head.packages)) {
        if (this.stopped || this.paused) return
        try {
          await this.processRelease(head, name, entry)
          // Space came back for this release: say so now, not after the rest of the pass.
          if (full === undefined) this.diskSpaceBack()
        } catch (e) {
          if (this.stopped || this.paused) return
          // A full disk anywhere below (a store write, the DB, a LAN or WAN blob landing) is one typed error.
          const err = e instanceof StorageFullError || !isDiskFull(e) ? e : new StorageFullError(this.d.cfg.stateDir, 'the state directory', { cause: e })
          if (isTransient(err)) unavailable = true
          if (err instanceof StorageFullError) {
            full = err
            if (this.diskFull?.path !== err.path) this.d.log.error({ err, path: err.path }, 'disk full: downloads and installs wait until space is freed')
            this.diskFull = { path: err.path, message: err.message, since: this.diskFull?.since ?? this.d.now().toISOString() }
          }
          // with the state dir full, even this write may fail; the error stays in /status (diskFull) and the log
          await this.recordError(name, entry, err).catch(err2 => { this.d.log.warn({ err: err2 }, 'cannot record the error') })
        }
      }
    }
    if (full === undefined) this.diskSpaceBack()
    if (!unavailable) { this.retries = 0; return }
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.kick() }, retryDelay(this.retries++, this.d.cfg.pollInterval))
    this.retryTimer.unref()
  }

  private diskSpaceBack (): void {
    if (this.diskFull === undefined) return
    this.d.log.info({ path: this.diskFull.path }, 'disk space is back')
    this.diskFull = undefined
  }

  /**
   * Walks the root chain (docs/protocol.md §1.4) once a seed's heads reply says it trusts a newer
   * root than mine: asks that seed, then the others, for version + 1 until none has it. A root is
   * taken only when signed by a threshold of the trusted root keys and of its own; one refused is
   * logged and shown in status, and the next seed is asked. When the online role changed, the
   * accepted heads are forgotten (TUF §5.3.11): a head fast-forwarded by a stolen online key
   * would otherwise refuse every honest head signed after the rotation.
   */
  private async walkRoots (first: Multiaddr): Promise<void> {
    const order = [first, ...this.seeds.filter(s => s !== first)]
    for (let step = 0; step < MAX_ROOT_STEPS; step++) {
      const version = this.d.trust.current.signed.version + 1
      let advanced = false
      for (const seed of order) {
        let bytes: Uint8Array
        try {
          bytes = await this.d.announce.fetchRoot(seed, version, this.soft.signal)
        } catch (err) {
          this.d.log.debug({ err, seed: seed.toString(), version }, 'no newer root from seed')
          continue
        }
        try {
          const r = await this.d.trust.advance(bytes, this.d.now(), this.d.cfg.expiryGrace)
          this.rootError = undefined
          this.d.log.warn({ version, onlineChanged: r.onlineChanged, publisherChanged: r.publisherChanged, seed: seed.toString() }, 'new root accepted')
          if (r.onlineChanged) {
            for (const channel of this.d.cfg.channels) await this.d.db.heads.del(channel)
            this.d.log.warn({ channels: this.d.cfg.channels }, 'the online key changed: accepted heads forgotten, the next head may restart its sequence')
          }
          advanced = true
          break
        } catch (err) {
          this.rootError = err instanceof ShoalError ? `root.json v${version} from ${seed.toString()}: ${err.message} [${err.code}]` : String(err)
          this.d.log.error({ err, seed: seed.toString(), version }, 'new root refused; the trusted root is kept')
        }
      }
      if (!advanced) return
    }
  }

  /**
   * Heads from the seeds and origins, one source per pass when it gives a good head for every
   * channel followed; a source that is unreachable, lacks a channel or sends a refused head (stale,
   * tampered: a malicious mirror) passes the turn to the next. False when none answered.
   */
  private async pollHeads (): Promise<boolean> {
    const channels = this.d.cfg.channels
    const sources: Array<{ name: string, seed?: Multiaddr, heads: () => Promise<{ heads: Map<string, Uint8Array>, root?: number }> }> = [
      ...this.seeds.map(seed => ({ name: seed.toString(), seed, heads: async () => await this.d.announce.fetchHeadsAndRoot(seed, channels, this.soft.signal) })),
      ...this.origins.map(o => ({ name: o.base, heads: async () => ({ heads: await o.heads(channels, this.soft.signal) }) }))
    ]
    const start = this.pollTurn++ % Math.max(1, sources.length)
    let reached = sources.length === 0
    for (const src of [...sources.slice(start), ...sources.slice(0, start)]) {
      let heads: Map<string, Uint8Array>
      try {
        const r = await src.heads()
        heads = r.heads
        // A newer root first: heads signed by a rotated online key verify only under it.
        if (src.seed !== undefined && r.root !== undefined && r.root > this.d.trust.current.signed.version) await this.walkRoots(src.seed)
      } catch (err) {
        this.d.log.warn({ err, source: src.name }, 'cannot reach seed or origin')
        continue
      }
      let good = 0
      for (const [channel, bytes] of heads) {
        try {
          await this.acceptHead(channel, bytes)
          good++
        } catch (err) {
          this.d.log.warn({ err, channel, source: src.name }, 'channel head refused')
        }
      }
      reached = true
      if (good === channels.length) return true
    }
    return reached
  }

  /** With a site label, the seed's directory introduces the label mates mDNS cannot see. */
  private async findLabelMates (): Promise<void> {
    const label = this.d.cfg.site
    if (label === null) return
    // Each seed's directory is its own: every endpoint asks the first seed that answers, in config
    // order, so label mates meet at the same one, and at the next when it is down.
    for (const seed of this.seeds) {
      try {
        const addrs = this.d.node.getMultiaddrs().map(a => a.toString())
        for (const mate of await this.d.announce.siteMates(seed, label, addrs, this.soft.signal)) {
          await this.site.introduce(peerIdFromString(mate.id), mate.addrs).catch(() => {})
        }
        return
      } catch (err) {
        this.d.log.debug({ err, seed: seed.toString() }, 'site directory unavailable')
      }
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
    const control = await this.d.records.control(name, entry.version)
    if (control.rollbackTo !== undefined) { await this.rollBack(name, head, entry, rec, current, control.rollbackTo); return }
    if (rec?.manifestId === entry.manifest && (rec.state === 'failed' || rec.state === 'halted' || (rec.state === 'installed' && current === entry.version))) return
    if (rec === null && current === entry.version) return
    // Halted before anything was fetched: nothing is fetched.
    if (control.halted && current !== entry.version) { await this.markHalted(name, head, entry, rec); return }

    const base: ReleaseRecord = {
      package: name, version: entry.version, manifestId: entry.manifest, channel: head.channel, seq: entry.seq,
      state: 'downloading', updatedAt: this.d.now().toISOString()
    }
    const waiting = rec?.manifestId === entry.manifest && (rec.state === 'waiting-for-ring' || rec.state === 'deferred')
    const { manifest, payload } = await this.openRelease(head, name, entry, waiting ? undefined : { key, rec: base })
    // Bytes move as soon as the release is announced; the ring decides only when it installs.
    if (!waiting || !this.haveMaps.has(entry.manifest)) await this.download(key, entry.manifest, manifest, payload)
    const now = this.d.now()
    const gate = ringState(manifest.signed.rollout, this.d.cfg.ring, now, { promoted: control.promoted, halted: control.halted })
    if (!gate.open) {
      if (rec?.state !== 'waiting-for-ring' || (rec.gate as GateStatus | undefined)?.reason !== gate.reason) {
        this.d.log.info({ release: key, ring: this.d.cfg.ring, reason: gate.reason, opensAt: gate.opensAt }, 'downloaded; waiting for its ring')
      }
      await this.setState(key, { ...base, state: 'waiting-for-ring', gate })
      return
    }
    if (this.d.cfg.notify !== null) {
      const due = gate.deadline !== undefined && now.getTime() >= Date.parse(gate.deadline)
      const deferUntil = rec?.state === 'deferred' && typeof rec.deferUntil === 'string' ? rec.deferUntil : undefined
      if (!due && deferUntil !== undefined && Date.parse(deferUntil) > now.getTime()) return
      const answer = await runNotify(this.d.cfg.notify, {
        event: 'install', package: name, version: entry.version, previous: current, channel: head.channel, ring: this.d.cfg.ring,
        notes: payload.notes ?? null, deadline: gate.deadline ?? null, due
      }, { timeoutMs: this.d.cfg.hookTimeout, now })
      this.d.log.info({ release: key, exitCode: answer.result.exitCode, reason: answer.reason }, 'notify command ran')
      if (!answer.install) {
        await this.setState(key, { ...base, state: 'deferred', gate, deferUntil: answer.deferUntil })
        return
      }
    }
    // A halt that arrived while this release downloaded or the user was asked still stops it: the install has not started.
    if ((await this.d.records.control(name, entry.version)).halted) { await this.markHalted(name, head, entry, base); return }
    await this.setState(key, { ...base, state: 'installing', gate })
    await this.install(key, base, manifest, payload)
  }

  private async markHalted (name: string, head: HeadBody, entry: HeadEntry, rec: ReleaseRecord | null, rollbackTo?: string): Promise<void> {
    if (rec?.state === 'halted' && rec.rollbackTo === rollbackTo) return
    const key = this.releaseKey(name, entry.version)
    const { gate: _g, deferUntil: _d, ...base } = rec ?? { package: name, version: entry.version, manifestId: entry.manifest, channel: head.channel, seq: entry.seq, state: 'halted', updatedAt: '' }
    await this.setState(key, { ...base, state: 'halted', ...(rollbackTo !== undefined ? { rollbackTo } : {}) })
    this.d.log.warn({ release: key, rollbackTo }, rollbackTo !== undefined ? 'release rolled back by a signed record' : 'release halted by a signed record: not installed')
  }

  /**
   * A rollback record for the release the head names: an endpoint running it reinstalls `to` from
   * the blobs it still holds (retention keeps the previous version's; any missing are fetched),
   * through the installer — the same tree byte for byte, hooks run, `current` switched atomically.
   */
  private async rollBack (name: string, head: HeadBody, entry: HeadEntry, rec: ReleaseRecord | null, current: string | null, to: string): Promise<void> {
    const key = this.releaseKey(name, entry.version)
    if (current !== entry.version) { await this.markHalted(name, head, entry, rec, to); return }
    const toKey = this.releaseKey(name, to)
    const target = await this.d.db.releases.get(toKey)
    if (target === null) throw new RollbackTargetError(key, to, 'this endpoint never installed it')
    // Once only: a reinstall whose hook failed is not retried on every pass.
    if (target.state === 'failed') throw new RollbackTargetError(key, to, `reinstalling it failed${target.error !== undefined ? ` (${target.error.message})` : ''}`)
    const bytes = await this.d.db.manifests.get(target.manifestId)
    if (bytes === null) throw new RollbackTargetError(key, to, 'its manifest is no longer held here')
    const manifest = decodeManifest(bytes)
    if (manifestId(bytes) !== target.manifestId || manifest.signed.package !== name || manifest.signed.version !== to) throw new RollbackTargetError(key, to, 'the manifest held for it does not match')
    verifyManifest(manifest, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace })
    const payload = openPayload(manifest, this.d.contentKey)
    this.d.log.warn({ release: key, to }, 'rolling back')
    const { error: _e, previous: _p, ...base } = target
    await this.d.db.releases.put(toKey, { ...base, state: 'downloading', updatedAt: this.d.now().toISOString() })
    await this.d.db.blobIndex.add(toKey, [...new Set(manifest.signed.chunks.map(c => c.cid))])
    const table = manifestTable(manifest)
    await this.download(toKey, target.manifestId, table, payload)
    await this.setState(toKey, { ...base, state: 'installing' })
    await this.install(toKey, { ...base, state: 'installing' }, table, payload)
    if (await this.d.installer.current(name) === to) await this.markHalted(name, head, entry, await this.d.db.releases.get(key), to)
  }

  /**
   * The manifest a verified head names, verified, its payload opened; of the manifest only the
   * table is returned (a full SignedManifest kept by processRelease held its sealed payload text
   * through the whole download).
   */
  private async openRelease (head: HeadBody, name: string, entry: HeadEntry, record?: { key: string, rec: ReleaseRecord }): Promise<{ manifest: ManifestTable, payload: CompactPayload }> {
    const { table, payload, bytes, held } = await this.openedManifest(head, name, entry)
    if (record !== undefined) {
      // The manifest, then the record: a crash before the index is complete leaves it
      // 'downloading', and the next pass adds the index again (idempotent) before anything is
      // fetched; a crash before the record leaves a manifest file the next pass finds held.
      // Stored here (unless read from here) so the manifest's bytes (12 MiB at 1 GiB) are not
      // held by processRelease's frame for the download.
      if (!held) await this.d.db.manifests.put(entry.manifest, bytes)
      await this.d.db.releases.put(record.key, record.rec)
      await this.d.db.blobIndex.add(record.key, table.signed.chunks.cidRecords())
      this.d.onStateChange?.()
    }
    return { manifest: table, payload }
  }

  /**
   * The verified manifest in the compact forms kept through download and install
   * (src/core/chunk-table.ts): ~4 MB at 1 GiB where the decoded document and its opened payload
   * held ~25 MB of objects and strings through the whole download.
   */
  private async openedManifest (head: HeadBody, name: string, entry: HeadEntry): Promise<{ table: ManifestTable, payload: CompactPayload, bytes: Uint8Array, held: boolean }> {
    const { manifest, bytes, held } = await this.manifestFor(head, name, entry)
    const opened = { table: manifestTable(manifest), payload: compactPayload(openPayload(manifest, this.d.contentKey)), bytes, held }
    gcAfterManifest(bytes) // the decrypted payload, its tree, the decoded manifest
    return opened
  }

  /**
   * The manifest a verified head names, checked against that head (mix-and-match) and the root;
   * `held`: its bytes came from this state dir (checked against the id like fetched ones), so
   * they need not be written again.
   */
  private async manifestFor (head: HeadBody, name: string, entry: HeadEntry): Promise<{ manifest: SignedManifest, bytes: Uint8Array, held: boolean }> {
    const stored = await this.d.db.manifests.get(entry.manifest)
    const held = stored !== null
    const bytes = stored ?? await this.fetchManifest(entry.manifest, name, entry.version, head.channel)
    if (!held) gcAfterManifest(bytes) // the fetch's transport buffers (src/daemon/gc.ts); a file read leaves none
    const manifest = decodeManifest(bytes)
    const id = manifestId(bytes)
    checkManifestInHead(head, manifest, id)
    verifyManifest(manifest, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace, expectChannel: head.channel })
    gcAfterManifest(bytes) // the JSON text and its parsed tree
    return { manifest, bytes, held }
  }

  /**
   * A manifest by id, fetched once per site like a chunk: from a site member that holds it; else
   * the rendezvous owner of the id among the members asks the seed while the others wait up to
   * MANIFEST_WAIT_MS for a member to hold it (a 2.5 MB manifest fetched by every endpoint of a site
   * was 12 % of a small update's WAN bytes). Bytes from anyone are checked against the id by the caller.
   */
  private async fetchManifest (id: string, name: string, version: string, channel: string): Promise<Uint8Array> {
    const base = await this.manifestBase(name, channel, id)
    const via = async (peer: PeerId | Multiaddr, source: 'seed' | 'lan'): Promise<Uint8Array> => {
      const got = await this.d.announce.fetchManifest(peer, id, this.soft.signal, base)
      await this.countManifest(source, got.wireBytes, got.via)
      if (got.refusal !== undefined) this.d.log.warn({ peer: peer.toString(), id, err: got.refusal }, 'manifest delta refused; fetched the full manifest')
      return got.bytes
    }
    const fromMembers = async (): Promise<Uint8Array | null> => {
      for (const m of this.site.members.values()) {
        if (!m.haves.has(id) || this.scores.isBanned(m.id)) continue
        try {
          const b = await via(m.peerId, 'lan')
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
      // A seed's bytes are checked against the id here, like a member's: the caller's check would
      // refuse them as mix-and-match, a trust failure that marks the release failed, though the
      // next seed may hold the right manifest (a lying or broken seed must cost a retry, not the release).
      try {
        const b = await via(seed, 'seed')
        if (manifestId(b) === id) return b
        lastErr = new ShoalError('ERR_MIX_AND_MATCH', `seed ${seed.toString()} serves another manifest than ${id} the head names (tampered or broken seed)`)
      } catch (err) { lastErr = err }
      this.d.log.warn({ seed: seed.toString(), release: `${name}@${version}`, id, err: lastErr }, 'manifest not available from seed; asking the next source')
    }
    for (const o of this.origins) {
      try {
        const b = await o.manifest(name, version, this.soft.signal)
        await this.countManifest('origin', b.length, 'full')
        if (manifestId(b) === id) return b
        lastErr = new ShoalError('ERR_MIX_AND_MATCH', `origin ${o.base} serves ${name}@${version} with another manifest than the head names (stale or tampered origin)`)
        this.d.log.warn({ origin: o.base, release: `${name}@${version}`, id }, 'origin manifest refused: not the one the head names')
      } catch (err) { lastErr = err }
    }
    throw lastErr instanceof Error ? lastErr : new ShoalError('ERR_NOT_FOUND', `manifest ${id} is on no seed or origin`)
  }

  /**
   * The manifest offered as base of a manifest delta: the installed release's if it is of this
   * channel, else the highest seq held of the package on the channel. Peers answer the full
   * manifest when they do not hold it, and the rebuilt bytes are checked against the id anyway.
   */
  private async manifestBase (name: string, channel: string, except: string): Promise<ManifestBase | undefined> {
    const current = await this.d.installer.current(name)
    const seq = (r: ReleaseRecord): number => typeof r.seq === 'number' ? r.seq : 0
    let best: ReleaseRecord | undefined
    for await (const [, rec] of this.d.db.releases.entries({ gte: `${name}@`, lt: `${name}A` })) {
      if (rec.package !== name || rec.channel !== channel || rec.manifestId === except) continue
      if (rec.version === current && rec.state === 'installed') { best = rec; break }
      if (best === undefined || seq(rec) > seq(best)) best = rec
    }
    if (best === undefined) return undefined
    const bytes = await this.d.db.manifests.get(best.manifestId)
    return bytes === null ? undefined : { id: best.manifestId, bytes }
  }

  /** Manifest bytes received per source, apart from blob bytes (the bench splits the uplink's bytes by them). */
  private async countManifest (source: ByteSource, bytes: number, via: FetchedManifest['via']): Promise<void> {
    this.d.metrics.manifestBytesReceived.inc({ source }, bytes)
    await this.d.db.counters.add(`manifest.${source}`, bytes)
    if (via !== 'full') await this.d.db.counters.add(`manifest.${via === 'delta' ? 'deltas' : via === 'patch' ? 'patches' : 'refused'}`, 1)
  }

  private async download (key: string, id: string, manifest: ManifestTable, payload: PayloadLike): Promise<void> {
    const { table } = manifest.signed.chunks.distinct()
    const have = await presentMap(table, this.d.blobs)
    this.haveMaps.set(id, have)
    // Which blobs: delta blobs where a held release is their base, full blobs for the rest (docs/delta.md).
    const deltas = await DeltaDownload.plan({
      release: key,
      manifest,
      payload,
      have,
      releases: await heldReleases(this.d.db, this.d.contentKey, manifest.signed.package, key),
      blobs: this.d.blobs,
      contentKey: this.d.contentKey,
      events: {
        rebuilt: async (chunks) => {
          this.d.metrics.deltaChunksRebuilt.inc(chunks)
          await this.d.db.counters.add('delta.rebuilt', chunks)
        },
        fallback: async (f) => {
          this.lastDeltaFallback = f
          this.d.metrics.deltaFallbacks.inc({ reason: f.reason })
          await this.d.db.counters.add('delta.fallbacks', 1)
          this.d.log.warn({ release: key, reason: f.reason, chunks: f.chunks, err: f.message }, 'a delta did not rebuild; fetching its chunks whole')
        }
      }
    })
    const held = have.indices()
    const prog: ReleaseProgress = {
      blobs: held.length,
      blobsTotal: held.length + deltas.want.indices().filter(i => !have.has(i)).length,
      bytes: table.bytes(held),
      bytesTotal: 0
    }
    prog.bytesTotal = prog.bytes + deltas.bytes
    this.progress.set(key, prog)
    if (deltas.want.indices().every(i => have.has(i)) && deltas.viaDelta === 0) return
    let fetched = 0
    // per-source metric children and byte counters summed in memory: per blob, prom-client hashed
    // the labels and the counter chain waited for a LevelDB write (docs/bench-daemon.md, session 10)
    const received = Object.fromEntries((['seed', 'origin', 'lan'] as const).map(s => [s, {
      counter: `bytes.${s}`,
      bytes: this.d.metrics.bytesReceived.labels({ source: s }),
      blobs: this.d.metrics.blobsReceived.labels({ source: s })
    }])) as Record<'seed' | 'origin' | 'lan', { counter: string, bytes: { inc: (n?: number) => void }, blobs: { inc: (n?: number) => void } }>
    const counted = new CounterBatch(this.d.db.counters, COUNTER_FLUSH_MS, (err) => { this.d.log.warn({ err }, 'writing the byte counters failed; retried at the next flush') })
    const fetch = new ReleaseFetch({
      self: this.d.node.peerId,
      release: id,
      chunks: table,
      store: this.d.blobs,
      client: this.d.client,
      site: this.site,
      wan: this.wan,
      bucket: this.d.bucket,
      wanRate: this.d.cfg.wanRate,
      ...(this.wanReached ? {} : { wanGraceMs: 0 }),
      weight: ownershipWeight(this.d.host),
      scores: this.scores,
      soft: AbortSignal.any([this.soft.signal, this.halt.signal]),
      hard: this.abort.signal,
      progress: prog,
      have,
      want: deltas.want,
      onStored: (index, blob) => deltas.isDelta(index) ? deltas.landed(index, blob) : undefined,
      onBlob: (from, bytes) => {
        fetched++
        const source = from === 'seed' || from === 'origin' ? from : 'lan'
        const r = received[source]
        r.bytes.inc(bytes)
        r.blobs.inc()
        counted.add(r.counter, bytes)
        return undefined
      },
      onBadBlob: (peer, banned, err) => {
        this.d.metrics.badBlobs.inc({ source: 'lan' })
        this.d.log.warn({ peer, banned, err }, banned ? 'peer banned after blobs that failed their cid or their size' : 'a blob from a peer failed its cid or its size')
      },
      onSlow: (peer, banned, err) => {
        this.d.log.warn({ peer, banned, err }, banned ? 'peer banned after requests that timed out (slow or stalled)' : 'a request to a peer timed out')
      },
      log: (msg, fields) => this.d.log.debug(fields ?? {}, msg)
    })
    this.fetches.set(id, fetch)
    try {
      await deltas.attach({
        held: (indices) => { fetch.held(indices) },
        want: (indices) => {
          for (const i of indices) if (!have.has(i)) { prog.blobsTotal++; prog.bytesTotal += table.size(i) }
          fetch.want(indices)
        }
      }, have)
      await fetch.run()
    } finally {
      this.fetches.delete(id)
      // a counter that cannot be written costs a statistic, not the download (nor hides its error)
      await counted.close().catch((err: unknown) => { this.d.log.warn({ err }, 'writing the byte counters failed') })
      if (fetched > 0) await syncFilesystem(this.d.cfg.stateDir)
    }
    this.d.log.info({ release: key, fetched, bytes: prog.bytes }, 'release downloaded')
  }

  private async install (key: string, base: ReleaseRecord, manifest: ManifestTable, payload: PayloadLike): Promise<void> {
    try {
      const installed = await this.installedTree(manifest.signed.package, manifest.signed.version)
      const res = await this.d.installer.install(releaseSpec({ manifest, payload, blobs: this.d.blobs, ...(installed !== undefined ? { installed } : {}) }), { hookTimeoutMs: this.d.cfg.hookTimeout })
      this.d.metrics.installs.inc({ result: res.status })
      this.d.metrics.installReuse.inc({ result: 'reused' }, res.reused)
      this.d.metrics.installReuse.inc({ result: 'failed' }, res.reuseFailed)
      await this.setState(key, { ...base, state: 'installed', previous: res.previous })
      this.d.log.info({ release: key, status: res.status, previous: res.previous, reused: res.reused, reuseFailed: res.reuseFailed }, 'release installed')
      await this.retain(manifest.signed.package, res.previous)
    } catch (err) {
      // The installer removed what it wrote (docs/install.md); the install is retried when space returns.
      if (isDiskFull(err)) throw new StorageFullError(this.d.cfg.installRoot, `the tree of ${key}`, { cause: err })
      if (err instanceof BlobAuthError) await this.dropChangedBlobs(key, base.manifestId, manifest)
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

  /**
   * A held blob did not open at install. Every blob was checked against its cid when it was
   * stored, so one has changed on disk since (a bad sector, a stray write): without this, the
   * install failed the same way at every pass, for good. Each of the release's blobs is hashed
   * again; those that no longer match their cid are deleted, and the next pass fetches them.
   * (A blob that matches its cid and still does not open was sealed wrong by the publisher:
   * nothing a fetch can fix, and the error says so at every pass.)
   */
  private async dropChangedBlobs (key: string, id: string, manifest: ManifestTable): Promise<void> {
    const { table } = manifest.signed.chunks.distinct()
    const changed: string[] = []
    for (let i = 0; i < table.length; i += CHECK_WINDOW) {
      const wants = []
      for (let j = i; j < Math.min(table.length, i + CHECK_WINDOW); j++) wants.push({ cid: table.cidBytes(j), maxSize: table.size(j) })
      const blobs = await this.d.blobs.getMany(wants)
      for (let k = 0; k < wants.length; k++) {
        const blob = blobs[k]
        const cid = cidToHex(wants[k]!.cid)
        if (blob === null || blob === undefined || sha256Hex(blob) === cid) continue
        await this.d.blobs.delete(wants[k]!.cid)
        changed.push(cid)
      }
    }
    this.haveMaps.delete(id)
    if (changed.length > 0) this.d.log.error({ release: key, changed: changed.length, cids: changed.slice(0, 10) }, 'held blobs no longer match their cid (changed on disk): deleted, fetched again at the next pass')
    else this.d.log.error({ release: key }, 'a held blob does not open although it matches its cid: the release was sealed with another key')
  }

  /**
   * The tree and payload of the version installed now, when it is not `version` and its manifest
   * is still held: an update reads its unchanged chunks from there (release-source.ts). Only a
   * guide, every file is checked against the new manifest, so anything amiss just means no reuse.
   */
  private async installedTree (pkg: string, version: string): Promise<{ dir: string, payload: ManifestPayload } | undefined> {
    try {
      const current = await this.d.installer.current(pkg)
      if (current === null || current === version) return undefined
      const rec = await this.d.db.releases.get(this.releaseKey(pkg, current))
      const bytes = rec === null ? null : await this.d.db.manifests.get(rec.manifestId)
      if (bytes === null) return undefined
      return { dir: this.d.installer.dirOf(pkg, current), payload: openPayload(decodeManifest(bytes), this.d.contentKey) }
    } catch (err) {
      this.d.log.debug({ err, package: pkg }, 'installed version not usable as a source; installing from blobs only')
      return undefined
    }
  }

  /** Keeps the installed and the previous version (trees and blobs: the next delta's base); drops the rest. */
  private async retain (pkg: string, previous: string | null): Promise<void> {
    const current = await this.d.installer.current(pkg)
    const keepSet = new Set([current, previous].filter((v): v is string => v !== null))
    await this.d.installer.prune(pkg, [...keepSet])
    const superseded = new Set<string>()
    for await (const [key, rec] of this.d.db.releases.entries({ gte: `${pkg}@`, lt: `${pkg}A` })) {
      if (rec.package !== pkg || keepSet.has(rec.version)) continue
      if (rec.state === 'downloading' || rec.state === 'installing') continue
      this.haveMaps.delete(rec.manifestId)
      const orphans = await this.d.db.blobIndex.removeRelease(key)
      for (const cid of orphans) await this.d.blobs.delete(cidFromHex(cid))
      if (rec.state !== 'superseded') await this.setState(key, { ...rec, state: 'superseded' })
      superseded.add(rec.manifestId)
    }
    if (superseded.size > 0) await this.forgetManifests(superseded)
  }

  /**
   * Drops superseded releases' manifests and the payload patches to or from them: with their blobs
   * gone they serve no one, and a manifest is ~0.2 % of its release (12 MiB at 1 GiB) — kept
   * forever, a weekly update would add a release's worth of them to the state dir every few years.
   * A rollback to one then says its manifest is no longer held (RollbackTargetError).
   */
  private async forgetManifests (ids: ReadonlySet<string>): Promise<void> {
    for (const id of ids) await this.d.db.manifests.del(id)
    const ops: StateOp[] = []
    for await (const [k] of this.d.db.manifestPatches.entries()) {
      const [target, base] = k.split(':')
      if (ids.has(target!) || ids.has(base!)) ops.push(this.d.db.manifestPatches.delOp(k))
    }
    await this.d.db.batch(ops)
  }

  private async setState (key: string, rec: ReleaseRecord): Promise<void> {
    await this.d.db.releases.put(key, { ...rec, updatedAt: this.d.now().toISOString() })
    this.d.onStateChange?.()
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
        if (rec?.gate !== undefined) st.gate = rec.gate as GateStatus
        if (rec?.state === 'deferred' && typeof rec.deferUntil === 'string') st.deferUntil = rec.deferUntil
        if (typeof rec?.rollbackTo === 'string') st.rollbackTo = rec.rollbackTo
        out.set(name, st)
      }
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  root (): RootStatus {
    const r = this.d.trust.current.signed
    return { version: r.version, expires: r.expires, ...(this.rootError !== undefined ? { error: this.rootError } : {}) }
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

