// The scale simulation of issue 8 (docs/scale.md): 30 000 endpoints in 300 sites of 1–200, one
// release, the real Scheduler in every endpoint (bench/scale-sim.ts) over a simulated network.
// Reports, per variant (base, endpoints leaving mid-fetch, stalling owners, staggered joins):
//   WAN ÷ new    blob bytes over the sites' uplinks ÷ (sites × the release's new blob bytes) (≤ 1.05)
//   seed peak    requests/s and bytes/s the seed side serves at its busiest second
//   seeds        seed processes needed at that peak, and for a given datacenter uplink, at the
//                per-seed serving rate measured by bench/daemon.ts (docs/bench-daemon.md)
// Sites are independent given the seed side (the seed has no limit in the model), so they are
// simulated one by one. By default a stratified sample: the sites sorted by size, cut into
// `--strata` groups, the median site of each simulated and weighted by its group's size; `--full`
// simulates all 300.
//
//   npm run build && node dist/bench/scale.js [--full] [--strata 6] [--seed 1] [--mb 5]
//                                             [--variants base,leave,stall,staggered] [--dc-uplink 1e9,10e9]
//   npm run bench -- --only scale
import '../src/polyfills.js'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { simulateSite, type EndpointSpec, type Release, type SiteResult, type SiteSpec } from './scale-sim.js'
import { SETTLE_MS } from '../src/swarm/release-fetch.js'
import { STALL_MS } from '../src/swarm/scheduler.js'

const MiB = 1024 * 1024
/**
 * Seed CPU per MiB served, docs/bench-daemon.md "After the first round of fixes" (256 MiB,
 * separate processes): 26 ms/MiB, i.e. one seed process on one core serves at most ≈ 38 MiB/s.
 */
export const SEED_CPU_MS_PER_MIB = 26
/** What one endpoint actually received from one seed in the same run (endpoint-bound): 25.6 MiB/s. */
export const SEED_OBSERVED_MIB_S = 25.6

/**
 * Default release: 5 MB of new blobs (≈ 307 chunks). The simulation costs O(N² × chunks²) per site
 * of N (plan() is O(chunks × N), called O(chunks) times per peer): 5 MB keeps the default run near
 * 75 CPU-seconds; `--mb 50` is the issue's 50 MB update, ~30× the cost.
 */
export const DEFAULT_RELEASE_BYTES = 5e6
export const DEFAULT_STRATA = 6

export const VARIANTS = ['base', 'leave', 'stall', 'staggered'] as const
export type Variant = typeof VARIANTS[number]

export interface ScaleOptions {
  seed?: number
  sites?: number
  endpoints?: number
  /** Largest site; sizes are 1 … maxSite. */
  maxSite?: number
  /** New blob bytes of the release. */
  releaseBytes?: number
  /** Simulate every site instead of a stratified sample. */
  full?: boolean
  strata?: number
  variants?: readonly Variant[]
  /** Datacenter uplinks to size the seed side for, bit/s. */
  dcUplinks?: readonly number[]
  log?: (line: string) => void
}

/** mulberry32: a small seeded PRNG, so the population is the same on every run. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * A release of ≈ `bytes` new blob bytes: chunk sizes 4–28 KiB around the 16 KiB FastCDC average
 * (the mean of four uniforms: normalised chunking keeps sizes near the average).
 */
export function makeRelease (bytes: number, seed = 1): Release {
  const rnd = prng(seed ^ 0x5eed)
  const sizes: number[] = []
  let total = 0
  while (total < bytes) {
    const u = (rnd() + rnd() + rnd() + rnd()) / 4
    const size = Math.min(Math.round(4096 + u * 2 * (16384 - 4096)), bytes - total >= 4096 ? Infinity : 4096)
    sizes.push(size)
    total += size
  }
  const cids = sizes.map((_, i) => createHash('sha256').update(`scale ${seed} chunk ${i}`).digest('hex'))
  return { cids, sizes }
}

