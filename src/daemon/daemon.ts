// The composition root (DESIGN §9): reads the config and the enrollment bundle, opens the state,
// builds the libp2p node, and wires the role's services to it. Nothing below this file knows
// which role it runs in.
import { decodeEndpointEnrollment, decodeSeedEnrollment, MAX_BUNDLE_BYTES } from '../core/enroll.js'
import { deriveFleetKeys } from '../core/fleet-keys.js'
import type { KeyPair } from '../core/keys.js'
import type { SignedRoot } from '../core/root.js'
import { Installer, type InstallerOptions } from '../install/installer.js'
import { BlobClient, BlobServerStats, registerBlobsProtocol, type BlobClientOptions } from '../net/blobs.js'
import { createShoalNode, type MuxerName, type ShoalNode } from '../net/node.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import type { BlobStorage } from '../store/blob-store.js'
import { PackStore } from '../store/pack-store.js'
import { readFileCapped } from '../store/fs-util.js'
import { STATE_SCHEMA_VERSION, StateDb } from '../store/state-db.js'
import { TokenBucket } from '../swarm/token-bucket.js'
import { SHOAL_VERSION } from '../version.js'
import { Announce } from './announce.js'
import { startApi, type ApiServer } from './api.js'
import { ConfigError, type DaemonConfig } from './config.js'
import { Endpoint, type DiskStatus, type HeadStatus, type PackageStatus, type RootStatus } from './endpoint.js'
import type { DeltaFallback } from './delta-download.js'
import { createLogger, type Logger } from './log.js'
import { DaemonMetrics } from './metrics.js'
import { detectHost } from './host-info.js'
import { Seed } from './seed.js'
import { startReporter, startSeedFleet, type SeedFleet } from './fleet.js'
import type { FleetStore } from '../fleet/store.js'
import type { Reporter } from '../fleet/reporter.js'
import type { Inventory } from '../fleet/report.js'
import { RecordStore } from '../rollout/record-store.js'
import { RolloutEvents } from '../rollout/events.js'
import { loadWebhookSecret, Webhooks } from '../rollout/webhooks.js'
import { SeedSync } from './seed-sync.js'
import { TrustedRoot } from './trusted-root.js'

export interface DaemonOptions {
  logger?: Logger
  now?: () => Date
  /** Muxers offered (tests: an mplex-only peer). */
  muxers?: MuxerName[]
  installer?: InstallerOptions
  /** Endpoint: the OS inventory collector (default: dpkg-query / rpm, src/fleet/inventory.ts). */
  inventory?: () => Promise<Inventory>
  /** Blob fetch limits (tests: a request deadline short enough to catch a trickling peer quickly). */
  blobClient?: BlobClientOptions
  /** Endpoint: start paused, as after `POST /pause` (tests: a member that must not fetch yet). */
  startPaused?: boolean
}

export interface DaemonStatus {
  peerId: string
  role: DaemonConfig['role']
  version: string
  site: string | null
  /** Site peers this endpoint exchanges have-maps with (found by mDNS or by label). */
  siteMembers: number
  ring: string
  paused: boolean
  listen: string[]
  peers: Array<{ peerId: string, addr: string }>
  packages: PackageStatus[]
  heads: HeadStatus[]
  /** The trusted root (endpoint: with why the last root offered was refused). */
  root: RootStatus
  bytes: { seed: number, lan: number, origin: number, served: number }
  /**
   * Manifest bytes received by source (not in `bytes`); `deltas`: manifests rebuilt from a plain
   * delta, `patches`: from a stripped delta and a payload patch, `refused`: deltas or patches that did not rebuild.
   */
  manifests: { seed: number, lan: number, origin: number, deltas: number, patches: number, refused: number }
  blobs: { stored: number }
  /** Chunks rebuilt from delta blobs, deltas that fell back to full blobs, and the last fallback. */
  deltas: { rebuilt: number, fallbacks: number, lastFallback?: DeltaFallback }
  /** Endpoint: the last pass stopped on a full disk (state dir or install root). */
  disk: DiskStatus
}

