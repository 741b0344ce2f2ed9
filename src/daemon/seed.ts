// The seed role: accepts releases from publishers over /shoal/publish/1, keeps every blob, and signs
// the channel heads with the online key. It never holds the content key: it checks a release's
// signatures against the pinned root, never its contents, and takes only the blobs the manifest
// lists (pulled from the publisher over /shoal/blobs/1, each checked against its cid).
import { setMaxListeners } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import { ShoalError, quoteValue } from '../core/errors.js'
import { checkHeadAdvance, decodeHead, signHead, type HeadBody, type HeadEntry, type SignedHead } from '../core/head.js'
import type { KeyPair } from '../core/keys.js'
import { decodeManifest, manifestId, MAX_CHUNKS, MAX_MANIFEST_BYTES, PACKAGE_NAME, verifyManifest, type SignedManifest } from '../core/manifest.js'
import type { SignedRoot } from '../core/root.js'
import { decodePatchList, MAX_PATCHES_PER_RELEASE, type PatchFor } from '../core/manifest-patch.js'
import { cidFromHex } from '../core/seal.js'
import { HEX64, RollbackError, verifyThreshold } from '../core/signed.js'
import type { BlobClient } from '../net/blobs.js'
import { PUBLISH_PROTOCOL } from '../net/constants.js'
import { decodeControl, encodeControl, headerString, headerStrings } from '../net/control.js'
import type { ShoalNode } from '../net/node.js'
import { handleRpc } from '../net/rpc.js'
import type { BlobStorage } from '../store/blob-store.js'
import { syncFilesystem } from '../store/fs-util.js'
import type { StateDb } from '../store/state-db.js'
import type { RolloutEvents } from '../rollout/events.js'
import { describeRecord, type RecordBody } from '../rollout/records.js'
import type { RecordStore } from '../rollout/record-store.js'
import { loadHead, patchKey, storeHead, type Announce, type DirectoryEntry } from './announce.js'
import type { DaemonConfig } from './config.js'
import type { TrustedRoot } from './trusted-root.js'
import type { Logger } from './log.js'
import type { DaemonMetrics } from './metrics.js'

/** A whole release may take this long to pull from the publisher. */
export const PUBLISH_TIMEOUT_MS = 2 * 3600_000
/** Blobs pulled from the publisher at once (pipelined on one stream). */
const PULL_CONCURRENCY = 128
const MAX_PUBLISH_REQUEST = MAX_MANIFEST_BYTES + 64 * 1024
const MAX_PUBLISH_RESPONSE = MAX_CHUNKS / 8 + 64 * 1024

export class PublishRefusedError extends ShoalError {
  constructor (message: string) {
    super('ERR_PUBLISH_REFUSED', message)
  }
}

/** A sealed payload patch uploaded with a release: it takes the manifest `base` to the one committed. */
export type UploadedPatch = PatchFor

export type PublishRequest =
  | { op: 'record-seq', package: string }
  | { op: 'latest', channel: string, package: string }
  | { op: 'offer' | 'record' | 'root', bytes: Uint8Array }
  | { op: 'commit', bytes: Uint8Array, patches: UploadedPatch[] }

/** A /shoal/publish/1 request as the seed reads it, checked before anything is looked up. */
export function decodePublishRequest (req: Uint8Array): PublishRequest {
  const what = 'publish request'
  const { header, parts } = decodeControl(req, what)
  const op = headerString(header, 'op', what)
  if (op === 'record-seq') return { op, package: headerString(header, 'package', what, PACKAGE_NAME) }
  if (op === 'latest') return { op, channel: headerString(header, 'channel', what, PACKAGE_NAME), package: headerString(header, 'package', what, PACKAGE_NAME) }
  if (op !== 'offer' && op !== 'commit' && op !== 'record' && op !== 'root') throw new PublishRefusedError(`unknown publish operation ${quoteValue(op)}`)
  const bytes = parts[0]
  if (bytes === undefined) throw new PublishRefusedError(`the publish request carries no ${op === 'root' ? 'root' : op === 'record' ? 'record' : 'manifest'}`)
  if (op !== 'commit') return { op, bytes }
  if (header.patches === undefined) return { op, bytes, patches: [] }
  // Payload patches (docs/protocol.md §6.6): one per base, after the manifest, framing checked here.
  const patches = decodePatchList(headerStrings(header, 'patches', what, MAX_PATCHES_PER_RELEASE, HEX64), parts.slice(1), what)
  return { op, bytes, patches }
}

