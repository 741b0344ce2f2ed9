// The local API and `shoal status` against a running in-process daemon; `shoal daemon` argument errors.
import { join } from 'node:path'
import { copyFile, writeFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { shoal } from '../helpers/cli.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

describe('local API and shoal status', () => {
  it('serves status, metrics, pause and resume; shoal status prints them', async () => {
    fleet = await Fleet.create('api')
    const seed = await fleet.startSeed({ api: '127.0.0.1:0' })
    const e = await fleet.startEndpoint('e1', { api: '127.0.0.1:0' })
    const api = e.api!.address
    const p = await fleet.publish(await makeTree(join(fleet.dir, 'v1'), 1), '1.0.0')
    await fleet.push(p.manifestPath)
    await until(async () => await installedVersion(e) === '1.0.0')

    const status = await (await fetch(`http://${api}/status`)).json() as Record<string, unknown>
    expect(status).toMatchObject({
      peerId: e.node.peerId.toString(),
      role: 'endpoint',
      packages: [{ name: 'app', installed: '1.0.0', state: 'installed' }],
      bytes: { seed: expect.any(Number), lan: 0 }
    })
    const metrics = await (await fetch(`http://${api}/metrics`)).text()
    expect(metrics).toMatch(/shoal_bytes_received_total\{source="seed",role="endpoint"\} [1-9]/)
    expect(metrics).toMatch(/shoal_installs_total\{result="installed",role="endpoint"\} 1/)
    // the seed's served counters follow its blobs server (they stayed 0 before)
    const received = status.bytes as { seed: number }
    const seedMetrics = await (await fetch(`http://${seed.api!.address}/metrics`)).text()
    expect(seedMetrics).toContain(`shoal_bytes_served_total{role="seed"} ${received.seed}`)
    expect(seedMetrics).toMatch(/shoal_blobs_served_total\{role="seed"\} [1-9]/)

    expect((await fetch(`http://${api}/pause`, { method: 'POST' })).status).toBe(200)
    expect((await (await fetch(`http://${api}/status`)).json() as { paused: boolean }).paused).toBe(true)
    // paused: a new release is announced but not fetched
    const p2 = await fleet.publish(await makeTree(join(fleet.dir, 'v2'), 2), '2.0.0')
    await fleet.push(p2.manifestPath)
    await until(async () => (await e.status()).heads[0]?.seq === 2)
    await new Promise(r => setTimeout(r, 500))
    expect(await installedVersion(e)).toBe('1.0.0')
    expect((await fetch(`http://${api}/resume`, { method: 'POST' })).status).toBe(200)
    await until(async () => await installedVersion(e) === '2.0.0')
    expect((await fetch(`http://${api}/nope`)).status).toBe(404)

    const text = await shoal(['status', '--api', api])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/app\s+2\.0\.0\s+2\.0\.0\s+installed/)
    const json = await shoal(['status', '--api', api, '--json'])
    expect(JSON.parse(json.stdout)).toMatchObject({ role: 'endpoint', packages: [{ name: 'app', installed: '2.0.0' }] })
  })

  it('shoal status says so when no daemon answers', async () => {
    const r = await shoal(['status', '--api', '127.0.0.1:9'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/ERR_API_UNREACHABLE/)
  })

  it('shoal daemon refuses a bad config or flag with exit 2, naming the field', async () => {
    fleet = await Fleet.create('cfg')
    const cfg = join(fleet.dir, 'c.json')
    await writeFile(cfg, JSON.stringify({ role: 'endpoint', stateDir: 's', enroll: 'e', seeds: ['/ip4/127.0.0.1/tcp/1'], wanRat: 5 }))
    const r1 = await shoal(['daemon', '--config', cfg])
    expect(r1.code).toBe(2)
    expect(r1.stderr).toMatch(/unknown config field "wanRat"/)
    await writeFile(cfg, JSON.stringify({ role: 'endpoint', stateDir: 's', enroll: 'e', seeds: ['/ip4/127.0.0.1/tcp/1'] }))
    const r2 = await shoal(['daemon', '--config', cfg, '--wan-rate', 'fast'])
    expect(r2.code).toBe(2)
    expect(r2.stderr).toMatch(/--wan-rate/)
    const r3 = await shoal(['daemon', '--config', cfg, '--role', 'gateway'])
    expect(r3.code).toBe(2)
    expect(r3.stderr).toMatch(/"role"/)
    const r4 = await shoal(['daemon', '--config', cfg])
    expect(r4.code).toBe(2)
    expect(r4.stderr).toMatch(/enroll/)
  })

  it('shoal publish --to sends a release to the seed without a local repo; a foreign fleet\'s keys exit 3', async () => {
    fleet = await Fleet.create('push')
    const seed = await fleet.startSeed()
    const src = await makeTree(join(fleet.dir, 'v1'), 1)
    const r = await shoal(['publish', src, '--name', 'app', '--version', '1.0.0', '--keys', fleet.keysDir, '--to', fleet.seedAddr, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as { seq: number, seed: { headSeq: number, fetched: number } }
    expect(out.seq).toBe(1)
    expect(out.seed.headSeq).toBe(1)
    expect(out.seed.fetched).toBe((await seed.blobs.stats()).blobs)
    // seq comes from the seed's head, not the (absent) local repo
    const r2 = await shoal(['publish', src, '--name', 'app', '--version', '1.0.1', '--keys', fleet.keysDir, '--to', fleet.seedAddr, '--json'])
    expect(r2.code, r2.stderr).toBe(0)
    // and the payload patch against 1.0.0, whose manifest the publisher (no repo) takes from the seed
    expect((JSON.parse(r2.stdout) as { seq: number, seed: { fetched: number } })).toMatchObject({ seq: 2, seed: { fetched: 0, payloadPatches: 1 } })
    let patches = 0
    for await (const _ of seed.db.manifestPatches.entries()) patches++
    expect(patches).toBe(1)

    const other = await Fleet.create('other')
    try {
      // same network key is needed to even connect: copy ours, keep the other fleet's publisher keys and root
      await copyFile(join(fleet.keysDir, 'fleet.secret'), join(other.keysDir, 'fleet.secret'))
      const r3 = await shoal(['publish', src, '--name', 'app', '--version', '9.0.0', '--keys', other.keysDir, '--to', fleet.seedAddr])
      expect(r3.code).toBe(3)
      expect(r3.stderr).toMatch(/ERR_SIGNATURE_THRESHOLD/)
    } finally {
      await other.cleanup()
    }
  })
})
