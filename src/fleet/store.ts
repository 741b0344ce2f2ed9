// The seed's view of its fleet: the latest report of every endpoint, kept in LevelDB (sublevels
// `fleet-reports` and `fleet-inventory`, docs/protocol.md §5.3) and summarised in memory, so status,
// the fleet CLI and the dashboard never re-read every inventory. Rollout events the reports reveal
// (an install failed, a ring finished) go to the listeners registered with onEvent — the webhooks
// of the rollout work, tests, logs.
import type { KV } from '../store/state-db.js'
import type { Inventory, Report, ReportedRelease } from './report.js'

/** A report as stored: the inventory apart (it is large and read only by inventory queries). */
export interface EndpointRecord extends Omit<Report, 'inventory'> {
  receivedAt: string
  inventory: Omit<Inventory, 'packages'> & { count: number }
}

/** Buckets of `fleet status`; release states are mapped onto them by bucketOf. */
export const STATE_BUCKETS = ['pending', 'downloading', 'waiting-for-ring', 'installed', 'failed', 'other'] as const
export type StateBucket = typeof STATE_BUCKETS[number]
export type StateCounts = Record<StateBucket, number>

/** announced → pending; downloading, downloaded, installing → downloading; superseded and unknown states → other. */
export function bucketOf (state: string): StateBucket {
  switch (state) {
    case 'announced': return 'pending'
    case 'downloading': case 'downloaded': case 'installing': return 'downloading'
    case 'waiting-for-ring': case 'installed': case 'failed': case 'pending': return state
    default: return 'other'
  }
}

const zero = (): StateCounts => ({ pending: 0, downloading: 0, 'waiting-for-ring': 0, installed: 0, failed: 0, other: 0 })

export interface ReleaseRollout {
  package: string
  version: string
  /** Counts by ring, over the endpoints whose report lists this release. */
  rings: Record<string, StateCounts & { endpoints: number }>
  total: StateCounts
}

export interface SiteBytes {
  /** The site label, or "(none)" for endpoints without one. */
  site: string
  endpoints: number
  lan: number
  /** Bytes that crossed the WAN: from a seed or an origin. */
  wan: number
  seed: number
  origin: number
  /** Share of received bytes that came from LAN peers, 0…100 (what the swarm saved the WAN). */
  lanPercent: number
}

export interface FleetStatus {
  generatedAt: string
  /** Endpoints that reported within staleAfter: the only ones counted below. */
  endpoints: number
  /** Endpoints whose last report is older than staleAfter (switched off, decommissioned, cut off). */
  stale: number
  staleAfterMs: number
  rings: Record<string, number>
  releases: ReleaseRollout[]
  sites: SiteBytes[]
}

export interface FleetFailure {
  peerId: string
  site: string | null
  ring: string
  package: string
  version: string
  state: string
  code: string
  message: string
  exitCode?: number
  logTail?: string
  reportedAt: string
}

export interface InventoryRow { peerId: string, site: string | null, ring: string, source: 'shoal' | Inventory['source'], name: string, version: string }

export interface InventoryAnswer {
  rows: InventoryRow[]
  /** Endpoints whose OS inventory is empty or cut, with why. */
  incomplete: Array<{ peerId: string, source: Inventory['source'], truncated: boolean, reason?: string }>
}

export interface InstallFailedEvent { package: string, version: string, peerId: string, site: string | null, ring: string, error: ReportedRelease['error'] }
export interface RingCompleteEvent { package: string, version: string, ring: string, endpoints: number }
export interface FleetEvents { 'install-failed': InstallFailedEvent, 'ring-complete': RingCompleteEvent }
export type FleetEventName = keyof FleetEvents
/** `(event, payload)` with the payload's type following the event's name. */
export type FleetListener = (...args: { [E in FleetEventName]: [E, FleetEvents[E]] }[FleetEventName]) => void

const releaseKey = (r: { package: string, version: string }): string => `${r.package}@${r.version}`

/** A stored report with whether it is older than the store's staleAfter, as `fleet endpoints` lists it. */
export type ListedEndpoint = EndpointRecord & { stale: boolean }

/** Default FleetStore staleAfter: a week without a report (config `fleetStaleAfter`). */
export const FLEET_STALE_AFTER_MS = 7 * 24 * 3600_000