export interface SeedDeps {
  node: ShoalNode
  db: StateDb
  blobs: BlobStorage
  client: BlobClient
  announce: Announce
  /** The trusted root (read at each check: `trust` may rotate it). */
  root: SignedRoot
  trust: TrustedRoot
  onlineKey: KeyPair
  cfg: DaemonConfig
  log: Logger
  metrics: DaemonMetrics
  now: () => Date
  /** Control records accepted from publishers, served to endpoints. */
  records: RecordStore
  /** Webhook events (absent: no webhooks configured). */
  events?: RolloutEvents
}

export interface PublishOutcome { package: string, version: string, channel: string, headSeq: number, fetched: number, fetchedBytes: number, already: boolean }

/** Bit i set = chunk i of the manifest is missing here. */
function missingBitfield (missing: boolean[]): Uint8Array {
  const out = new Uint8Array(Math.ceil(missing.length / 8))
  missing.forEach((m, i) => { if (m) out[i >> 3]! |= 1 << (i & 7) })
  return out
}

/** A directory entry not renewed for this long is forgotten. */
const DIRECTORY_TTL_MS = 15 * 60_000

export class Seed {
  /** Endpoints by site label, for introducing label mates that mDNS cannot see (other subnets, VPN). */
  private readonly sites = new Map<string, Map<string, { addrs: string[], seen: number }>>()
  private unhandle: (() => Promise<void>) | undefined
  private refreshTimer: NodeJS.Timeout | undefined
  private eventsTimer: NodeJS.Timeout | undefined
  /** Head signing (publish commits, refreshes) runs one at a time. */
  private headChain: Promise<unknown> = Promise.resolve()

  constructor (private readonly d: SeedDeps) {}

  async start (): Promise<void> {
    this.unhandle = await handleRpc(this.d.node, PUBLISH_PROTOCOL, async (req, peer) => await this.serve(req, peer), {
      maxRequestBytes: MAX_PUBLISH_REQUEST,
      maxResponseBytes: MAX_PUBLISH_RESPONSE,
      timeoutMs: PUBLISH_TIMEOUT_MS,
      maxInboundStreams: 4
    })
    // Heads are short-lived on purpose (freeze attacks); the seed re-signs them before they lapse.
    const every = Math.max(1000, Math.min(this.d.cfg.headLifetime / 4, 3600_000))
    this.refreshTimer = setInterval(() => { this.refreshHeads().catch(err => this.d.log.error({ err }, 'head refresh failed')) }, every)
    this.refreshTimer.unref()
    // Time-gated rings open by the clock alone: their ring-opened webhook is checked every pollInterval.
    if (this.d.events !== undefined) {
      const events = this.d.events
      this.eventsTimer = setInterval(() => { events.tick(this.d.now()).catch(err => this.d.log.warn({ err }, 'rollout events check failed')) }, this.d.cfg.pollInterval)
      this.eventsTimer.unref()
    }
    await this.refreshHeads()
  }

  async stop (): Promise<void> {
    clearInterval(this.refreshTimer)
    clearInterval(this.eventsTimer)
    await this.unhandle?.()
    await this.headChain.catch(() => {})
  }

  /** Records `peer` under `site` and returns the other live members, most recently seen first. */
  directory (peer: PeerId, site: string, addrs: string[]): DirectoryEntry[] {
    const now = Date.now()
    let members = this.sites.get(site)
    if (members === undefined) { members = new Map(); this.sites.set(site, members) }
    members.set(peer.toString(), { addrs, seen: now })
    const out: Array<DirectoryEntry & { seen: number }> = []
    for (const [id, m] of members) {
      if (now - m.seen > DIRECTORY_TTL_MS) { members.delete(id); continue }
      if (id !== peer.toString()) out.push({ id, addrs: m.addrs, seen: m.seen })
    }
    return out.sort((a, b) => b.seen - a.seen).map(({ id, addrs }) => ({ id, addrs }))
  }

