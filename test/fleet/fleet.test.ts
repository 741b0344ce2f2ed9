// Issue 6 (fleet visibility): real endpoints report to a real seed over libp2p on loopback; the
// fleet queries, the CLI and the refusals are checked against what the endpoints themselves say.
import { execFileSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { FleetClient } from '../../src/fleet/client.js'
import { encodeReport, MAX_REPORT_BYTES, type Report } from '../../src/fleet/report.js'
import { REPORT_READ_LIMIT } from '../../src/fleet/service.js'
import { bucketOf, type StateCounts } from '../../src/fleet/store.js'
import { REPORT_PROTOCOL } from '../../src/net/constants.js'
import { createShoalNode, type ShoalNode } from '../../src/net/node.js'
import { callRpc } from '../../src/net/rpc.js'
import { shoal } from '../helpers/cli.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Fleet } from '../daemon/helpers.js'
import { reportingFleet } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

function dpkgVersion (pkg: string): string | null {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' })
  } catch {
    return null
  }
}
const bashVersion = dpkgVersion('bash')
if (bashVersion === null) console.log('skipping the dpkg inventory checks: dpkg-query is absent or does not know bash (not a Debian/Ubuntu machine)')

describe('fleet reports, status, inventory and audit on loopback', () => {
  it('fleet status counts match what the endpoints report; failures, events, inventory, audit, CLI', async () => {
    const rf = await reportingFleet()
    fleet = rf.fleet
    const { eps, publisherKey } = rf
    const client = await FleetClient.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: publisherKey })
    try {
      // What the endpoints say about themselves, counted the way fleet status counts.
      const expected: Record<string, StateCounts & { endpoints: number }> = {}
      const bytesBySite: Record<string, { lan: number, wan: number }> = {}
      for (const e of eps) {
        const s = await e.status()
        const c = expected[s.ring] ??= { pending: 0, downloading: 0, 'waiting-for-ring': 0, installed: 0, failed: 0, other: 0, endpoints: 0 }
        c[bucketOf(s.packages[0]!.state)]++
        c.endpoints++
        const b = bytesBySite[s.site!] ??= { lan: 0, wan: 0 }
        b.lan += s.bytes.lan
        b.wan += s.bytes.seed + s.bytes.origin
      }
      const st = await client.query('status')
      expect(st.endpoints).toBe(3)
      expect(st.rings).toEqual({ canary: 1, broad: 2 })
      expect(st.releases).toHaveLength(1)
      expect(st.releases[0]).toMatchObject({ package: 'app', version: '1.0.0' })
      expect(st.releases[0]!.rings).toEqual(expected)
      expect(expected).toEqual({
        canary: { pending: 0, downloading: 0, 'waiting-for-ring': 0, installed: 1, failed: 0, other: 0, endpoints: 1 },
        broad: { pending: 0, downloading: 0, 'waiting-for-ring': 0, installed: 1, failed: 1, other: 0, endpoints: 2 }
      })
      for (const site of st.sites) {
        expect({ lan: site.lan, wan: site.wan }).toEqual(bytesBySite[site.site])
        expect(site.wan + site.lan).toBeGreaterThan(0)
      }
      expect(st.sites.map(s => s.site)).toEqual(['home', 'office'])
      expect((await client.query('status', { package: 'other-app' })).releases).toEqual([])

      // The failure with its hook exit code and log tail, as the endpoint recorded it.
      const failures = await client.query('failures')
      expect(failures).toHaveLength(1)
      expect(failures[0]).toMatchObject({ peerId: eps[2]!.node.peerId.toString(), ring: 'broad', site: 'home', package: 'app', version: '1.0.0', code: 'ERR_HOOK_FAILED', exitCode: 9 })
      expect(failures[0]!.logTail).toContain('disk check failed on 1.0.0')

      // Events for the merger's webhooks: the failure once, canary complete, broad not (e3 failed).
      expect(rf.events).toHaveLength(2)
      expect(rf.events).toEqual(expect.arrayContaining([
        { event: 'install-failed', payload: { peerId: eps[2]!.node.peerId.toString(), site: 'home', ring: 'broad', package: 'app', version: '1.0.0', error: expect.objectContaining({ code: 'ERR_HOOK_FAILED', exitCode: 9 }) } },
        { event: 'ring-complete', payload: { package: 'app', version: '1.0.0', ring: 'canary', endpoints: 1 } }
      ]))
      // periodic / repeated reports do not repeat events
      await Promise.all(eps.map(async e => { await e.reporter!.flush() }))
      expect(rf.events).toHaveLength(2)

      const endpoints = await client.query('endpoints')
      expect(endpoints.map(e => e.peerId).sort()).toEqual(eps.map(e => e.node.peerId.toString()).sort())
      const e1 = endpoints.find(e => e.peerId === eps[0]!.node.peerId.toString())!
      expect(e1).toMatchObject({ ring: 'canary', site: 'office', installed: [{ package: 'app', version: '1.0.0' }] })

      // Inventory: the shoal package where it is installed, and an OS package this machine has.
      const app = await client.query('inventory', { package: 'app' })
      expect(app.rows.map(r => [r.peerId, r.source, r.version]).sort()).toEqual(
        [eps[0]!, eps[1]!].map(e => [e.node.peerId.toString(), 'shoal', '1.0.0']).sort())
      if (bashVersion !== null) {
        const bash = await client.query('inventory', { package: 'bash' })
        expect(bash.rows).toHaveLength(3)
        for (const r of bash.rows) expect(r).toMatchObject({ source: 'dpkg', name: 'bash', version: bashVersion })
        expect(e1.inventory.source).toBe('dpkg')
        expect(e1.inventory.count).toBeGreaterThan(10)
      }

      // The CLI, as a user runs it (a real process, the publisher's keys folder).
      const seedArg = fleet.seedAddr
      const json = await shoal(['fleet', 'status', '--seed', seedArg, '--keys', fleet.keysDir, '--json'])
      expect(json.stderr).toBe('')
      expect(json.code).toBe(0)
      expect((JSON.parse(json.stdout) as typeof st).releases[0]!.rings).toEqual(expected)
      const text = await shoal(['fleet', 'status', '--seed', seedArg, '--keys', fleet.keysDir])
      expect(text.code).toBe(0)
      expect(text.stdout).toMatch(/app@1\.0\.0\s+broad\s+0\s+0\s+0\s+1\s+1\s+0/)
      expect(text.stdout).toMatch(/app@1\.0\.0\s+canary\s+0\s+0\s+0\s+1\s+0\s+0/)
      const fails = await shoal(['fleet', 'failures', '--seed', seedArg, '--keys', fleet.keysDir])
      expect(fails.code).toBe(0)
      expect(fails.stdout).toContain('ERR_HOOK_FAILED exit 9')
      expect(fails.stdout).toContain('disk check failed on 1.0.0')

      if (bashVersion !== null) {
        const policy = join(fleet.dir, 'policy.json')
        await writeFile(policy, JSON.stringify({ deny: ['bas?', 'telnetd'] }))
        const a = await shoal(['fleet', 'audit', '--seed', seedArg, '--keys', fleet.keysDir, '--policy', policy, '--json'])
        expect(a.code).toBe(1)
        const v = (JSON.parse(a.stdout) as { violations: Array<{ name: string, rule: string, pattern: string, peerId: string }> }).violations
        expect(v.filter(x => x.name === 'bash')).toHaveLength(3)
        expect(v.every(x => x.rule === 'denied' && x.pattern === 'bas?')).toBe(true)
        await writeFile(policy, JSON.stringify({ deny: ['no-such-package-*'] }))
        const clean = await shoal(['fleet', 'audit', '--seed', seedArg, '--keys', fleet.keysDir, '--policy', policy])
        expect(clean.code).toBe(0)
        expect(clean.stdout).toContain('no violations across 3 endpoints')
        await writeFile(policy, '{"denny": ["x"]}')
        const bad = await shoal(['fleet', 'audit', '--seed', seedArg, '--keys', fleet.keysDir, '--policy', policy])
        expect(bad.code).toBe(2)
        expect(bad.stderr).toContain('ERR_AUDIT_POLICY')
      }
    } finally {
      await client.close()
    }
  }, 180_000)

  it('refuses fleet queries from a PeerId outside "publishers", and from everyone when the list is empty', async () => {
    fleet = await Fleet.create('fleet-auth')
    const insider = await generateKeyPair('Ed25519')
    await fleet.startSeed({ publishers: [peerIdFromPrivateKey(insider).toString()] })
    const ok = await FleetClient.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: insider })
    const other = await FleetClient.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: await generateKeyPair('Ed25519') })
    try {
      expect((await ok.query('status')).endpoints).toBe(0)
      for (const op of ['status', 'endpoints', 'failures', 'inventory'] as const) {
        await expect(other.query(op)).rejects.toMatchObject({ remoteCode: 'ERR_FLEET_UNAUTHORIZED' })
      }
    } finally {
      await ok.close()
      await other.close()
    }
    const r = await shoal(['fleet', 'endpoints', '--seed', fleet.seedAddr, '--keys', fleet.keysDir])
    expect(r.code).toBe(3)
    // usage errors: exit 2, before any connection
    expect((await shoal(['fleet', 'status', '--seed', fleet.seedAddr, '--keys', fleet.keysDir, '--package', 'a b'])).code).toBe(2)
    expect((await shoal(['fleet', 'status', '--seed', '/ip4/127.0.0.1/tcp/1', '--keys', fleet.keysDir])).stderr).toContain('must end in /p2p/')
    expect(r.stderr).toContain('not in this seed\'s "publishers" list')

    await fleet.cleanup()
    fleet = await Fleet.create('fleet-auth-empty')
    await fleet.startSeed()
    const anyone = await FleetClient.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: insider })
    try {
      await expect(anyone.query('status')).rejects.toMatchObject({ remoteCode: 'ERR_FLEET_UNAUTHORIZED', message: expect.stringContaining('list is empty') })
    } finally {
      await anyone.close()
    }
  }, 120_000)

  it('binds a report to its sender and refuses forged, oversize and malformed reports, keeping what it had', async () => {
    fleet = await Fleet.create('fleet-forge')
    const seed = await fleet.startSeed()
    const victim = await fleet.startEndpoint('victim', { ring: 'canary' }, { inventory: async () => ({ source: 'none', reason: 'test', truncated: false, collectedAt: new Date().toISOString(), packages: [] }) })
    await victim.reporter!.flush()
    await until(() => seed.fleet!.size === 1)
    expect(seed.fleet!.list()[0]).toMatchObject({ peerId: victim.node.peerId.toString(), ring: 'canary', releases: [] })

    const attacker: ShoalNode = await createShoalNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], networkKey: fleet.keys.fleet.networkKey })
    const send = async (body: Uint8Array): Promise<Uint8Array> => await callRpc(attacker, multiaddr(fleet!.seedAddr), REPORT_PROTOCOL, body, { maxRequestBytes: REPORT_READ_LIMIT, maxResponseBytes: 1024, timeoutMs: 20_000 })
    const report = (over: Partial<Report> = {}): Report => ({
      v: 1, peerId: attacker.peerId.toString(), sentAt: new Date().toISOString(), daemonVersion: '0.1.0', site: null, ring: 'broad',
      installed: [], releases: [], bytes: { lan: 0, seed: 0, origin: 0 },
      inventory: { source: 'none', reason: 'test', truncated: false, collectedAt: new Date().toISOString(), packages: [] },
      ...over
    })
    try {
      // A fleet member may report for itself…
      await send(encodeReport(report()))
      expect(seed.fleet!.size).toBe(2)
      // …never for another endpoint.
      await expect(send(encodeReport(report({ peerId: victim.node.peerId.toString(), ring: 'evil', releases: [{ package: 'app', version: '9.9.9', state: 'failed' }] }))))
        .rejects.toMatchObject({ remoteCode: 'ERR_REPORT_PEER' })
      // Oversize: a valid shape padded past the cap.
      const huge = report({ inventory: { source: 'dpkg', truncated: false, collectedAt: new Date().toISOString(), packages: Array.from({ length: 13_900 }, (_, i) => ({ name: `pkg-${i}-${'x'.repeat(40)}`, version: '1.0' })) } })
      const hugeBytes = encodeReport(huge)
      expect(hugeBytes.byteLength).toBeGreaterThan(MAX_REPORT_BYTES)
      expect(hugeBytes.byteLength).toBeLessThan(REPORT_READ_LIMIT)
      await expect(send(hugeBytes)).rejects.toMatchObject({ remoteCode: 'ERR_REPORT_OVERSIZE' })
      // Malformed, field by field.
      const bad: Array<[string, unknown]> = [
        ['not JSON', 'not json{'],
        ['unknown field', { ...report(), admin: true }],
        ['wrong version', { ...report(), v: 2 }],
        ['bad ring', { ...report(), ring: 'no spaces please' }],
        ['bad state', { ...report(), releases: [{ package: 'app', version: '1.0.0', state: 'INSTALLED!' }] }],
        ['negative bytes', { ...report(), bytes: { lan: -1, seed: 0, origin: 0 } }],
        ['log tail too long', { ...report(), releases: [{ package: 'app', version: '1.0.0', state: 'failed', error: { code: 'ERR_HOOK_FAILED', message: 'x', logTail: 'y'.repeat(9000) } }] }],
        ['bad inventory source', { ...report(), inventory: { ...report().inventory, source: 'apt' } }],
        ['array', [report()]]
      ]
      for (const [what, body] of bad) {
        const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : new TextEncoder().encode(JSON.stringify(body))
        await expect(send(bytes), what).rejects.toMatchObject({ remoteCode: 'ERR_REPORT_INVALID' })
      }
    } finally {
      await attacker.stop()
    }
    const after = seed.fleet!.list().find(r => r.peerId === victim.node.peerId.toString())
    expect(after).toMatchObject({ ring: 'canary', releases: [] })
    expect(seed.fleet!.size).toBe(2)
  }, 120_000)
})

async function until (cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