/** Site sizes: uniform on 1 … maxSite, then nudged one by one (within bounds) until they sum to `endpoints`. */
export function siteSizes (sites: number, endpoints: number, maxSite: number, rnd: () => number): number[] {
  if (endpoints < sites || endpoints > sites * maxSite) throw new RangeError(`${endpoints} endpoints do not fit ${sites} sites of 1…${maxSite}`)
  const sizes = Array.from({ length: sites }, () => 1 + Math.floor(rnd() * maxSite))
  let sum = sizes.reduce((a, b) => a + b, 0)
  while (sum !== endpoints) {
    const k = Math.floor(rnd() * sites)
    const step = sum < endpoints ? 1 : -1
    const v = sizes[k]! + step
    if (v < 1 || v > maxSite) continue
    sizes[k] = v
    sum += step
  }
  return sizes
}

/** Endpoint kinds: [share, weight (ownership.ts), LAN NIC bit/s]. */
const KINDS: ReadonlyArray<readonly [number, number, number]> = [
  [0.55, 100, 1e9], // wired desktop on mains
  [0.25, 40, 200e6], // laptop on Wi-Fi, on mains
  [0.05, 20, 100e6], // unknown link
  [0.15, 0, 200e6] // laptop on battery: owns chunks only when alone
]

/** The 300 sites: their sizes, uplinks, latencies and endpoints (join times set per variant). */
export function makeSites (o: { seed: number, sites: number, endpoints: number, maxSite: number }): SiteSpec[] {
  const rnd = prng(o.seed)
  const sizes = siteSizes(o.sites, o.endpoints, o.maxSite, rnd)
  return sizes.map((size, s) => {
    // Uplinks log-uniform 50–500 Mbit/s, one-way latency 5–40 ms (VPN to the datacenter).
    const uplinkBits = 50e6 * 10 ** rnd()
    const endpoints: EndpointSpec[] = Array.from({ length: size }, () => {
      let u = rnd()
      const kind = KINDS.find(k => (u -= k[0]) < 0) ?? KINDS[0]!
      return { weight: kind[1], lanRate: kind[2] / 8, joinMs: 0 }
    })
    return { name: `s${s}`, endpoints, uplinkRate: uplinkBits / 8, uplinkLatencyMs: 5 + 35 * rnd(), lanLatencyMs: 0.3 }
  })
}

/**
 * One variant of a site: join times, leaves and freezes drawn from its own seeded stream.
 * - base: every endpoint learns of the release within 2 s (the push reaches them at once);
 * - leave: as base, and 10 % leave once mid-fetch (between settling and the site's ideal fetch
 *   time) and come back 60 s later with what they had stored;
 * - stall: as base, and 5 % (at least one per site of two or more) freeze mid-fetch for 45 s,
 *   longer than the 30 s stall timeout, then carry on;
 * - staggered: joins spread uniformly over 10 minutes (machines switched on through the morning).
 */
export function applyVariant (site: SiteSpec, variant: Variant, newBytes: number, seed: number): SiteSpec {
  const rnd = prng(seed ^ Number.parseInt(createHash('sha256').update(`${site.name} ${variant}`).digest('hex').slice(0, 8), 16))
  const idealMs = newBytes / site.uplinkRate * 1000
  const n = site.endpoints.length
  const stallers = new Set<number>()
  if (variant === 'stall' && n >= 2) {
    stallers.add(Math.floor(rnd() * n))
    for (let k = 0; k < n; k++) if (rnd() < 0.05) stallers.add(k)
  }
  const endpoints = site.endpoints.map((e, k): EndpointSpec => {
    const joinMs = variant === 'staggered' ? rnd() * 600_000 : rnd() * 2_000
    const out: EndpointSpec = { ...e, joinMs }
    if (variant === 'leave' && rnd() < 0.10) out.leave = { atMs: joinMs + SETTLE_MS + rnd() * idealMs, awayMs: 60_000 }
    if (stallers.has(k)) out.freeze = { atMs: joinMs + SETTLE_MS + rnd() * idealMs, forMs: STALL_MS * 1.5 }
    return out
  })
  return { ...site, endpoints }
}

