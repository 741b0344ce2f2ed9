// A 3-ring rollout on loopback (docs/rollout.md): a seed with webhooks to a real HTTP receiver,
// endpoints in rings canary, pilot, broad (two, one of them with a notify command that defers) and
// an unnamed ring, all in one process on one injectable clock. Records are signed and sent with the
// real CLI (`shoal promote/halt/rollback`), forged ones through the publish protocol.
import { createHash } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair as generatePeerKey } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '../../src/core/keys.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { SeedSession } from '../../src/publish/push.js'
import { parseRolloutSpec } from '../../src/rollout/policy.js'
import { signRecord } from '../../src/rollout/records.js'
import { webhookSignature } from '../../src/rollout/webhooks.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { shoal } from '../helpers/cli.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

const DAY = 86400_000
const SECRET = 'a-webhook-secret-of-some-length'

interface Received { headers: IncomingHttpHeaders, body: string, status: number }

/** A webhook receiver on 127.0.0.1 that answers 500 to the very first request, 204 after. */
async function startReceiver (): Promise<{ server: Server, url: string, got: Received[] }> {
  const got: Received[] = []
  const server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (b: Buffer) => parts.push(b))
    req.on('end', () => {
      const status = got.length === 0 ? 500 : 204
      got.push({ headers: req.headers, body: Buffer.concat(parts).toString('utf8'), status })
      res.statusCode = status
      res.end()
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got }
}

/** path → sha256 of every regular file under dir. */
async function treeHashes (dir: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? e.name : `${prefix}/${e.name}`
    if (e.isDirectory()) Object.assign(out, await treeHashes(dir, rel))
    else out[rel] = createHash('sha256').update(await readFile(join(dir, rel))).digest('hex')
  }
  return out
}

async function pkgState (d: Daemon): Promise<{ state: string, installed: string | null, target: string | null, gate?: { open: boolean, reason: string, opensAt?: string, deadline?: string }, rollbackTo?: string, deferUntil?: string, progress?: { blobs: number, blobsTotal: number } }> {
  const p = (await d.status()).packages.find(x => x.name === 'app')
  if (p === undefined) return { state: 'none', installed: null, target: null }
  return p
}

