// The fleet parts on their own: the report decoder, the package-list parser and collector, the
// audit policy, and the store's counts and events over a real LevelDB.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { audit, AuditPolicyError, globToRegExp, parsePolicy } from '../../src/fleet/audit.js'
import { collectInventory, parsePackageLines } from '../../src/fleet/inventory.js'
import { decodeReport, encodeReport, MAX_REPORT_BYTES, ReportInvalidError, ReportOversizeError, type Inventory, type Report } from '../../src/fleet/report.js'
import { FleetStore, type EndpointRecord, type FleetEventName } from '../../src/fleet/store.js'
import { StateDb, type KV } from '../../src/store/state-db.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createShoalNode } from '../../src/net/node.js'
import { Reporter } from '../../src/fleet/reporter.js'

const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const PEER2 = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq'
const inv = (): Inventory => ({ source: 'none', reason: 'test', truncated: false, collectedAt: '2026-12-01T10:00:00.000Z', packages: [] })
const report = (over: Partial<Report> = {}): Report => ({
  v: 1, peerId: PEER, sentAt: '2026-12-01T10:00:00.000Z', daemonVersion: '0.1.0', site: 'office', ring: 'canary',
  installed: [], releases: [], bytes: { lan: 0, seed: 0, origin: 0 }, inventory: inv(), ...over
})

describe('report decoder', () => {
  it('round-trips a full report', () => {
    const r = report({
      installed: [{ package: 'app', version: '1.0.0' }],
      releases: [{ package: 'app', version: '1.1.0', state: 'failed', channel: 'stable', progress: { blobs: 1, blobsTotal: 2, bytes: 3, bytesTotal: 4 }, error: { code: 'ERR_HOOK_FAILED', message: 'x', exitCode: 3, logTail: 'tail' } }],
      inventory: { source: 'dpkg', truncated: true, collectedAt: '2026-12-01T10:00:00.000Z', packages: [{ name: 'bash', version: '5.2.15-2+b7' }] }
    })
    expect(decodeReport(encodeReport(r))).toEqual(r)
  })

  it.each<[string, unknown]>([
    ['a site that is not a label', { site: 'a b' }],
    ['a PeerId with 0 and O', { peerId: '0OIl'.repeat(10) }],
    ['a time that is not ISO', { sentAt: 'yesterday' }],
    ['a fractional byte count', { bytes: { lan: 1.5, seed: 0, origin: 0 } }],
    ['an exit code out of range', { releases: [{ package: 'app', version: '1.0.0', state: 'failed', error: { code: 'ERR_X', message: '', exitCode: 300 } }] }],
    ['an error code that is not ERR_*', { releases: [{ package: 'app', version: '1.0.0', state: 'failed', error: { code: 'boom', message: '' } }] }],
    ['an unknown release field', { releases: [{ package: 'app', version: '1.0.0', state: 'installed', extra: 1 }] }],
    ['a package name with a slash', { installed: [{ package: '../etc', version: '1' }] }],
    ['an inventory package with a space', { inventory: { ...inv(), packages: [{ name: 'a b', version: '1' }] } }],
    ['too many releases', { releases: Array.from({ length: 1025 }, () => ({ package: 'app', version: '1.0.0', state: 'installed' })) }]
  ])('refuses %s', (_what, patch) => {
    expect(() => decodeReport(new TextEncoder().encode(JSON.stringify({ ...report(), ...(patch as object) })))).toThrow(ReportInvalidError)
  })

  it('refuses oversize bytes before parsing them', () => {
    expect(() => decodeReport(new Uint8Array(MAX_REPORT_BYTES + 1))).toThrow(ReportOversizeError)
    expect(() => decodeReport(new Uint8Array([0xff, 0xfe]))).toThrow(/not UTF-8 JSON/)
  })
})

