// The endpoint side of /shoal/report/1: sends the seed a report when a release changes state
// (`changed()`, coalesced) and every `interval` ms. One report is in flight at a time, so the seed
// always ends with the newest; a seed that cannot be reached gets the next one. The OS inventory is
// collected at start and then hourly, not per report: dpkg-query is far slower than a report.
import type { Multiaddr } from '@multiformats/multiaddr'
import { CoalescedTask } from '../core/coalesced.js'
import { REPORT_PROTOCOL } from '../net/constants.js'
import type { ShoalNode } from '../net/node.js'
import { callRpc } from '../net/rpc.js'
import { collectInventory } from './inventory.js'
import { encodeReport, MAX_REPORT_BYTES, REPORT_VERSION, type Inventory, type Report } from './report.js'
import { REPORT_READ_LIMIT } from './service.js'

/** State changes closer together than this go out as one report. */
export const REPORT_COALESCE_MS = 250
/** How often the OS inventory is collected again. */
export const INVENTORY_REFRESH_MS = 3600_000

export type ReportBody = Omit<Report, 'v' | 'peerId' | 'sentAt' | 'inventory'>

export interface ReporterDeps {
  node: ShoalNode
  seeds: Multiaddr[]
  /** Periodic report interval, ms. */
  interval: number
  /** What the report says besides identity, time and inventory (from the daemon's status). */
  collect: () => Promise<ReportBody>
  inventory?: () => Promise<Inventory>
  now: () => Date
  log: { warn: (o: object, msg: string) => void, debug: (o: object, msg: string) => void }
}

export class Reporter {
  private timer: NodeJS.Timeout | undefined
  private soon: NodeJS.Timeout | undefined
  /** Sends, one at a time; asking during a send sends once more after it. */
  private readonly sends = new CoalescedTask(async () => await this.sendOnce(), err => { this.d.log.warn({ err }, 'report not delivered; the next one will be') })
  private stopped = false
  private inv: Inventory | undefined
  private invAt = 0
  /** The send in flight's; aborted by stop (one per send: no listener piles up on a long-lived signal). */
  private abort = new AbortController()
  /** Reports the seed accepted: for status and tests. */
  sent = 0

  constructor (private readonly d: ReporterDeps) {}

  start (): void {
    this.timer = setInterval(() => { this.changed() }, this.d.interval)
    this.timer.unref()
    this.changed()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.soon)
    this.abort.abort()
    await this.sends.stop()
  }

  /** A release changed state: a report goes out shortly (several changes, one report). */
  changed (): void {
    if (this.stopped || this.soon !== undefined) return
    this.soon = setTimeout(() => {
      this.soon = undefined
      this.send()
    }, REPORT_COALESCE_MS)
    this.soon.unref()
  }

  /** Sends a report now and waits for it (and for any send already running). */
  async flush (): Promise<void> {
    this.send()
    await this.sends.idle()
  }

  private send (): void {
    if (!this.stopped) this.sends.request()
  }

  private async inventory (): Promise<Inventory> {
    if (this.inv === undefined || Date.now() - this.invAt > INVENTORY_REFRESH_MS) {
      this.inv = await (this.d.inventory ?? collectInventory)()
      this.invAt = Date.now()
    }
    return this.inv
  }

  /** The report as it would be sent now. */
  async build (): Promise<Report> {
    const report: Report = {
      v: REPORT_VERSION,
      peerId: this.d.node.peerId.toString(),
      sentAt: this.d.now().toISOString(),
      ...(await this.d.collect()),
      inventory: await this.inventory()
    }
    if (encodeReport(report).byteLength > MAX_REPORT_BYTES) {
      // Better a report without its package list than no report.
      report.inventory = { ...report.inventory, packages: [], truncated: true, reason: `inventory of ${report.inventory.packages.length} packages does not fit a ${MAX_REPORT_BYTES}-byte report` }
    }
    return report
  }

  private async sendOnce (): Promise<void> {
    const bytes = encodeReport(await this.build())
    this.abort = new AbortController()
    let lastErr: unknown
    for (const seed of this.d.seeds) {
      try {
        await callRpc(this.d.node, seed, REPORT_PROTOCOL, bytes, { maxRequestBytes: REPORT_READ_LIMIT, maxResponseBytes: 1024, timeoutMs: 30_000, signal: this.abort.signal })
        this.sent++
        this.d.log.debug({ seed: seed.toString(), bytes: bytes.byteLength }, 'report sent')
        return
      } catch (err) { lastErr = err }
    }
    throw lastErr
  }
}