describe('rollout control on loopback', () => {
  let fleet: Fleet
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  let offset = 0
  const now = (): Date => new Date(Date.now() + offset)
  const d: Record<string, Daemon> = {}
  let v1Dir: string
  let hookLog: string
  let notifyDir: string

  beforeAll(async () => {
    fleet = await Fleet.create('rollout')
    receiver = await startReceiver()
    const secretFile = join(fleet.dir, 'webhook.secret')
    await writeFile(secretFile, SECRET + '\n')
    await fleet.startSeed({ headLifetime: 7 * DAY, pollInterval: 500, webhooks: [receiver.url], webhookSecret: secretFile }, { now })
    hookLog = join(fleet.dir, 'postinstall.log')
    notifyDir = join(fleet.dir, 'notify')
    const script = join(fleet.dir, 'notify.sh')
    // The notify command: keeps what it read, agrees while the "allow" file exists, defers otherwise.
    await writeFile(script, [
      `mkdir -p ${notifyDir}`,
      `cat > ${notifyDir}/$SHOAL_VERSION.json`,
      `if [ -e ${notifyDir}/allow ]; then exit 0; fi`,
      'echo "defer 1h"',
      'exit 75', ''
    ].join('\n'))
    await mkdir(notifyDir, { recursive: true })
    await writeFile(join(notifyDir, 'allow'), '')
    for (const [name, ring] of [['canary', 'canary'], ['pilot', 'pilot'], ['broad1', 'broad'], ['broad2', 'broad'], ['lab', 'lab']] as const) {
      d[name] = await fleet.startEndpoint(name, { ring, ...(name === 'broad2' ? { notify: `/bin/sh ${script}` } : {}) }, { now })
    }
  }, 120_000)

  afterAll(async () => {
    await fleet?.cleanup()
    receiver?.server.close()
  })

  const all = (): Daemon[] => Object.values(d)
  const kickAll = (): void => { for (const x of all()) x.endpoint?.kick() }

  it('installs a release without a policy everywhere at once (today\'s behaviour)', async () => {
    v1Dir = await makeTree(join(fleet.dir, 'src-v1'), 1, { binaryBytes: 100_000, textBytes: 60_000 })
    const v1 = await fleet.publish(v1Dir, '1.0.0', { expires: new Date(Date.now() + 30 * DAY), hooks: { postinstall: `echo "$SHOAL_VERSION $SHOAL_INSTALL_DIR" >> ${hookLog}\n` } })
    await fleet.push(v1.manifestPath)
    await until(async () => (await Promise.all(all().map(installedVersion))).every(v => v === '1.0.0'), 60_000, 'v1 everywhere')
  }, 120_000)

  it('canary installs at once, pilot when its time comes, broad only after promote; an unnamed ring never', async () => {
    await rm(join(notifyDir, 'allow'))
    const v2Dir = await makeTree(join(fleet.dir, 'src-v2'), 2, { binaryBytes: 100_000, textBytes: 60_000 })
    const v2 = await fleet.publish(v2Dir, '2.0.0', {
      expires: new Date(Date.now() + 30 * DAY),
      rollout: parseRolloutSpec('canary:now,pilot:+1d,broad:approval', now()),
      notes: 'Fixes the frobnicator.',
      hooks: { postinstall: `echo "$SHOAL_VERSION $SHOAL_INSTALL_DIR" >> ${hookLog}\n` }
    })
    await fleet.push(v2.manifestPath)
    await until(async () => await installedVersion(d.canary!) === '2.0.0', 60_000, 'canary on v2')
    // Everyone else fetched the bytes early and waits for its ring.
    for (const name of ['pilot', 'broad1', 'broad2', 'lab']) {
      await until(async () => (await pkgState(d[name]!)).state === 'waiting-for-ring', 60_000, `${name} waiting for its ring`)
      const st = await pkgState(d[name]!)
      expect(st.installed).toBe('1.0.0')
      expect(st.progress?.blobs).toBe(st.progress?.blobsTotal)
    }
    const pilot = await pkgState(d.pilot!)
    expect(pilot.gate?.reason).toMatch(/ring pilot opens at/)
    expect(Date.parse(pilot.gate!.opensAt!) - now().getTime()).toBeGreaterThan(DAY - 120_000)
    expect((await pkgState(d.broad1!)).gate?.reason).toMatch(/waits for approval/)
    expect((await pkgState(d.lab!)).gate?.reason).toMatch(/not named in the rollout policy/)

    offset = DAY + 60_000 // a day later, without waiting a day
    kickAll()
    await until(async () => await installedVersion(d.pilot!) === '2.0.0', 60_000, 'pilot on v2 a day later')
    expect((await pkgState(d.broad1!)).state).toBe('waiting-for-ring')

    const r = await shoal(['promote', 'app@2.0.0', '--ring', 'broad', '--keys', fleet.keysDir, '--seed', fleet.seedAddr, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const promoted = JSON.parse(r.stdout) as { id: string, record: { seq: number, ring: string }, seed: { accepted: string } }
    expect(promoted.record).toMatchObject({ seq: 1, ring: 'broad' })
    expect(promoted.seed.accepted).toBe('new')
    await until(async () => await installedVersion(d.broad1!) === '2.0.0', 60_000, 'broad1 on v2 after promote')
    // broad2's notify command deferred it; it read the release's description on stdin.
    await until(async () => (await pkgState(d.broad2!)).state === 'deferred', 60_000, 'broad2 deferred by notify')
    const info = JSON.parse(await readFile(join(notifyDir, '2.0.0.json'), 'utf8')) as Record<string, unknown>
    expect(info).toEqual({ event: 'install', package: 'app', version: '2.0.0', previous: '1.0.0', channel: 'stable', ring: 'broad', notes: 'Fixes the frobnicator.', deadline: null, due: false })
    expect(Date.parse((await pkgState(d.broad2!)).deferUntil!) - now().getTime()).toBeGreaterThan(3000_000)
    expect(await installedVersion(d.lab!)).toBe('1.0.0')
  }, 180_000)

  it('halt stops broad mid-way: the deferred endpoint never installs, even once its user agrees', async () => {
    const r = await shoal(['halt', 'app@2.0.0', '--keys', fleet.keysDir, '--seed', fleet.seedAddr])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/signed halt app@2\.0\.0 \(record seq 2\)/)
    await writeFile(join(notifyDir, 'allow'), '')
    offset += 2 * 3600_000 // past the deferral
    kickAll()
    await until(async () => (await pkgState(d.broad2!)).state === 'halted', 60_000, 'broad2 halted')
    await new Promise(resolve => setTimeout(resolve, 2000)) // a couple of passes
    expect(await installedVersion(d.broad2!)).toBe('1.0.0')
    expect(await installedVersion(d.broad1!)).toBe('2.0.0')
  }, 120_000)

  it('refuses forged and replayed control records (exit 3 from the CLI), at the seed and at endpoints', async () => {
    const replay = await shoal(['promote', 'app@2.0.0', '--ring', 'lab', '--seq', '1', '--keys', fleet.keysDir, '--seed', fleet.seedAddr])
    expect(replay.code).toBe(3)
    expect(replay.stderr).toMatch(/ERR_ROLLBACK/)
    // A valid record that does nothing is stored, and the publisher is told why it does nothing.
    const unnamed = await shoal(['promote', 'app@2.0.0', '--ring', 'lab', '--keys', fleet.keysDir, '--seed', fleet.seedAddr])
    expect(unnamed.code, unnamed.stderr).toBe(0)
    expect(unnamed.stderr).toMatch(/warning: ring lab is not named in the rollout policy of app@2\.0\.0 \(rings: canary, pilot, broad\)/)
    const heldBy = async (x: Daemon): Promise<number> => ((await x.db.kv.get('records/app') as { records: string[] } | null)?.records.length ?? 0)
    await until(async () => await heldBy(d.lab!) === 3, 30_000, 'lab holding three records')
    const s = await SeedSession.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: await generatePeerKey('Ed25519'), blobs: await BlobStore.open(join(fleet.dir, 'scratch')) })
    try {
      const forged = signRecord({ action: 'promote', package: 'app', version: '2.0.0', ring: 'lab', seq: 99, issued: now(), expires: new Date(now().getTime() + DAY), signers: [generateKeyPair()] })
      await expect(s.sendRecord(forged.bytes)).rejects.toMatchObject({ remoteCode: 'ERR_SIGNATURE_THRESHOLD' })
      // Pushed straight to an endpoint, it is refused there too: lab stays closed.
      d.lab!.endpoint!.onPushRecord(forged.bytes, fleet.seed.node.peerId)
      expect(await s.recordSeq('app')).toBe(3)
      // So is a replayed older record sent over announce.
      const stale = signRecord({ action: 'promote', package: 'app', version: '2.0.0', ring: 'lab', seq: 1, issued: now(), expires: new Date(now().getTime() + DAY), signers: fleet.keys.publisherKeys })
      d.lab!.endpoint!.onPushRecord(stale.bytes, fleet.seed.node.peerId)
    } finally {
      await s.close()
    }
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(await heldBy(d.lab!)).toBe(3) // promote broad, halt, promote lab: nothing forged or replayed
    expect((await pkgState(d.lab!)).state).toMatch(/waiting-for-ring|halted/)
    expect(await installedVersion(d.lab!)).toBe('1.0.0')
  }, 120_000)

  it('rollback returns everyone to v1 byte-identically, with hooks run', async () => {
    const r = await shoal(['rollback', 'app@2.0.0', '--to', '1.0.0', '--keys', fleet.keysDir, '--seed', fleet.seedAddr, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).record).toMatchObject({ action: 'rollback', to: '1.0.0', seq: 4 })
    kickAll()
    // the release rolled back from is marked halted just after `current` switches back
    const wentBack = [d.canary!, d.pilot!, d.broad1!]
    await until(async () => (await Promise.all(all().map(installedVersion))).every(v => v === '1.0.0') &&
      (await Promise.all(wentBack.map(pkgState))).every(st => st.state === 'halted'), 90_000, 'everyone back on v1')
    const want = await treeHashes(v1Dir)
    for (const x of all()) {
      expect(await treeHashes(join(x.cfg.installRoot, 'app', 'current'))).toEqual(want)
      const st = await pkgState(x)
      if (x === d.canary || x === d.pilot || x === d.broad1) expect(st).toMatchObject({ state: 'halted', rollbackTo: '1.0.0' })
    }
    // postinstall ran again for 1.0.0 on the three that went back.
    const log = (await readFile(hookLog, 'utf8')).trim().split('\n')
    for (const name of ['canary', 'pilot', 'broad1']) {
      expect(log.filter(l => l.startsWith('1.0.0 ') && l.includes(join(fleet.dir, name))).length, name).toBe(2)
    }
    expect(existsSync(join(d.canary!.cfg.installRoot, 'app', 'versions', '2.0.0'))).toBe(true) // kept as the previous version
  }, 150_000)

  it('sent signed webhooks for each step, retrying the one the receiver failed', async () => {
    await d.canary!.status() // nothing to wait for on endpoints; the seed's sender flushes
    await fleet.seed.webhooks!.flush()
    await until(() => receiver.got.filter(g => g.status === 204).some(g => JSON.parse(g.body).event === 'rolled-back'), 30_000, 'rolled-back webhook')
    for (const g of receiver.got) {
      expect(g.headers['content-type']).toBe('application/json')
      expect(g.headers['x-shoal-signature']).toBe(webhookSignature(Buffer.from(SECRET), g.body))
      expect(g.headers['x-shoal-event']).toBe(JSON.parse(g.body).event)
    }
    // The first delivery got a 500 and came again, the same body.
    expect(receiver.got[0]!.status).toBe(500)
    expect(receiver.got[1]!.body).toBe(receiver.got[0]!.body)
    const events = receiver.got.filter(g => g.status === 204).map(g => JSON.parse(g.body) as { event: string, data: Record<string, unknown> })
    const summary = events.map(e => `${e.event}${typeof e.data.ring === 'string' ? ':' + e.data.ring : ''}${typeof e.data.version === 'string' ? '@' + e.data.version : ''}`)
    // Rollout events in the order they happened; ring-complete comes from the endpoints' reports
    // (fleet store → webhooks), whenever the last endpoint of a ring reports it installed.
    expect(summary.filter(e => !e.startsWith('ring-complete'))).toEqual([
      'published@1.0.0', 'published@2.0.0', 'ring-opened:canary@2.0.0', 'ring-opened:pilot@2.0.0', 'ring-opened:broad@2.0.0', 'halted@2.0.0', 'rolled-back@2.0.0'
    ])
    expect(summary.filter(e => e.startsWith('ring-complete')).sort()).toEqual([
      'ring-complete:broad@1.0.0', 'ring-complete:canary@1.0.0', 'ring-complete:canary@2.0.0', 'ring-complete:lab@1.0.0', 'ring-complete:pilot@1.0.0', 'ring-complete:pilot@2.0.0'
    ])
    expect(events.find(e => e.event === 'ring-opened' && e.data.ring === 'broad')?.data.by).toBe('promote')
    expect(events.find(e => e.event === 'ring-opened' && e.data.ring === 'pilot')?.data.by).toBe('time')
  }, 60_000)
})