export class FleetStore {
  private readonly endpoints = new Map<string, EndpointRecord>()
  private readonly listeners = new Set<FleetListener>()
  /** `pkg@version ring` pairs whose ring-complete was emitted (or held when this seed started). */
  private readonly complete = new Set<string>()
  private serial: Promise<unknown> = Promise.resolve()

  private constructor (
    private readonly reports: KV<EndpointRecord>,
    private readonly inventories: KV<Inventory>,
    private readonly onListenerError: (err: unknown, event: FleetEventName) => void,
    private readonly staleAfterMs: number
  ) {}

  /**
   * `staleAfterMs`: an endpoint whose last report is older no longer counts (status, ring
   * completion) — a laptop that was retired must not keep a ring from ever completing.
   */
  static async open (reports: KV<EndpointRecord>, inventories: KV<Inventory>, onListenerError: (err: unknown, event: FleetEventName) => void = () => {}, opts: { staleAfterMs?: number, now?: Date } = {}): Promise<FleetStore> {
    const s = new FleetStore(reports, inventories, onListenerError, opts.staleAfterMs ?? FLEET_STALE_AFTER_MS)
    for await (const [peer, rec] of reports.entries()) s.endpoints.set(peer, rec)
    // Rings already complete before a restart are not announced again.
    for (const c of s.completions(opts.now ?? new Date())) s.complete.add(c.key)
    return s
  }

  private isStale (e: EndpointRecord, now: Date): boolean {
    return Date.parse(e.receivedAt) <= now.getTime() - this.staleAfterMs
  }

  /** Endpoints that reported within staleAfter of `now`. */
  private * live (now: Date): Generator<EndpointRecord> {
    for (const e of this.endpoints.values()) if (!this.isStale(e, now)) yield e
  }