export interface Daemon {
  readonly cfg: DaemonConfig
  readonly node: ShoalNode
  readonly db: StateDb
  readonly blobs: BlobStorage
  readonly metrics: DaemonMetrics
  readonly serverStats: BlobServerStats
  readonly endpoint: Endpoint | undefined
  readonly seed: Seed | undefined
  /** Seed: the endpoints' reports; `fleet.onEvent(…)` hears install-failed and ring-complete. */
  readonly fleet: FleetStore | undefined
  /** Endpoint: sends reports to the seed. */
  readonly reporter: Reporter | undefined
  readonly api: ApiServer | undefined
  /** Seed with `webhooks` configured: the sender, for events other modules raise (install-failed, ring-complete). */
  readonly webhooks: Webhooks | undefined
  readonly log: Logger
  /** The root this daemon trusts, and every root it accepted by version. */
  readonly trust: TrustedRoot
  status: () => Promise<DaemonStatus>
  stop: () => Promise<void>
}

interface Enrollment { root: SignedRoot, networkKey: Uint8Array, contentKey?: Uint8Array, onlineKey?: KeyPair }

async function readEnrollment (cfg: DaemonConfig): Promise<Enrollment> {
  let bytes: Uint8Array
  try {
    bytes = await readFileCapped(cfg.enroll, MAX_BUNDLE_BYTES, 'enrollment bundle')
  } catch (err) {
    throw new ConfigError(`cannot read the enrollment bundle "enroll" = ${cfg.enroll}: ${(err as Error).message}`, { cause: err })
  }
  const wrongFile = (err: unknown, expected: string): never => {
    throw new ConfigError(`${cfg.enroll} is not a valid ${expected} for role "${cfg.role}": ${(err as Error).message}`, { cause: err })
  }
  if (cfg.role === 'seed') {
    try {
      const e = decodeSeedEnrollment(bytes)
      return { root: e.root, networkKey: e.networkKey, onlineKey: e.onlineKey }
    } catch (err) { return wrongFile(err, 'seed-enroll.json') }
  }
  try {
    const e = decodeEndpointEnrollment(bytes)
    const keys = deriveFleetKeys(e.fleetSecret)
    return { root: e.root, networkKey: keys.networkKey, contentKey: keys.contentKey }
  } catch (err) { return wrongFile(err, 'enroll.json') }
}