/** The sites to simulate and how many sites each stands for. */
export function sampleSites (sites: SiteSpec[], strata: number | undefined): Array<{ site: SiteSpec, weight: number }> {
  if (strata === undefined || strata >= sites.length) return sites.map(site => ({ site, weight: 1 }))
  const sorted = [...sites].sort((a, b) => a.endpoints.length - b.endpoints.length)
  const out: Array<{ site: SiteSpec, weight: number }> = []
  for (let g = 0; g < strata; g++) {
    const lo = Math.floor(g * sorted.length / strata)
    const hi = Math.floor((g + 1) * sorted.length / strata)
    out.push({ site: sorted[Math.floor((lo + hi - 1) / 2)]!, weight: hi - lo })
  }
  return out
}

export interface VariantRow {
  variant: Variant
  sites_simulated: number
  endpoints: number
  /** Endpoints done ÷ endpoints, weighted. */
  completed: number
  /** Σ WAN bytes ÷ Σ (sites × new bytes), weighted (target ≤ 1.05). */
  wan_ratio: number
  worst_site_ratio: number
  /** Extra WAN requests (a chunk asked of the seed again by the same site), per site, weighted mean. */
  extra_wan_req_per_site: number
  lan_timeouts: number
  wan_over_timeout: number
  max_wan_latency_s: number
  median_site_done_s: number
  last_site_done_s: number
  peak_seed_req_s: number
  peak_seed_MiB_s: number
  /** Seed processes for the peak demand at SEED_CPU_MS_PER_MIB (and at the observed per-seed rate). */
  seeds_at_peak: number
  seeds_at_peak_observed: number
  /** Seed processes to fill each datacenter uplink (or the peak, if lower), as "Gbit/s: n". */
  seeds_for_uplink: string
  sim_s: number
}

export function aggregate (variant: Variant, runs: Array<{ r: SiteResult, weight: number }>, dcUplinks: readonly number[], simMs: number): VariantRow {
  let eps = 0; let done = 0; let wan = 0; let fresh = 0; let extra = 0; let sites = 0
  let lanTimeouts = 0; let wanOver = 0; let maxLat = 0; let worst = 0
  const req: number[] = []
  const bytes: number[] = []
  const doneTimes: Array<{ t: number, w: number }> = []
  for (const { r, weight: w } of runs) {
    eps += w * r.endpoints; done += w * r.completed; wan += w * r.wanBytes; fresh += w * r.newBytes
    extra += w * r.extraWanRequests; sites += w
    lanTimeouts += w * r.lanTimeouts; wanOver += w * r.wanSlowerThanTimeout
    maxLat = Math.max(maxLat, r.maxWanLatencyMs); worst = Math.max(worst, r.ratio)
    r.seedRequestsPerSecond.forEach((v, s) => { req[s] = (req[s] ?? 0) + w * v })
    r.seedBytesPerSecond.forEach((v, s) => { bytes[s] = (bytes[s] ?? 0) + w * v })
    doneTimes.push({ t: r.doneMs, w })
  }
  doneTimes.sort((a, b) => a.t - b.t)
  let acc = 0
  const median = doneTimes.find(d => (acc += d.w) >= sites / 2)?.t ?? 0
  const peakReq = Math.max(0, ...req.map(v => v ?? 0))
  const peakBytes = Math.max(0, ...bytes.map(v => v ?? 0))
  const perSeed = 1000 / SEED_CPU_MS_PER_MIB * MiB
  const round = (x: number, d: number): number => Number(x.toFixed(d))
  return {
    variant,
    sites_simulated: runs.length,
    endpoints: eps,
    completed: round(done / eps, 4),
    wan_ratio: round(wan / fresh, 4),
    worst_site_ratio: round(worst, 4),
    extra_wan_req_per_site: round(extra / sites, 1),
    lan_timeouts: lanTimeouts,
    wan_over_timeout: wanOver,
    max_wan_latency_s: round(maxLat / 1000, 1),
    median_site_done_s: round(median / 1000, 1),
    last_site_done_s: round((doneTimes.at(-1)?.t ?? 0) / 1000, 1),
    peak_seed_req_s: Math.round(peakReq),
    peak_seed_MiB_s: round(peakBytes / MiB, 1),
    seeds_at_peak: Math.ceil(peakBytes / perSeed),
    seeds_at_peak_observed: Math.ceil(peakBytes / (SEED_OBSERVED_MIB_S * MiB)),
    seeds_for_uplink: dcUplinks.map(u => `${u / 1e9}G: ${Math.ceil(Math.min(u / 8, peakBytes) / perSeed)}`).join(', '),
    sim_s: round(simMs / 1000, 1)
  }
}

