// The short run of bench/load.ts (issue 7, "Fuzzing and load"): one real `shoal daemon` seed and
// 40 libp2p nodes in 2 worker processes, admitted with the fleet's network key, each fetching
// blobs of a published release through the endpoint's WAN path with 128 requests in flight (the
// blobs stream's limit) for 4 s. 40 × 128 = 5 120 requests outstanding at once: above the seed's
// old server-wide limit of 4 096, which answered the rest `busy` and failed them. No fetch may
// fail, no request may be answered busy, every node gets blobs, and the seed's RSS stays bounded.
// `npm run bench -- --only load` is the long run (200 nodes in 4 processes, 60 s).
import { describe, it, expect } from 'vitest'
import { benchLoad } from '../../bench/load.js'
import { assertBuilt } from '../helpers/cli.js'

describe('load: one seed, many downloading peers', () => {
  it('40 peers × 128 in flight for 4 s: no failed fetch, no busy answer, bounded seed RSS', async () => {
    assertBuilt()
    const t0 = Date.now()
    const r = await benchLoad({ peers: 40, workers: 2, seconds: 4, perPeer: 128, bytes: 4 * 1024 * 1024, log: (l) => { console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${l}`) } })
    const summary = JSON.stringify({ ...r, errors: r.errors })
    expect(r.peers, summary).toBe(40)
    expect(r.failed, summary).toBe(0)
    expect(r.busy_answers, summary).toBe(0)
    expect(r.fetched, summary).toBeGreaterThanOrEqual(40 * 128) // each node's first 128 at least, however slow the host
    expect(r.node_blobs_min, summary).toBeGreaterThanOrEqual(128)
    // a seed idles at ~140 MB; per stream it holds at most its read-ahead (8 blobs here ≤ 64 KiB)
    expect(r.seed_rss_max_MB, summary).toBeLessThan(400)
    expect(r.seed_rss_max_MB - r.seed_rss_idle_MB, summary).toBeLessThan(200)
    console.log(`load: ${r.peers} peers, ${r.fetched} blobs in ${r.seconds.toFixed(1)} s (${r.blobs_per_s.toFixed(0)}/s, ${r.MiB_per_s.toFixed(1)} MiB/s), p50 ${r.latency_p50_ms.toFixed(0)} ms, p99 ${r.latency_p99_ms.toFixed(0)} ms, seed RSS ${r.seed_rss_idle_MB.toFixed(0)} → ≤ ${r.seed_rss_max_MB.toFixed(0)} MB, load ${r.loadavg_before}`)
  }, 240_000)
})