export async function startDaemon (cfg: DaemonConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const now = opts.now ?? (() => new Date())
  const log = opts.logger ?? createLogger(cfg.logLevel, { role: cfg.role })
  const enrollment = await readEnrollment(cfg)
  const privateKey = await loadOrCreatePeerKey(cfg.stateDir)
  const db = await StateDb.open(cfg.stateDir)
  if (db.migratedFrom !== null) log.info({ from: db.migratedFrom, to: STATE_SCHEMA_VERSION, path: db.path }, 'state database migrated to the current schema')
  const cleanups: Array<() => Promise<void>> = [async () => { await db.close() }]
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try { await c() } catch (err) { log.warn({ err }, 'error while stopping') }
    }
  }
  try {
    const trust = await TrustedRoot.open(db, enrollment.root, now(), cfg.expiryGrace)
    // Every part reads the root through this getter when it verifies: a rotation applies at once.
    const rootNow = (): SignedRoot => trust.current
    const blobs = await PackStore.open(cfg.stateDir)
    cleanups.push(async () => { await blobs.close() })
    const opened = blobs.report
    if (opened.scanned + opened.damaged.length + opened.migrated > 0) log.warn({ packs: opened }, 'blob packs recovered at open')
    const node = await createShoalNode({
      privateKey,
      listen: cfg.listen,
      networkKey: enrollment.networkKey,
      mdns: cfg.role === 'endpoint' && cfg.mdns,
      ...(opts.muxers !== undefined ? { muxers: opts.muxers } : {})
    })
    cleanups.push(async () => { await node.stop() })
    const metrics = new DaemonMetrics({ role: cfg.role })
    const serverStats = new BlobServerStats()
    let seedSync: SeedSync | undefined
    // A caching seed (cacheSize > 0) fetches what it lacks from upstream as it is asked.
    cleanups.push(await registerBlobsProtocol(node, { get: async cid => seedSync?.cache !== undefined ? await seedSync.cache.get(cid) : await blobs.get(cid) }, { stats: serverStats }))
    const client = new BlobClient(node, opts.blobClient)
    cleanups.push(async () => { await client.close() })

    let endpoint: Endpoint | undefined
    let seed: Seed | undefined
    let seedFleet: SeedFleet | undefined
    let reporter: Reporter | undefined
    let webhooks: Webhooks | undefined
    const records = new RecordStore(db, rootNow, cfg.expiryGrace)
    const announce = new Announce(node, db, {
      onPush: (channel, head, from) => { endpoint?.onPush(channel, head, from); seedSync?.onPush(channel, head, from) },
      onRecord: (record, from) => endpoint?.onPushRecord(record, from),
      records: async pkg => await records.load(pkg),
      root: async version => await trust.bytesOf(version),
      rootVersion: () => trust.current.signed.version,
      ...(cfg.role === 'seed' ? { directory: (peer, site, addrs) => seed?.directory(peer, site, addrs) ?? [] } : {}),
      ...(enrollment.contentKey !== undefined ? { contentKey: enrollment.contentKey } : {})
    })
    await announce.start()
    cleanups.push(async () => { await announce.stop() })

    if (cfg.role === 'seed') {
      let events: RolloutEvents | undefined
      if (cfg.webhooks.length > 0) {
        const hooks = webhooks = new Webhooks({
          urls: cfg.webhooks,
          secret: await loadWebhookSecret(cfg.webhookSecret as string),
          onDeliveryFailed: (url, event, err) => log.warn({ url, event, err }, 'webhook not delivered')
        })
        cleanups.push(async () => { await hooks.stop() })
        events = new RolloutEvents(db, hooks)
      }
      seed = new Seed({ node, db, blobs, client, announce, get root () { return rootNow() }, trust, onlineKey: enrollment.onlineKey as KeyPair, cfg, log, metrics, now, records, ...(events !== undefined ? { events } : {}) })
      await seed.start()
      cleanups.push(async () => { await seed?.stop() })
      seedFleet = await startSeedFleet({ node, db, cfg, log, now })
      const f = seedFleet
      cleanups.push(async () => { await f.service.stop() })
      // What endpoint reports reveal (an install failed, a ring finished) goes to the admins too.
      const hooks = webhooks
      if (hooks !== undefined) f.store.onEvent((event, payload) => { hooks.emit(event, payload as unknown as Record<string, unknown>) })
      seedSync = new SeedSync({ node, db, blobs, client, announce, get root () { return rootNow() }, seed, cfg, log, metrics, now })
      await seedSync.start()
      cleanups.push(async () => { await seedSync?.stop() })
    } else {
      const installer = new Installer(cfg.installRoot, opts.installer)
      const bucket = new TokenBucket({ rate: cfg.wanRate })
      const host = await detectHost(cfg)
      endpoint = new Endpoint({
        node, host, db, blobs, client, announce, installer, bucket, get root () { return rootNow() }, trust, contentKey: enrollment.contentKey as Uint8Array, cfg, log, metrics, now, records,
        onStateChange: () => reporter?.changed()
      })
      if (opts.startPaused === true) endpoint.paused = true
      await endpoint.start()
      cleanups.push(async () => { await endpoint?.stop() })
    }

    // Counting blob files is a stat per blob: fine once in a while, not on every status poll.
    let stored = { at: 0, blobs: 0 }
    const storedBlobs = async (): Promise<number> => {
      if (Date.now() - stored.at > 30_000) stored = { at: Date.now(), blobs: (await blobs.stats()).blobs }
      return stored.blobs
    }
    const status = async (): Promise<DaemonStatus> => {
      const counters = await db.counters.all()
      const peers = node.getConnections().map(c => ({ peerId: c.remotePeer.toString(), addr: c.remoteAddr.toString() }))
      metrics.peers.set(new Set(peers.map(p => p.peerId)).size)
      metrics.paused.set(endpoint?.paused === true ? 1 : 0)
      return {
        peerId: node.peerId.toString(),
        role: cfg.role,
        version: SHOAL_VERSION,
        site: cfg.site,
        siteMembers: endpoint?.site.members.size ?? 0,
        ring: cfg.ring,
        paused: endpoint?.paused ?? false,
        listen: node.getMultiaddrs().map(a => a.toString()),
        peers,
        packages: endpoint !== undefined ? await endpoint.packages() : [],
        heads: endpoint !== undefined ? await endpoint.heads() : [],
        root: endpoint?.root() ?? { version: trust.current.signed.version, expires: trust.current.signed.expires },
        bytes: { seed: counters['bytes.seed'] ?? 0, lan: counters['bytes.lan'] ?? 0, origin: counters['bytes.origin'] ?? 0, served: serverStats.bytesServed },
        manifests: { seed: counters['manifest.seed'] ?? 0, lan: counters['manifest.lan'] ?? 0, origin: counters['manifest.origin'] ?? 0, deltas: counters['manifest.deltas'] ?? 0, patches: counters['manifest.patches'] ?? 0, refused: counters['manifest.refused'] ?? 0 },
        blobs: { stored: await storedBlobs() },
        deltas: { rebuilt: counters['delta.rebuilt'] ?? 0, fallbacks: counters['delta.fallbacks'] ?? 0, ...(endpoint?.lastDeltaFallback !== undefined ? { lastFallback: endpoint.lastDeltaFallback } : {}) },
        disk: endpoint?.diskFull !== undefined ? { full: true, code: 'ERR_DISK_FULL', ...endpoint.diskFull } : { full: false }
      }
    }

    if (endpoint !== undefined) {
      const r = reporter = startReporter({ node, cfg, log, now, status, ...(opts.inventory !== undefined ? { inventory: opts.inventory } : {}) })
      cleanups.push(async () => { await r.stop() })
    }

    let api: ApiServer | undefined
    const served = { bytes: 0, blobs: 0 }
    if (cfg.api !== null) {
      api = await startApi(cfg.api, {
        status,
        metrics: async () => {
          metrics.blobsStored.set(await storedBlobs())
          // the blobs server counts; the counters catch up with it at each scrape
          metrics.bytesServed.inc({ role: cfg.role }, serverStats.bytesServed - served.bytes)
          metrics.blobsServed.inc(serverStats.blobsServed - served.blobs)
          served.bytes = serverStats.bytesServed
          served.blobs = serverStats.blobsServed
          return await metrics.text()
        },
        pause: async () => { if (endpoint !== undefined) endpoint.paused = true; log.info('paused') },
        resume: async () => { if (endpoint !== undefined) { endpoint.paused = false; endpoint.kick() } log.info('resumed') },
        ...(endpoint !== undefined ? { installNow: async () => { endpoint?.kick() } } : {}),
        ...(seedFleet !== undefined ? { extra: seedFleet.routes } : {})
      })
      const a = api
      cleanups.push(async () => { await a.close() })
    }
    log.info({ peerId: node.peerId.toString(), listen: node.getMultiaddrs().map(String), api: api?.address }, `shoal ${cfg.role} started`)

    // Stop in reverse order of start: API, role, announce, client, blobs protocol, node, database.
    let stopping: Promise<void> | undefined
    return {
      cfg, node, db, blobs, metrics, serverStats, endpoint, seed, api, webhooks, log, trust, status, fleet: seedFleet?.store, reporter,
      stop: async () => {
        stopping ??= (async () => {
          await cleanup()
          log.info('stopped')
        })()
        await stopping
      }
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}
