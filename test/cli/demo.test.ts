// `shoal demo`: the newcomer's main job must run and tell the truth about where bytes came from.
import { describe, expect, it } from 'vitest'
import { shoal } from '../helpers/cli.js'

interface Report { releases: Array<{ version: string, newBlobBytes: number, fetchBytesFromPrevious: number, deltaBlobs: number, sites: Array<{ site: string, endpoints: number, wanBytes: number, lanBytes: number }>, endpoints: Array<{ installed: string | null }> }> }

describe('shoal demo', () => {
  it('installs v1 and v2 everywhere; each site pulls what one endpoint needs from the seed once (delta blobs for v2)', async () => {
    const r = await shoal(['demo', '--sites', '2', '--endpoints', '3', '--json'], { timeoutMs: 120_000 })
    expect(r.code, r.stderr).toBe(0)
    const report = JSON.parse(r.stdout) as Report
    expect(report.releases.map(x => x.version)).toEqual(['1.0.0', '1.1.0'])
    for (const rel of report.releases) {
      expect(rel.sites).toHaveLength(2)
      for (const s of rel.sites) {
        expect(s.endpoints).toBe(3)
        // every endpoint got every new blob; the site took at least one copy from the seed (the
        // ≤ 1.05 × bound is asserted on bigger releases in test/daemon/swarm.test.ts)
        expect(s.wanBytes + s.lanBytes).toBeGreaterThanOrEqual(3 * rel.fetchBytesFromPrevious)
        expect(s.wanBytes).toBeGreaterThanOrEqual(rel.fetchBytesFromPrevious)
        expect(s.wanBytes).toBeLessThan(3 * rel.fetchBytesFromPrevious)
      }
      expect(rel.endpoints.every(e => e.installed === rel.version)).toBe(true)
    }
    const v2 = report.releases[1]!
    if (v2.deltaBlobs > 0) expect(v2.fetchBytesFromPrevious).toBeLessThan(v2.newBlobBytes)
  }, 150_000)

  it('refuses a bad shape with exit 2', async () => {
    const r = await shoal(['demo', '--sites', '0'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--sites/)
  })
})
