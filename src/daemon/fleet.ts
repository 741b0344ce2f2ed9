// Wires the fleet parts (src/fleet/) into a daemon: on a seed the report store, the report and
// fleet-query protocols and the dashboard; on an endpoint the reporter fed from the daemon's status.
import type { Multiaddr } from '@multiformats/multiaddr'
import { multiaddr } from '@multiformats/multiaddr'
import { dashboardRoutes } from '../fleet/dashboard.js'
import { logTail, type Inventory, type ReportedRelease } from '../fleet/report.js'
import { Reporter, type ReportBody } from '../fleet/reporter.js'
import { FleetService } from '../fleet/service.js'
import { FleetStore, type EndpointRecord } from '../fleet/store.js'
import type { ShoalNode } from '../net/node.js'
import type { KV, StateDb } from '../store/state-db.js'
import type { DaemonConfig } from './config.js'
import type { DaemonStatus } from './daemon.js'
import type { Logger } from './log.js'

export interface SeedFleet {
  store: FleetStore
  service: FleetService
  routes: ReturnType<typeof dashboardRoutes>
}

export async function startSeedFleet (o: { node: ShoalNode, db: StateDb, cfg: DaemonConfig, log: Logger, now: () => Date }): Promise<SeedFleet> {
  const store = await FleetStore.open(o.db.fleetReports as KV<EndpointRecord>, o.db.fleetInventory as KV<Inventory>,
    (err, event) => o.log.warn({ err, event }, 'fleet event listener failed'), { staleAfterMs: o.cfg.fleetStaleAfter, now: o.now() })
  const service = new FleetService({ node: o.node, store, publishers: () => o.cfg.publishers, now: o.now, log: o.log })
  await service.start()
  return { store, service, routes: dashboardRoutes(store, o.cfg.dashboardToken, o.now) }
}

/** What a report says, from the daemon's status: versions, target releases with state and errors, bytes. */
export function reportBody (s: DaemonStatus): ReportBody {
  return {
    daemonVersion: s.version,
    site: s.site,
    ring: s.ring,
    installed: s.packages.filter(p => p.installed !== null).map(p => ({ package: p.name, version: p.installed as string })),
    releases: s.packages.filter(p => p.target !== null).map(p => {
      const r: ReportedRelease = { package: p.name, version: p.target as string, state: p.state }
      if (p.channel !== null) r.channel = p.channel
      if (p.progress !== undefined) r.progress = { ...p.progress }
      if (p.error !== undefined) {
        r.error = { code: p.error.code, message: p.error.message.slice(0, 1024) }
        if (p.error.exitCode !== undefined) r.error.exitCode = p.error.exitCode
        if (p.error.logTail !== undefined) r.error.logTail = logTail(p.error.logTail)
      }
      return r
    }),
    bytes: { lan: s.bytes.lan, seed: s.bytes.seed, origin: s.bytes.origin }
  }
}

export function startReporter (o: { node: ShoalNode, cfg: DaemonConfig, log: Logger, now: () => Date, status: () => Promise<DaemonStatus>, inventory?: () => Promise<Inventory> }): Reporter {
  const seeds: Multiaddr[] = o.cfg.seeds.map(s => multiaddr(s))
  const r = new Reporter({
    node: o.node,
    seeds,
    interval: o.cfg.reportInterval,
    collect: async () => reportBody(await o.status()),
    ...(o.inventory !== undefined ? { inventory: o.inventory } : {}),
    now: o.now,
    log: o.log
  })
  r.start()
  return r
}