describe('deadline and maintenance window on an endpoint', () => {
  let fleet: Fleet
  let offset = 0
  const now = (): Date => new Date(Date.now() + offset)
  let ep: Daemon
  let notifyLog: string

  beforeAll(async () => {
    fleet = await Fleet.create('rollout-deadline')
    await fleet.startSeed({ headLifetime: 7 * DAY }, { now })
    notifyLog = join(fleet.dir, 'notify.log')
    const script = join(fleet.dir, 'notify.sh')
    // Defers 1.0.0 every time it is asked; agrees to anything else.
    await writeFile(script, [`cat >> ${notifyLog}`, 'if [ "$SHOAL_VERSION" = 1.0.0 ]; then echo "defer 1h"; exit 75; fi', ''].join('\n'))
    ep = await fleet.startEndpoint('ep', { ring: 'canary', notify: `/bin/sh ${script}` }, { now })
  }, 120_000)

  afterAll(async () => { await fleet?.cleanup() })

  it('honours a deferral up to the deadline, then installs', async () => {
    const v1 = await fleet.publish(await makeTree(join(fleet.dir, 'src-v1'), 1, { binaryBytes: 50_000, textBytes: 60_000 }), '1.0.0', {
      expires: new Date(Date.now() + 30 * DAY), rollout: parseRolloutSpec('canary:now/deadline=+90m', now())
    })
    await fleet.push(v1.manifestPath)
    await until(async () => (await pkgState(ep)).state === 'deferred', 60_000, 'deferred by notify')
    const deadline = (await pkgState(ep)).gate!.deadline!
    expect(Date.parse((await pkgState(ep)).deferUntil!) - now().getTime()).toBeGreaterThan(3000_000)
    offset = 3600_000 + 60_000 // past the first deferral: asked again, deferred until the deadline at most
    ep.endpoint!.kick()
    await until(async () => (await readFile(notifyLog, 'utf8')).trim().split('\n').length === 2, 60_000, 'asked a second time')
    await until(async () => (await pkgState(ep)).deferUntil === new Date(deadline).toISOString(), 60_000, 'deferred to the deadline')
    expect(await installedVersion(ep)).toBe(null)
    offset = 90 * 60_000 + 60_000
    ep.endpoint!.kick()
    await until(async () => await installedVersion(ep) === '1.0.0', 60_000, 'installed at the deadline')
    const asked = (await readFile(notifyLog, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { due: boolean, deadline: string })
    expect(asked.map(a => a.due)).toEqual([false, false, true])
    expect(asked[0]!.deadline).toBe(deadline)
  }, 150_000)

  it('waits outside its maintenance window and installs inside it', async () => {
    const at = now()
    const h = (at.getUTCHours() + 3) % 24
    const hh = (n: number): string => String(n).padStart(2, '0')
    const v2 = await fleet.publish(await makeTree(join(fleet.dir, 'src-v2'), 2, { binaryBytes: 50_000, textBytes: 60_000 }), '2.0.0', {
      expires: new Date(Date.now() + 30 * DAY), rollout: parseRolloutSpec(`canary:now/window=${hh(h)}:00-${hh((h + 1) % 24)}:00`, at)
    })
    await fleet.push(v2.manifestPath)
    await until(async () => (await pkgState(ep)).state === 'waiting-for-ring', 60_000, 'waiting for the window')
    const st = await pkgState(ep)
    expect(st.gate?.reason).toMatch(/outside its maintenance window/)
    const opens = Date.parse(st.gate!.opensAt!)
    expect(new Date(opens).getUTCHours()).toBe(h)
    expect(new Date(opens).getUTCMinutes()).toBe(0)
    offset += opens - now().getTime() + 60_000 // one minute into the window
    ep.endpoint!.kick()
    await until(async () => await installedVersion(ep) === '2.0.0', 60_000, 'installed inside the window')
  }, 150_000)
})