  private async serve (req: Uint8Array, peer: PeerId): Promise<Uint8Array> {
    const allow = this.d.cfg.publishers
    if (allow.length > 0 && !allow.includes(peer.toString())) {
      this.d.log.warn({ peer: peer.toString() }, 'publish refused: peer not in "publishers"')
      throw new PublishRefusedError(`peer ${peer.toString()} is not in this seed's "publishers" list`)
    }
    if (this.d.cfg.cacheSize > 0) {
      throw new PublishRefusedError('this seed is a cache in front of its origins (cacheSize > 0) and keeps no full copy: publish to the origin\'s repository or to a full seed')
    }
    const r = decodePublishRequest(req)
    if (r.op === 'record-seq') return encodeControl({ seq: await this.d.records.lastSeq(r.package) })
    if (r.op === 'latest') {
      const entry = (await this.currentHead(r.channel))?.packages[r.package]
      // `manifest`: the id, so a publisher can make a payload patch against it (newer publishers read it)
      return encodeControl(entry === undefined ? { seq: 0 } : { seq: entry.seq, version: entry.version, manifest: entry.manifest })
    }
    if (r.op === 'offer') {
      const { manifest, already } = await this.check(r.bytes)
      const missing = await this.missing(manifest)
      const n = missing.filter(Boolean).length
      const missingBytes = manifest.signed.chunks.reduce((s, c, i) => s + (missing[i] === true ? c.size : 0), 0)
      return encodeControl({ already, missing: n, missingBytes }, [missingBitfield(missing)])
    }
    if (r.op === 'commit') return encodeControl({ ...(await this.commit(r.bytes, peer, r.patches)) })
    if (r.op === 'root') return encodeControl({ ...(await this.acceptRoot(r.bytes, peer)) })
    return encodeControl({ ...(await this.acceptRecord(r.bytes, peer)) })
  }

  /** Verified against the pinned root; refused when its sequence does not move the package forward. */
  private async check (bytes: Uint8Array): Promise<{ manifest: SignedManifest, id: string, already: boolean }> {
    const manifest = decodeManifest(bytes)
    verifyManifest(manifest, this.d.root, this.d.now(), { graceSeconds: this.d.cfg.expiryGrace })
    const id = manifestId(bytes)
    const b = manifest.signed
    const entry = (await this.currentHead(b.channel))?.packages[b.package]
    if (entry !== undefined && entry.manifest === id) return { manifest, id, already: true }
    if (entry !== undefined && entry.seq >= b.seq) {
      throw new RollbackError(`${b.package}@${b.version} has seq ${b.seq}, but channel ${b.channel} already serves ${entry.version} with seq ${entry.seq}; publish with a higher --seq`)
    }
    return { manifest, id, already: false }
  }

  private async missing (m: SignedManifest): Promise<boolean[]> {
    return await Promise.all(m.signed.chunks.map(async c => !(await this.d.blobs.has(cidFromHex(c.cid)))))
  }