export async function benchScale (o: ScaleOptions = {}): Promise<VariantRow[]> {
  const seed = o.seed ?? 1
  const log = o.log ?? (() => {})
  const release = makeRelease(o.releaseBytes ?? DEFAULT_RELEASE_BYTES, seed)
  const newBytes = release.sizes.reduce((a, b) => a + b, 0)
  const sites = makeSites({ seed, sites: o.sites ?? 300, endpoints: o.endpoints ?? 30_000, maxSite: o.maxSite ?? 200 })
  const picked = sampleSites(sites, o.full === true ? undefined : (o.strata ?? DEFAULT_STRATA))
  log(`release: ${release.cids.length} chunks, ${(newBytes / 1e6).toFixed(1)} MB new; ${sites.length} sites, ${sites.reduce((a, s) => a + s.endpoints.length, 0)} endpoints; simulating ${picked.length} sites (${picked.map(p => `${p.site.endpoints.length}×${p.weight}`).join(' ')})`)
  const rows: VariantRow[] = []
  for (const variant of o.variants ?? VARIANTS) {
    const t0 = performance.now()
    const runs: Array<{ r: SiteResult, weight: number }> = []
    for (const { site, weight } of picked) {
      const r = simulateSite(applyVariant(site, variant, newBytes, seed), release)
      runs.push({ r, weight })
      if (r.completed !== r.endpoints || r.ratio > 1.05 || r.lanMisses > 0) {
        log(`  ${variant} ${r.site} (${r.endpoints} endpoints, ${(site.uplinkRate * 8 / 1e6).toFixed(0)} Mbit/s): ${r.completed}/${r.endpoints} done, WAN ${r.ratio.toFixed(3)}×, ${r.extraWanRequests} extra WAN requests, ${r.lanMisses} LAN misses`)
      }
      // Yield between sites so a caller's timers (and Ctrl-C) are not starved during a long run.
      await new Promise(resolve => setImmediate(resolve))
    }
    const row = aggregate(variant, runs, o.dcUplinks ?? [1e9, 10e9], performance.now() - t0)
    log(`${variant}: WAN ${row.wan_ratio}× (worst site ${row.worst_site_ratio}×), ${(row.completed * 100).toFixed(2)} % done, seed peak ${row.peak_seed_req_s} req/s ${row.peak_seed_MiB_s} MiB/s → ${row.seeds_at_peak} seeds; ${row.sim_s} s`)
    rows.push(row)
  }
  return rows
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]
if (isMain) {
  const arg = (name: string): string | undefined => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined }
  const num = (name: string, integer = false): number | undefined => {
    const v = arg(name)
    if (v === undefined) return undefined
    const x = Number(v)
    if (!Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x))) { console.error(`${name} needs a positive ${integer ? 'integer' : 'number'}, not ${v}`); process.exit(2) }
    return x
  }
  const variants = arg('--variants')?.split(',')
  const bad = variants?.filter(v => !(VARIANTS as readonly string[]).includes(v))
  if (bad !== undefined && bad.length > 0) { console.error(`unknown variant ${bad.join(', ')}; known: ${VARIANTS.join(', ')}`); process.exit(2) }
  const mb = num('--mb')
  const dc = arg('--dc-uplink')?.split(',').map(Number)
  if (dc?.some(x => !Number.isFinite(x) || x <= 0) === true) { console.error('--dc-uplink needs bit/s values, e.g. 1e9,10e9'); process.exit(2) }
  const rows = await benchScale({
    full: process.argv.includes('--full'),
    strata: num('--strata', true),
    seed: num('--seed', true),
    releaseBytes: mb === undefined ? undefined : mb * 1e6,
    variants: variants as Variant[] | undefined,
    dcUplinks: dc,
    log: (l) => { console.log(l) }
  })
  console.table(rows)
}
