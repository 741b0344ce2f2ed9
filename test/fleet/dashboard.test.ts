// The seed's dashboard in real headless Chromium (Debian's `chromium`, driven by playwright-core):
// a seed with real reports from real endpoints, the numbers on the page checked against the
// endpoints' own status, a screenshot saved next to the test's temp files.
import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { chromium, type Browser } from 'playwright-core'
import type { Fleet } from '../daemon/helpers.js'
import { reportingFleet } from './helpers.js'

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
  .find((p): p is string => p !== undefined && p !== '' && existsSync(p))
if (CHROMIUM === undefined) console.log('skipping the dashboard browser test: no chromium binary found (apt-get install chromium, or set CHROMIUM_PATH)')

const TOKEN = 'dashboard-test-token-0123456789'

let fleet: Fleet | undefined
let browser: Browser | undefined
afterEach(async () => {
  await browser?.close(); browser = undefined
  await fleet?.cleanup(); fleet = undefined
})

describe('dashboard', () => {
  it('is off without a token and refuses a wrong one', async () => {
    const rf = await reportingFleet({ api: '127.0.0.1:0', dashboardToken: TOKEN })
    fleet = rf.fleet
    const base = `http://${rf.seed.api!.address}`
    expect((await fetch(`${base}/dashboard`)).status).toBe(401)
    expect((await fetch(`${base}/dashboard?token=wrong-token-0123456789`)).status).toBe(401)
    expect((await fetch(`${base}/dashboard/data`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401)
    const ok = await fetch(`${base}/dashboard/data`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(ok.status).toBe(200)
    const data = await ok.json() as { status: { endpoints: number } }
    expect(data.status.endpoints).toBe(3)
    // the seed's own status API is untouched
    expect((await fetch(`${base}/status`)).status).toBe(200)

    // a seed without a token serves no dashboard at all
    const off = await fleet.start(fleet.config('seed-off', { role: 'seed', enroll: join(fleet.keysDir, 'seed-enroll.json'), api: '127.0.0.1:0' }))
    const r = await fetch(`http://${off.api!.address}/dashboard?token=${TOKEN}`)
    expect(r.status).toBe(404)
    expect(await r.text()).toContain('dashboardToken')
  }, 180_000)

  it.skipIf(CHROMIUM === undefined)('shows rollout by ring, failures and bytes per site in headless Chromium, live', async () => {
    const rf = await reportingFleet({ api: '127.0.0.1:0', dashboardToken: TOKEN })
    fleet = rf.fleet
    const shots = await mkdtemp(join(tmpdir(), 'shoal-dashboard-'))
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    const external: string[] = []
    page.on('request', r => { if (!r.url().startsWith(`http://${rf.seed.api!.address}/`)) external.push(r.url()) })
    const errors: string[] = []
    page.on('pageerror', e => errors.push(e.message))
    await page.goto(`http://${rf.seed.api!.address}/dashboard?token=${TOKEN}`)
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })

    const cell = async (sel: string): Promise<string> => (await page.locator(sel).first().textContent())?.trim() ?? ''
    expect(await cell('#summary')).toBe('3 endpoints · 2 rings')
    expect(await page.locator('#release').inputValue()).toBe('app@1.0.0')
    expect(await cell('tr[data-ring="canary"] td[data-state="endpoints"]')).toBe('1')
    expect(await cell('tr[data-ring="canary"] td[data-state="installed"]')).toBe('1')
    expect(await cell('tr[data-ring="canary"] td[data-state="failed"]')).toBe('0')
    expect(await cell('tr[data-ring="broad"] td[data-state="endpoints"]')).toBe('2')
    expect(await cell('tr[data-ring="broad"] td[data-state="installed"]')).toBe('1')
    expect(await cell('tr[data-ring="broad"] td[data-state="failed"]')).toBe('1')
    expect(await page.locator('tr[data-ring] svg rect').count()).toBeGreaterThanOrEqual(3)

    // Bytes per site, as the endpoints count them.
    for (const site of ['office', 'home']) {
      const members = await Promise.all(rf.eps.map(async e => await e.status()))
      const inSite = members.filter(s => s.site === site)
      const lan = inSite.reduce((n, s) => n + s.bytes.lan, 0)
      const wan = inSite.reduce((n, s) => n + s.bytes.seed + s.bytes.origin, 0)
      expect(Number(await page.locator(`tr[data-site="${site}"] td[data-bytes="lan"]`).getAttribute('data-value'))).toBe(lan)
      expect(Number(await page.locator(`tr[data-site="${site}"] td[data-bytes="wan"]`).getAttribute('data-value'))).toBe(wan)
      expect(wan + lan).toBeGreaterThan(0)
    }

    // The failure with its exit code and log tail.
    const e3 = rf.eps[2]!.node.peerId.toString()
    expect(await cell('#failure-count')).toBe('(1)')
    expect(await cell(`#failures tr[data-peer="${e3}"] td[data-exit]`)).toBe('9')
    expect(await cell(`#failures tr[data-peer="${e3}"] pre`)).toContain('disk check failed on 1.0.0')

    // Live: a fourth endpoint joins the canary ring; the page shows it without a reload.
    const e4 = await fleet.startEndpoint('e4', { ring: 'canary', site: 'home' })
    // (polled from outside: the page's CSP forbids evaluating strings in it, which is the point)
    await expect.poll(async () => await cell('tr[data-ring="canary"] td[data-state="installed"]'), { timeout: 60_000, interval: 250 }).toBe('2')
    expect(await cell('#summary')).toBe('4 endpoints · 2 rings')
    expect((await e4.status()).packages[0]?.state).toBe('installed')

    const shot = join(shots, 'dashboard.png')
    await page.screenshot({ path: shot, fullPage: true })
    console.log(`dashboard screenshot: ${shot}`)
    expect(existsSync(shot)).toBe(true)
    expect(errors).toEqual([])
    expect(external).toEqual([])
  }, 240_000)
})