  private async commit (bytes: Uint8Array, peer: PeerId, patches: UploadedPatch[] = []): Promise<PublishOutcome> {
    const { manifest, id, already } = await this.check(bytes)
    const b = manifest.signed
    const release = `${b.package}@${b.version}`
    const chunks = manifest.signed.chunks
    const missing = await this.missing(manifest)
    const todo = chunks.filter((_, i) => missing[i] === true)
    let fetched = 0
    let fetchedBytes = 0
    const abort = new AbortController()
    // every puller's fetch in flight listens on it: that many listeners are by design, not a leak
    setMaxListeners(PULL_CONCURRENCY + 1, abort.signal)
    const queue = [...new Map(todo.map(c => [c.cid, c])).values()]
    const worker = async (): Promise<void> => {
      for (let c = queue.pop(); c !== undefined; c = queue.pop()) {
        const cid = cidFromHex(c.cid)
        const blob = await this.d.client.fetch(peer, cid, c.size, abort.signal)
        await this.d.blobs.put(cid, blob, { durable: false, verified: true, absent: true })
        fetched++
        fetchedBytes += blob.byteLength
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(PULL_CONCURRENCY, queue.length) }, worker))
    } catch (err) {
      abort.abort()
      throw err
    }
    if (fetched > 0) await syncFilesystem(this.d.cfg.stateDir)
    this.d.metrics.bytesReceived.inc({ source: 'publisher' }, fetchedBytes)
    this.d.metrics.blobsReceived.inc({ source: 'publisher' }, fetched)
    // the index first: once the manifest is here, every blob it lists is indexed
    await this.d.db.blobIndex.add(release, [...new Set(chunks.map(c => c.cid))])
    // the patches before the manifest: a patched reply is decided (and cached) when the manifest is first asked for
    const kept = await this.keepPatches(id, bytes, patches)
    // durable before a head names it: a seed serving a head whose manifest a power cut took would
    // fail every endpoint's fetch until the release was pushed again
    await this.d.db.manifests.put(id, bytes, { durable: true })
    let headSeq = (await this.currentHead(b.channel))?.seq ?? 0
    if (!already) {
      headSeq = await this.updateHead(b.channel, packages => {
        // Re-checked under the head lock: two publishes of one package may race.
        const cur = packages[b.package]
        if (cur !== undefined && cur.seq >= b.seq) throw new RollbackError(`${release} (seq ${b.seq}) lost a race with ${cur.version} (seq ${cur.seq})`)
        return { ...packages, [b.package]: { manifest: id, seq: b.seq, version: b.version } }
      })
    }
    this.d.log.info({ release, channel: b.channel, headSeq, fetched, fetchedBytes, patches: kept, from: peer.toString() }, already ? 'release already published' : 'release published')
    if (!already) this.d.events?.published(b, id, this.d.now()).catch(err => this.d.log.warn({ err }, 'published webhook failed'))
    return { package: b.package, version: b.version, channel: b.channel, headSeq, fetched, fetchedBytes, already }
  }

  /**
   * Keeps the payload patches of a verified manifest that can serve: a base this seed holds (the
   * patched reply needs its bytes) and smaller than the manifest. The seed cannot open them (no
   * content key); a wrong one only ever costs an endpoint a second request.
   */
  async keepPatches (id: string, bytes: Uint8Array, patches: UploadedPatch[]): Promise<number> {
    let kept = 0
    for (const p of patches) {
      if (p.base === id || p.bytes.length >= bytes.length || (await this.d.db.manifests.get(p.base)) === null) continue
      await this.d.db.manifestPatches.put(patchKey(id, p.base), p.bytes)
      kept++
    }
    return kept
  }

  /** A control record from a publisher: verified against the pinned root, stored, pushed to peers. */
  private async acceptRecord (bytes: Uint8Array, peer: PeerId): Promise<{ accepted: 'new' | 'same', id: string, seq: number, pushed: number, warnings: string[] }> {
    const r = await this.d.records.accept(bytes, this.d.now())
    const warnings = await this.recordWarnings(r.record.signed)
    let pushed = 0
    if (r.outcome === 'new') {
      this.d.log.info({ record: describeRecord(r.record.signed), id: r.id, from: peer.toString() }, 'control record accepted')
      pushed = await this.d.announce.pushRecordToAll(bytes).catch(() => 0)
      // A promote that opens nothing (halted release, unnamed ring) is no ring-opened event.
      await this.d.events?.record(r.record.signed, warnings.length === 0).catch(err => this.d.log.warn({ err }, 'record webhook failed'))
    }
    return { accepted: r.outcome, id: r.id, seq: r.record.signed.seq, pushed, warnings }
  }

  /**
   * A new root from a publisher: one chain step (threshold of the current root keys and of its
   * own), kept and served to endpoints (announce op "root"). When it replaces the online key, this
   * seed cannot sign heads until it is restarted with a seed-enroll.json holding the new key: said
   * in the reply and the log.
   */
  private async acceptRoot (bytes: Uint8Array, peer: PeerId): Promise<{ version: number, onlineChanged: boolean, signsHeads: boolean }> {
    const r = await this.d.trust.advance(bytes, this.d.now(), this.d.cfg.expiryGrace)
    const signsHeads = this.signsHeads()
    this.d.log.warn({ version: r.root.signed.version, onlineChanged: r.onlineChanged, publisherChanged: r.publisherChanged, from: peer.toString() }, 'new root accepted')
    if (!signsHeads) this.d.log.error({ version: r.root.signed.version }, 'this seed\'s online key is not in the new root\'s online role: restart it with a seed-enroll.json holding the new online key')
    return { version: r.root.signed.version, onlineChanged: r.onlineChanged, signsHeads }
  }

  /** Whether this seed's online key meets the current root's online role (a threshold of 1). */
  private signsHeads (): boolean {
    const online = this.d.root.signed.roles.online
    return online.threshold === 1 && online.keyids.includes(this.d.onlineKey.keyid)
  }

  /** What a valid record will not do, told to the publisher: a release this seed does not serve, a ring its policy does not name. */
  private async recordWarnings (r: RecordBody): Promise<string[]> {
    let manifest: SignedManifest | undefined
    for await (const [channel] of this.d.db.heads.entries()) {
      const entry = (await this.currentHead(channel))?.packages[r.package]
      if (entry?.version !== r.version) continue
      const bytes = await this.d.db.manifests.get(entry.manifest)
      if (bytes !== null) manifest = decodeManifest(bytes)
    }
    if (manifest === undefined) return [`no channel head of this seed names ${r.package}@${r.version}: the record takes effect only on endpoints that still follow that release`]
    const rings = manifest.signed.rollout?.rings.map(x => x.ring)
    if (r.action === 'promote' && rings === undefined) return [`${r.package}@${r.version} has no rollout policy: every ring installs it already`]
    if (r.action === 'promote' && rings !== undefined && !rings.includes(r.ring as string)) {
      return [`ring ${r.ring as string} is not named in the rollout policy of ${r.package}@${r.version} (rings: ${rings.join(', ')}): the promote opens nothing`]
    }
    if (r.action === 'promote' && !(await this.d.records.control(r.package, r.version)).promoted.has(r.ring as string)) {
      return [`${r.package}@${r.version} is halted: a promote does not reopen it (publish a new version to resume)`]
    }
    return []
  }

  private signedByOnlineRole (head: SignedHead): boolean {
    try {
      verifyThreshold('head', head, this.d.root.signed.roles.online, this.d.root.signed.keys)
      return true
    } catch {
      return false
    }
  }

  private async currentHead (channel: string): Promise<HeadBody | null> {
    const bytes = await loadHead(this.d.db, channel)
    return bytes === null ? null : decodeHead(bytes).signed
  }

  /**
   * Signs the next head of `channel` with `update` applied to its packages, stores it, pushes it.
   * `minSeq`: at least this sequence (a merge with a peer seed's head must outrun both).
   */
  async updateHead (channel: string, update: (p: Record<string, HeadEntry>) => Record<string, HeadEntry>, minSeq = 0, restart = false): Promise<number> {
    const run = async (): Promise<number> => {
      const last = await this.currentHead(channel)
      const now = this.d.now()
      const { bytes, head } = signHead({
        channel,
        seq: restart ? Math.max(1, minSeq) : Math.max((last?.seq ?? 0) + 1, minSeq),
        issued: now,
        expires: new Date(now.getTime() + this.d.cfg.headLifetime),
        packages: update(last?.packages ?? {}),
        signers: [this.d.onlineKey]
      })
      await storeHead(this.d.db, channel, bytes)
      this.d.announce.pushToAll(channel, bytes)
        .then(n => this.d.log.debug({ channel, seq: head.signed.seq, peers: n }, 'head pushed'))
        .catch(err => this.d.log.warn({ err }, 'head push failed'))
      return head.signed.seq
    }
    const p = this.headChain.then(run)
    this.headChain = p.catch(() => {})
    return await p
  }

  /**
   * Stores and pushes a head signed elsewhere (a peer seed, an origin) when it still moves the
   * channel forward at the time it is its turn (publishes and re-signs run on the same chain).
   */
  async adoptHead (channel: string, bytes: Uint8Array, except?: PeerId): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const last = await this.currentHead(channel)
      if (checkHeadAdvance(last, decodeHead(bytes).signed) === 'same') return false
      await storeHead(this.d.db, channel, bytes)
      this.d.announce.pushToAll(channel, bytes, except).catch(err => this.d.log.warn({ err }, 'head push failed'))
      return true
    }
    const p = this.headChain.then(run)
    this.headChain = p.catch(() => {})
    return await p
  }

  /** Re-signs every head past half its lifetime, so endpoints never see a lapsed one from a live seed. */
  async refreshHeads (): Promise<void> {
    for await (const [channel] of this.d.db.heads.entries()) {
      const bytes = await loadHead(this.d.db, channel)
      if (bytes === null) continue
      const signed = decodeHead(bytes)
      const head = signed.signed
      // A head the current root's online role did not sign (the online key was rotated, perhaps
      // after a fast-forward by the stolen one): endpoints forgot their heads at the rotation, so
      // the sequence restarts at 1 under the new key, packages kept.
      if (this.signsHeads() && !this.signedByOnlineRole(signed)) {
        const seq = await this.updateHead(channel, p => p, 0, true)
        this.d.log.warn({ channel, seq, was: head.seq }, 'channel head re-signed under the new online key: its sequence restarts')
        continue
      }
      const issued = Date.parse(head.issued)
      const expires = Date.parse(head.expires)
      const now = this.d.now().getTime()
      if (now - issued >= (expires - issued) / 2) {
        const seq = await this.updateHead(channel, p => p)
        this.d.log.info({ channel, seq }, 'channel head re-signed')
      }
    }
  }
}
