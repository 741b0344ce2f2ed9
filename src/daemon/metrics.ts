// Prometheus metrics served on the local API's /metrics. One registry per daemon, so several
// daemons in one process (the integration tests, `shoal demo`) keep their own numbers.
import { Registry, Counter, Gauge } from 'prom-client'

export type ByteSource = 'seed' | 'lan' | 'origin'

export class DaemonMetrics {
  readonly registry = new Registry()
  readonly bytesReceived: Counter<'source'>
  readonly blobsReceived: Counter<'source'>
  readonly manifestBytesReceived: Counter<'source'>
  readonly bytesServed: Counter<'role'>
  readonly blobsServed: Counter
  readonly badBlobs: Counter<'source'>
  readonly installs: Counter<'result'>
  readonly installReuse: Counter<'result'>
  readonly blobsStored: Gauge
  readonly peers: Gauge
  readonly paused: Gauge
  readonly deltaChunksRebuilt: Counter
  readonly deltaFallbacks: Counter<'reason'>

  constructor (labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(labels)
    const r = [this.registry]
    this.bytesReceived = new Counter({ name: 'shoal_bytes_received_total', help: 'Blob bytes received, by source', labelNames: ['source'], registers: r })
    this.manifestBytesReceived = new Counter({ name: 'shoal_manifest_bytes_received_total', help: 'Manifest bytes received (full or as deltas), by source', labelNames: ['source'], registers: r })
    this.blobsReceived = new Counter({ name: 'shoal_blobs_received_total', help: 'Blobs received and verified, by source', labelNames: ['source'], registers: r })
    this.bytesServed = new Counter({ name: 'shoal_bytes_served_total', help: 'Blob bytes served to peers', labelNames: ['role'], registers: r })
    this.blobsServed = new Counter({ name: 'shoal_blobs_served_total', help: 'Blobs served to peers', registers: r })
    this.badBlobs = new Counter({ name: 'shoal_bad_blobs_total', help: 'Blobs refused because they failed their cid', labelNames: ['source'], registers: r })
    this.installs = new Counter({ name: 'shoal_installs_total', help: 'Install attempts by result', labelNames: ['result'], registers: r })
    this.installReuse = new Counter({ name: 'shoal_install_reused_files_total', help: 'Files of an update read (partly) from the installed version: verified, or failed their check and written from blobs', labelNames: ['result'], registers: r })
    this.blobsStored = new Gauge({ name: 'shoal_blobs_stored', help: 'Blobs in the local store', registers: r })
    this.peers = new Gauge({ name: 'shoal_peers_connected', help: 'Connected libp2p peers', registers: r })
    this.paused = new Gauge({ name: 'shoal_paused', help: '1 while downloads and installs are paused', registers: r })
    this.deltaChunksRebuilt = new Counter({ name: 'shoal_delta_chunks_rebuilt_total', help: 'Chunks rebuilt from a delta blob and a held base, checked against the manifest', registers: r })
    this.deltaFallbacks = new Counter({ name: 'shoal_delta_fallbacks_total', help: 'Delta blobs that did not rebuild (their chunks were fetched whole), by reason', labelNames: ['reason'], registers: r })
    for (const s of ['seed', 'lan', 'origin']) { this.bytesReceived.inc({ source: s }, 0); this.blobsReceived.inc({ source: s }, 0); this.manifestBytesReceived.inc({ source: s }, 0) }
    for (const res of ['installed', 'failed', 'noop']) this.installs.inc({ result: res }, 0)
    for (const res of ['reused', 'failed']) this.installReuse.inc({ result: res }, 0)
  }

  async text (): Promise<string> {
    return await this.registry.metrics()
  }
}