describe('inventory', () => {
  it('keeps installed packages only, sorted, bounded', () => {
    const out = 'ii \tzsh\t5.9-4\nrc \told\t1.0\nii \tbash\t5.2.15-2+b7\nhi \theld\t2\nii \tbad name\t1\n\n'
    expect(parsePackageLines(out)).toEqual({ truncated: false, packages: [{ name: 'bash', version: '5.2.15-2+b7' }, { name: 'held', version: '2' }, { name: 'zsh', version: '5.9-4' }] })
    expect(parsePackageLines(out, 2)).toMatchObject({ truncated: true })
  })

  it('says why it is empty when no package manager answers', async () => {
    const r = await collectInventory({ collectors: [{ source: 'rpm', command: '/nonexistent/rpm', args: [] }, { source: 'dpkg', command: '/bin/false', args: [] }] })
    expect(r).toMatchObject({ source: 'none', packages: [], truncated: false })
    expect(r.reason).toMatch(/\/nonexistent\/rpm: .*ENOENT.*; \/bin\/false exited with code 1/)
    const slow = await collectInventory({ timeoutMs: 200, collectors: [{ source: 'dpkg', command: '/bin/sleep', args: ['5'] }] })
    expect(slow.reason).toContain('timed out after 200 ms')
  })
})

describe('audit policy', () => {
  it('parses allow and deny lists and refuses anything else', () => {
    expect(parsePolicy('{"deny":["telnetd"],"$comment":"x"}')).toEqual({ deny: ['telnetd'] })
    for (const bad of ['[]', '{}', '{"deny":"telnetd"}', '{"deny":["a b"]}', '{"denied":[]}', 'nope']) {
      expect(() => parsePolicy(bad), bad).toThrow(AuditPolicyError)
    }
  })

  it('matches whole names with * and ?, deny before allow', () => {
    expect(globToRegExp('lib*-dev').test('libssl-dev')).toBe(true)
    expect(globToRegExp('lib*-dev').test('xlibssl-dev')).toBe(false)
    expect(globToRegExp('a.b').test('axb')).toBe(false)
    const row = (name: string) => ({ peerId: PEER, site: null, ring: 'broad', source: 'dpkg' as const, name, version: '1' })
    const v = audit([row('bash'), row('telnetd'), row('libfoo'), row('gcc')], { allow: ['bash', 'lib*', 'telnetd'], deny: ['telnet*'] })
    expect(v.map(x => [x.name, x.rule, x.pattern])).toEqual([['telnetd', 'denied', 'telnet*'], ['gcc', 'not-allowed', undefined]])
  })
})