  /** Registers a listener; returns the function that removes it. */
  onEvent (listener: FleetListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Stores `report` as the latest of `sender` (the caller checked report.peerId = sender). */
  async put (report: Report, receivedAt: Date): Promise<void> {
    const run = async (): Promise<void> => {
      const { inventory, ...rest } = report
      const { packages, ...invMeta } = inventory
      const rec: EndpointRecord = { ...rest, receivedAt: receivedAt.toISOString(), inventory: { ...invMeta, count: packages.length } }
      const before = this.endpoints.get(report.peerId)
      await this.inventories.put(report.peerId, inventory)
      await this.reports.put(report.peerId, rec)
      this.endpoints.set(report.peerId, rec)
      for (const r of report.releases) {
        if (r.state !== 'failed') continue
        const was = before?.releases.find(b => releaseKey(b) === releaseKey(r))
        if (was?.state === 'failed') continue
        this.emit('install-failed', { package: r.package, version: r.version, peerId: report.peerId, site: report.site, ring: report.ring, error: r.error })
      }
      for (const c of this.completions(receivedAt)) {
        if (this.complete.has(c.key)) continue
        this.complete.add(c.key)
        this.emit('ring-complete', { package: c.package, version: c.version, ring: c.ring, endpoints: c.endpoints })
      }
    }
    const p = this.serial.then(run)
    this.serial = p.catch(() => {})
    await p
  }

  get size (): number {
    return this.endpoints.size
  }

  /** Every endpoint that ever reported, stale ones included and marked (they are what an admin looks for). */
  list (now = new Date()): ListedEndpoint[] {
    return this.sorted().map(e => ({ ...e, stale: this.isStale(e, now) }))
  }

  private sorted (): EndpointRecord[] {
    return [...this.endpoints.values()].sort((a, b) => a.ring.localeCompare(b.ring) || a.peerId.localeCompare(b.peerId))
  }

  status (filter: { package?: string } = {}, now = new Date()): FleetStatus {
    const releases = new Map<string, ReleaseRollout>()
    const rings: Record<string, number> = {}
    const sites = new Map<string, SiteBytes>()
    let live = 0
    for (const e of this.live(now)) {
      live++
      rings[e.ring] = (rings[e.ring] ?? 0) + 1
      const siteName = e.site ?? '(none)'
      const s = sites.get(siteName) ?? { site: siteName, endpoints: 0, lan: 0, wan: 0, seed: 0, origin: 0, lanPercent: 0 }
      s.endpoints++
      s.lan += e.bytes.lan
      s.seed += e.bytes.seed
      s.origin += e.bytes.origin
      s.wan = s.seed + s.origin
      sites.set(siteName, s)
      for (const r of e.releases) {
        if (filter.package !== undefined && r.package !== filter.package) continue
        const k = releaseKey(r)
        const rel = releases.get(k) ?? { package: r.package, version: r.version, rings: {}, total: zero() }
        const ring = rel.rings[e.ring] ?? { ...zero(), endpoints: 0 }
        const b = bucketOf(r.state)
        ring[b]++
        ring.endpoints++
        rel.total[b]++
        rel.rings[e.ring] = ring
        releases.set(k, rel)
      }
    }
    for (const s of sites.values()) s.lanPercent = s.lan + s.wan === 0 ? 0 : Math.round(1000 * s.lan / (s.lan + s.wan)) / 10
    return {
      generatedAt: now.toISOString(),
      endpoints: live,
      stale: this.endpoints.size - live,
      staleAfterMs: this.staleAfterMs,
      rings,
      releases: [...releases.values()].sort((a, b) => a.package.localeCompare(b.package) || a.version.localeCompare(b.version, undefined, { numeric: true })),
      sites: [...sites.values()].sort((a, b) => a.site.localeCompare(b.site))
    }
  }

  failures (filter: { package?: string } = {}): FleetFailure[] {
    const out: FleetFailure[] = []
    for (const e of this.sorted()) {
      for (const r of e.releases) {
        if (r.state !== 'failed' || (filter.package !== undefined && r.package !== filter.package)) continue
        out.push({
          peerId: e.peerId, site: e.site, ring: e.ring, package: r.package, version: r.version, state: r.state,
          code: r.error?.code ?? 'ERR_UNKNOWN', message: r.error?.message ?? '',
          ...(r.error?.exitCode !== undefined ? { exitCode: r.error.exitCode } : {}),
          ...(r.error?.logTail !== undefined ? { logTail: r.error.logTail } : {}),
          reportedAt: e.receivedAt
        })
      }
    }
    return out
  }

  /** Who has what: shoal-managed packages and OS packages, all or those named `name`. */
  async inventory (filter: { package?: string } = {}): Promise<InventoryAnswer> {
    const rows: InventoryRow[] = []
    const incomplete: InventoryAnswer['incomplete'] = []
    for (const e of this.sorted()) {
      const base = { peerId: e.peerId, site: e.site, ring: e.ring }
      for (const p of e.installed) {
        if (filter.package === undefined || p.package === filter.package) rows.push({ ...base, source: 'shoal', name: p.package, version: p.version })
      }
      const inv = await this.inventories.get(e.peerId)
      if (inv === null) continue
      if (inv.source === 'none' || inv.truncated) incomplete.push({ peerId: e.peerId, source: inv.source, truncated: inv.truncated, ...(inv.reason !== undefined ? { reason: inv.reason } : {}) })
      for (const p of inv.packages) {
        if (filter.package === undefined || p.name === filter.package) rows.push({ ...base, source: inv.source, name: p.name, version: p.version })
      }
    }
    return { rows, incomplete }
  }

  /** Every (release, ring) where each endpoint of the ring that still reports has the release installed. */
  private completions (now: Date): Array<{ key: string, package: string, version: string, ring: string, endpoints: number }> {
    const ringSize = new Map<string, number>()
    const installed = new Map<string, { package: string, version: string, ring: string, n: number }>()
    for (const e of this.live(now)) {
      ringSize.set(e.ring, (ringSize.get(e.ring) ?? 0) + 1)
      for (const r of e.releases) {
        if (r.state !== 'installed') continue
        const key = `${releaseKey(r)} ${e.ring}`
        const c = installed.get(key) ?? { package: r.package, version: r.version, ring: e.ring, n: 0 }
        c.n++
        installed.set(key, c)
      }
    }
    return [...installed].filter(([, c]) => c.n === ringSize.get(c.ring))
      .map(([key, c]) => ({ key, package: c.package, version: c.version, ring: c.ring, endpoints: c.n }))
  }

  private emit<E extends FleetEventName> (event: E, payload: FleetEvents[E]): void {
    for (const l of this.listeners) {
      try {
        (l as (e: E, p: FleetEvents[E]) => void)(event, payload)
      } catch (err) {
        this.onListenerError(err, event)
      }
    }
  }
}
