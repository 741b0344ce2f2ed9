import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import { simulateSite, type SiteSpec } from '../../bench/scale-sim.js'
import { aggregate, applyVariant, makeRelease, makeSites, sampleSites, siteSizes, prng, VARIANTS } from '../../bench/scale.js'
import { HaveMap } from '../../src/swarm/have-map.js'
import { rankOwners } from '../../src/swarm/ownership.js'
import { Scheduler } from '../../src/swarm/scheduler.js'

// The scale bench (bench/scale.ts, docs/scale.md) on a tiny population: its invariants, so the
// simulator cannot rot silently. No timing: figures live in `npm run bench -- --only scale`.
describe('scale simulation', () => {
  const release = makeRelease(1_500_000, 7)
  const newBytes = release.sizes.reduce((a, b) => a + b, 0)
  const sites = makeSites({ seed: 7, sites: 4, endpoints: 40, maxSite: 20 })

  it('draws a seeded population of the stated shape', () => {
    expect(sites.map(s => s.endpoints.length).reduce((a, b) => a + b, 0)).toBe(40)
    for (const s of sites) expect(s.endpoints.length).toBeGreaterThanOrEqual(1)
    expect(makeSites({ seed: 7, sites: 4, endpoints: 40, maxSite: 20 })).toEqual(sites)
    const sizes = siteSizes(300, 30_000, 200, prng(1))
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(30_000)
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(200)
    expect(() => siteSizes(3, 700, 200, prng(1))).toThrow(RangeError)
    for (const size of release.sizes) expect(size).toBeGreaterThanOrEqual(1)
    expect(newBytes).toBeGreaterThanOrEqual(1_500_000)
    const picked = sampleSites(makeSites({ seed: 1, sites: 30, endpoints: 900, maxSite: 60 }), 5)
    expect(picked.map(p => p.weight).reduce((a, b) => a + b, 0)).toBe(30)
  })

  for (const variant of VARIANTS) {
    it(`${variant}: every endpoint completes and each chunk crosses the WAN about once per site`, () => {
      for (const base of sites) {
        const site = applyVariant(base, variant, newBytes, 7)
        const disrupted = site.endpoints.filter(e => e.leave !== undefined || e.freeze !== undefined).length
        if ((variant === 'leave' || variant === 'stall') && site.endpoints.length >= 2) expect(disrupted).toBeGreaterThanOrEqual(variant === 'stall' ? 1 : 0)
        const r = simulateSite(site, release)
        expect(r.completed).toBe(r.endpoints)
        expect(r.lanMisses).toBe(0)
        // Every endpoint holds the release, and only one copy of each chunk came over the WAN
        // unless a disruption forced a takeover: at most one extra request per chunk per disrupted peer.
        expect(r.wanRequests - r.wanCancelled).toBeGreaterThanOrEqual(release.cids.length)
        expect(r.extraWanRequests).toBeLessThanOrEqual(disrupted * release.cids.length)
        expect(r.lanBytes).toBeGreaterThanOrEqual((r.endpoints - 1) * newBytes - r.extraWanRequests * 65536)
        if (disrupted === 0) {
          expect(r.extraWanRequests).toBe(0)
          expect(r.wanRequests - r.wanCancelled).toBe(release.cids.length)
          expect(r.ratio).toBeCloseTo(1, 9)
        } else {
          expect(r.ratio).toBeGreaterThanOrEqual(1 - 1e-9)
        }
        expect(r.seedRequestsPerSecond.reduce((a, b) => a + b, 0)).toBe(r.wanRequests)
      }
    })
  }

  it('a stalled owner is taken over only after the stall timeout, and the site still finishes', () => {
    const site: SiteSpec = {
      name: 'stall',
      uplinkRate: 1e6,
      uplinkLatencyMs: 10,
      lanLatencyMs: 0.3,
      endpoints: [
        { weight: 100, lanRate: 125e6, joinMs: 0, freeze: { atMs: 1_200, forMs: 45_000 } },
        { weight: 100, lanRate: 125e6, joinMs: 0 },
        { weight: 40, lanRate: 25e6, joinMs: 0 }
      ]
    }
    const r = simulateSite(site, release)
    expect(r.completed).toBe(3)
    // The frozen owner's share waits ≥ 30 s before the next in rank takes it: the site ends late.
    expect(r.doneMs).toBeGreaterThan(30_000)
    expect(r.extraWanRequests).toBeLessThanOrEqual(release.cids.length)
  })

  it('aggregates sampled sites by their weights', () => {
    const r = simulateSite(applyVariant(sites[0]!, 'base', newBytes, 7), release)
    const row = aggregate('base', [{ r, weight: 3 }], [1e9], 0)
    expect(row.endpoints).toBe(3 * r.endpoints)
    expect(row.wan_ratio).toBeCloseTo(r.ratio, 3)
    expect(row.peak_seed_req_s).toBe(3 * Math.max(...r.seedRequestsPerSecond))
    expect(row.completed).toBe(1)
  })
})

describe('Scheduler rankings under joins, leaves, weight and want changes', () => {
  it('stay what a fresh ranking of the current members gives', () => {
    const cids = Array.from({ length: 40 }, (_, i) => createHash('sha256').update(`r ${i}`).digest('hex'))
    const rnd = prng(3)
    let mine = 40
    const s = new Scheduler({ self: 'me', weight: mine, cids })
    const members = new Map<string, number>()
    const wants = new Map<string, HaveMap | undefined>()
    for (let step = 0; step < 300; step++) {
      const u = rnd()
      const id = `p${Math.floor(rnd() * 12)}`
      if (u < 0.5) {
        const w = [0, 20, 40, 100][Math.floor(rnd() * 4)]!
        // half the hellos carry a want-map (a member on another base wants only part of the table)
        let want: HaveMap | undefined
        if (rnd() < 0.5) {
          want = new HaveMap(cids.length)
          for (let i = 0; i < cids.length; i++) if (rnd() < 0.6) want.set(i)
        }
        s.peerJoined(id, w, new HaveMap(cids.length), want)
        members.set(id, w)
        wants.set(id, want)
      } else if (u < 0.8) {
        s.peerLeft(id)
        members.delete(id)
      } else if (u < 0.9) {
        mine = [0, 40, 100][Math.floor(rnd() * 3)]!
        s.setWeight(mine)
      }
      // Rank a few chunks (fills the cache that later steps must keep exact).
      for (let k = 0; k < 5; k++) {
        const i = Math.floor(rnd() * cids.length)
        const everyone = [{ id: 'me', weight: mine }, ...[...members].filter(([p]) => wants.get(p)?.has(i) !== false).map(([p, w]) => ({ id: p, weight: w }))]
        expect(s.rank(i)).toEqual(rankOwners(cids[i]!, everyone).map(c => c.id))
      }
    }
  })
})