describe('fleet store', () => {
  let dir: string | undefined
  let db: StateDb | undefined
  afterEach(async () => { await db?.close(); db = undefined; if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('counts by ring and state, emits install-failed once and ring-complete once, across a restart', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-fleet-store-'))
    db = await StateDb.open(dir)
    const at = new Date('2026-12-01T10:00:00Z')
    const open = async (): Promise<FleetStore> => await FleetStore.open(db!.fleetReports as KV<EndpointRecord>, db!.fleetInventory as KV<Inventory>, undefined, { now: at })
    let store = await open()
    const events: Array<[FleetEventName, unknown]> = []
    store.onEvent((e, p) => { events.push([e, p]) })
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'downloading' }] }), at)
    await store.put(report({ peerId: PEER2, ring: 'canary', releases: [{ package: 'app', version: '2.0.0', state: 'waiting-for-ring' }] }), at)
    expect(store.status({}, at).releases[0]!.rings.canary).toMatchObject({ downloading: 1, 'waiting-for-ring': 1, endpoints: 2 })
    expect(events).toEqual([])
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'failed', error: { code: 'ERR_HOOK_FAILED', message: 'm', exitCode: 4 } }] }), at)
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'failed', error: { code: 'ERR_HOOK_FAILED', message: 'm', exitCode: 4 } }] }), at)
    expect(events.map(e => e[0])).toEqual(['install-failed'])
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), at)
    await store.put(report({ peerId: PEER2, ring: 'canary', releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), at)
    expect(events.map(e => e[0])).toEqual(['install-failed', 'ring-complete'])
    expect(events[1]![1]).toEqual({ package: 'app', version: '2.0.0', ring: 'canary', endpoints: 2 })
    // a listener that throws does not stop the others or the store
    store.onEvent(() => { throw new Error('listener bug') })
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'installed' }, { package: 'tool', version: '1.0.0', state: 'failed' }] }), at)
    expect(events.map(e => e[0])).toEqual(['install-failed', 'ring-complete', 'install-failed'])

    store = await open()
    expect(store.size).toBe(2)
    expect(store.status({}, at).releases.map(r => `${r.package}@${r.version}`)).toEqual(['app@2.0.0', 'tool@1.0.0'])
    const after: string[] = []
    store.onEvent((e, _payload) => { after.push(e) })
    await store.put(report({ releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), at)
    await store.put(report({ peerId: PEER2, ring: 'canary', releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), at)
    expect(after).toEqual([]) // canary was complete before the restart: not announced again
  })

  it('counts an endpoint that stopped reporting apart: not in status, not holding its ring open', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-fleet-store-'))
    db = await StateDb.open(dir)
    const hour = 3600_000
    const t0 = new Date('2026-12-01T10:00:00Z')
    const later = (h: number): Date => new Date(t0.getTime() + h * hour)
    const store = await FleetStore.open(db.fleetReports as KV<EndpointRecord>, db.fleetInventory as KV<Inventory>, undefined, { staleAfterMs: 24 * hour, now: t0 })
    const events: Array<[FleetEventName, unknown]> = []
    store.onEvent((e, p) => { events.push([e, p]) })
    // PEER2 (canary) reports once, then is switched off for good
    await store.put(report({ peerId: PEER2, ring: 'canary', site: 'hq', releases: [{ package: 'app', version: '2.0.0', state: 'downloading' }] }), t0)
    await store.put(report({ ring: 'canary', site: 'hq', releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), later(1))
    expect(events).toEqual([]) // PEER2 still counts: the ring is not complete
    expect(store.status({}, later(1))).toMatchObject({ endpoints: 2, stale: 0, staleAfterMs: 24 * hour })
    // a day after PEER2's last report it no longer counts; the next report completes the ring without it
    await store.put(report({ ring: 'canary', site: 'hq', releases: [{ package: 'app', version: '2.0.0', state: 'installed' }] }), later(25))
    expect(events).toEqual([['ring-complete', { package: 'app', version: '2.0.0', ring: 'canary', endpoints: 1 }]])
    const st = store.status({}, later(25))
    expect(st).toMatchObject({ endpoints: 1, stale: 1, rings: { canary: 1 } })
    expect(st.releases[0]!.total).toMatchObject({ installed: 1, downloading: 0 })
    expect(st.sites).toMatchObject([{ site: 'hq', endpoints: 1 }])
    // still listed, marked, for the admin who looks for it
    expect(store.list(later(25)).map(e => [e.peerId === PEER2, e.stale])).toEqual(expect.arrayContaining([[true, true], [false, false]]))
    // reporting again brings it back
    await store.put(report({ peerId: PEER2, ring: 'canary', site: 'hq', releases: [{ package: 'app', version: '2.0.0', state: 'downloading' }] }), later(26))
    expect(store.status({}, later(26))).toMatchObject({ endpoints: 2, stale: 0 })
  })
})

describe('reporter', () => {
  it('sends an inventory too large for a report as an empty, truncated list that says why', async () => {
    const node = await createShoalNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], networkKey: new Uint8Array(32) })
    try {
      const packages = Array.from({ length: 20_000 }, (_, i) => ({ name: `package-${i}-${'n'.repeat(30)}`, version: `1.${i}.0-${'v'.repeat(20)}` }))
      const r = new Reporter({
        node, seeds: [], interval: 60_000, now: () => new Date(),
        collect: async () => ({ daemonVersion: '0.1.0', site: null, ring: 'broad', installed: [], releases: [], bytes: { lan: 0, seed: 0, origin: 0 } }),
        inventory: async () => ({ source: 'dpkg', truncated: false, collectedAt: new Date().toISOString(), packages }),
        log: { warn: () => {}, debug: () => {} }
      })
      const built = await r.build()
      expect(built.peerId).toBe(node.peerId.toString())
      expect(built.inventory).toMatchObject({ source: 'dpkg', truncated: true, packages: [] })
      expect(built.inventory.reason).toContain('does not fit')
      expect(decodeReport(encodeReport(built))).toEqual(built)
    } finally {
      await node.stop()
    }
  })
})
