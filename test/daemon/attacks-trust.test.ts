// Issue 7, attacks on what is trusted, mounted against real daemons on loopback (real libp2p,
// LevelDB, installs): a compromised seed (it holds the online key and its own state) serves heads
// and manifests that are not signed as the pinned root requires. Each test: the endpoint refuses
// with a reason in its status, its report and its log; nothing is installed; the previous
// version keeps running byte for byte; no verified blob is lost; the honest release then installs.
import { join } from 'node:path'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { generateKeyPair as generatePeerKey } from '@libp2p/crypto/keys'
import { afterEach, describe, expect, it } from 'vitest'
import { loadHead, storeHead } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { decodeHead, signHead } from '../../src/core/head.js'
import { decodePrivateKeyFile, generateKeyPair, sign, type KeyPair } from '../../src/core/keys.js'
import { encodeSeedEnrollment } from '../../src/core/enroll.js'
import { createRoot, decodeRoot } from '../../src/core/root.js'
import { encodeEnvelope } from '../../src/core/signed.js'
import { formatStatus } from '../../src/cli/status.js'
import { SeedSession } from '../../src/publish/push.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

const HOUR = 3600_000
const headStatus = async (d: Daemon) => (await d.status()).heads.find(h => h.channel === 'stable')
const appStatus = async (d: Daemon) => (await d.status()).packages.find(p => p.name === 'app')

/** What a holder of `signers` (the seed's online key, or any key) makes the seed serve for the stable channel. */
async function serveHead (seed: Daemon, signers: KeyPair[], seq: number, packages: Record<string, { manifest: string, seq: number, version: string }>): Promise<Uint8Array> {
  const now = new Date()
  const { bytes } = signHead({ channel: 'stable', seq, issued: now, expires: new Date(now.getTime() + HOUR), packages, signers })
  await storeHead(seed.db, 'stable', bytes)
  return bytes
}

/** Every blob the endpoint holds, by cid (what "nothing verified is lost" compares). */
async function heldBlobs (d: Daemon): Promise<number> {
  return (await d.blobs.stats()).blobs
}

/** A seed and one endpoint running v1; returns the v1 source tree and the head the seed serves. */
async function runningV1 (f: Fleet): Promise<{ seed: Daemon, ep: Daemon, v1dir: string }> {
  const seed = await f.startSeed()
  const ep = await f.startEndpoint('e1')
  const v1dir = await makeTree(join(f.dir, 'src-v1'), 1)
  await f.push((await f.publish(v1dir, '1.0.0')).manifestPath)
  await until(async () => await installedVersion(ep) === '1.0.0', 30_000, 'v1 installed')
  return { seed, ep, v1dir }
}

describe('arbitrary installation and key compromise below threshold', () => {
  it('a manifest signed by an unknown key, then by one of two required publisher keys, is refused even in a head the online key signed; the 2-of-2 release installs', async () => {
    const f = fleet = await Fleet.create('attack-arbitrary', { publisherKeys: 2, publisherThreshold: 2 })
    const { seed, ep, v1dir } = await runningV1(f)
    const blobsBefore = await heldBlobs(ep)
    const online = f.keys.onlineKey!
    const head = decodeHead((await loadHead(seed.db, 'stable'))!).signed
    const attackerRepo = join(f.dir, 'attacker-repo')
    const v2dir = await makeTree(join(f.dir, 'src-v2'), 2)

    const attempts: Array<{ version: string, seq: number, signers: KeyPair[], why: RegExp }> = [
      { version: '2.0.0', seq: 2, signers: [generateKeyPair()], why: /0 valid signature\(s\) from the required keys, 2 needed/ }, // a key the root does not list
      { version: '2.0.1', seq: 3, signers: [f.keys.publisherKeys[0]!], why: /1 valid signature\(s\) from the required keys, 2 needed/ } // one stolen publisher key alone
    ]
    let headSeq = head.seq
    for (const a of attempts) {
      const p = await f.publish(v2dir, a.version, { signers: a.signers, seq: a.seq, repoDir: attackerRepo })
      const bytes = await readFile(p.manifestPath)
      // the seed refuses such an upload (test/daemon/fleet.test.ts); a compromised one writes it into its state
      await seed.db.manifests.put(p.manifestId, bytes)
      await serveHead(seed, [online], ++headSeq, { app: { manifest: p.manifestId, seq: a.seq, version: a.version } })
      await until(async () => (await appStatus(ep))?.target === a.version && (await appStatus(ep))?.error !== undefined, 20_000, `${a.version} refused`)
      const st = (await appStatus(ep))!
      expect(st).toMatchObject({ installed: '1.0.0', state: 'failed', error: { code: 'ERR_SIGNATURE_THRESHOLD' } })
      expect(st.error!.message).toMatch(a.why)
      // the refusal reaches the fleet view through the endpoint's report
      await until(() => seed.fleet!.list().some(r => r.releases.some(x => x.version === a.version && x.error?.code === 'ERR_SIGNATURE_THRESHOLD')), 20_000, `${a.version} refusal reported`)
      expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v1dir))
      expect(await heldBlobs(ep)).toBe(blobsBefore)
    }
    // nothing of either was staged or installed
    expect((await readdir(join(ep.cfg.installRoot, 'app'))).filter(n => n.includes('2.0.'))).toEqual([])

    // The honest 2-of-2 release, sequence above what the attacker named, installs.
    const real = await f.publish(v2dir, '2.1.0', { seq: 4 })
    await f.push(real.manifestPath)
    await until(async () => await installedVersion(ep) === '2.1.0', 30_000, '2.1.0 installed')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
  }, 60_000)
})

describe('mix-and-match with a stolen online key', () => {
  it('a head re-signed to name the v1 manifest as the newer 3.0.0 is refused at the manifest; v2 keeps running', async () => {
    const f = fleet = await Fleet.create('attack-mix')
    const { seed, ep } = await runningV1(f)
    const v1id = decodeHead((await loadHead(seed.db, 'stable'))!).signed.packages.app!.manifest
    const v2dir = await makeTree(join(f.dir, 'src-v2'), 2)
    await f.push((await f.publish(v2dir, '2.0.0')).manifestPath)
    await until(async () => await installedVersion(ep) === '2.0.0', 30_000, 'v2 installed')
    const blobsBefore = await heldBlobs(ep)
    const cur = decodeHead((await loadHead(seed.db, 'stable'))!).signed
    // a valid head (online key, seq and package seq moving forward) pairing v1's manifest with another moment's entry
    await serveHead(seed, [f.keys.onlineKey!], cur.seq + 1, { app: { manifest: v1id, seq: 3, version: '3.0.0' } })
    await until(async () => (await appStatus(ep))?.target === '3.0.0' && (await appStatus(ep))?.error !== undefined, 20_000, 'mixed head refused')
    const st = (await appStatus(ep))!
    expect(st).toMatchObject({ installed: '2.0.0', state: 'failed', error: { code: 'ERR_MIX_AND_MATCH' } })
    expect(st.error!.message).toMatch(/the head lists app as 3\.0\.0 seq 3/)
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
    expect(await heldBlobs(ep)).toBe(blobsBefore)
  }, 60_000)
})

/**
 * A head body exactly as `signHead` would write it but with `"seq":<bigSeq>` (a number JSON can
 * spell and JavaScript cannot hold), signed over those bytes: what a seed with the online key
 * could send, and what no encoder of ours can produce.
 */
function headWithUnsafeSeq (template: Uint8Array, placeholder: number, bigSeq: string, key: KeyPair): Uint8Array {
  const text = Buffer.from(template).toString()
  const at = text.indexOf(',"signed":')
  const body = text.slice(at + ',"signed":'.length, -1).replace(`"seq":${placeholder}}`, `"seq":${bigSeq}}`)
  expect(body).toContain(bigSeq)
  const sig = Buffer.from(sign(key, Buffer.from(`shoal/v1/head\n${body}`))).toString('base64')
  return Buffer.from(`{"signatures":[{"keyid":"${key.keyid}","sig":"${sig}"}],"signed":${body}}`)
}

describe('fast-forward', () => {
  it('a head with an absurd sequence signed by a key the root does not list, then one above MAX_SAFE_INTEGER signed by the online key, are refused; the real next head is accepted', async () => {
    const f = fleet = await Fleet.create('attack-fast-forward')
    const { seed, ep, v1dir } = await runningV1(f)
    const realHead = (await loadHead(seed.db, 'stable'))!
    const real = decodeHead(realHead).signed
    const blobsBefore = await heldBlobs(ep)

    // 1. 2^52, signed by a key outside the root's online role (revoked, or never valid)
    await serveHead(seed, [generateKeyPair()], 2 ** 52, real.packages)
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_SIGNATURE_THRESHOLD') === true, 20_000, 'unknown-key head refused')
    expect(await headStatus(ep)).toMatchObject({ seq: real.seq, stale: false })

    // 2. 2^53 + 1, signed by the online key itself: refused as a number, never rounded to 2^53
    const placeholder = 7_654_321
    const { bytes: template } = signHead({ channel: 'stable', seq: placeholder, issued: new Date(), expires: new Date(Date.now() + HOUR), packages: real.packages, signers: [f.keys.onlineKey!] })
    await storeHead(seed.db, 'stable', headWithUnsafeSeq(template, placeholder, '9007199254740993', f.keys.onlineKey!))
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_DECODE') === true, 20_000, 'unsafe-integer head refused')
    const h = (await headStatus(ep))!
    expect(h.error).toMatch(/seq/)
    expect(h.seq).toBe(real.seq)
    expect(await installedVersion(ep)).toBe('1.0.0')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v1dir))
    expect(await heldBlobs(ep)).toBe(blobsBefore)

    // 3. The seed serves its own head again and publishes v2: accepted, installed, the error cleared.
    await storeHead(seed.db, 'stable', realHead)
    const v2dir = await makeTree(join(f.dir, 'src-v2'), 2)
    await f.push((await f.publish(v2dir, '2.0.0')).manifestPath)
    await until(async () => await installedVersion(ep) === '2.0.0', 30_000, 'v2 installed')
    expect(await headStatus(ep)).toMatchObject({ seq: real.seq + 1 })
    expect((await headStatus(ep))?.error).toBeUndefined()
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
  }, 60_000)
})

describe('root rotation and fast-forward recovery', () => {
  it('a stolen online key fast-forwards the head; a root signed by the new keys alone is refused; one signed by old and new, pushed through the seed, recovers: the head sequence restarts, rotated-out keys no longer work', async () => {
    const f = fleet = await Fleet.create('attack-rotation')
    let seed = await f.startSeed()
    const seedListen = seed.node.getMultiaddrs()[0]!.toString().replace(/\/p2p\/.*$/, '') // kept across the restart below
    const ep = await f.startEndpoint('e1')
    const v1dir = await makeTree(join(f.dir, 'src-v1'), 1)
    await f.push((await f.publish(v1dir, '1.0.0')).manifestPath)
    await until(async () => await installedVersion(ep) === '1.0.0', 30_000, 'v1 installed')
    const stolenOnline = f.keys.onlineKey!
    const oldRootKey = decodePrivateKeyFile(await readFile(join(f.keysDir, 'root-1.key'))).key

    // 1. The thief of the online key signs head seq 2^52: valid, so the endpoint takes it, and
    //    every honest head after it (seq n + 1) is now a "rollback".
    const realBytes = (await loadHead(seed.db, 'stable'))!
    const real = decodeHead(realBytes).signed
    await serveHead(seed, [stolenOnline], 2 ** 52, real.packages)
    await until(async () => (await headStatus(ep))?.seq === 2 ** 52, 20_000, 'fast-forwarded head taken')
    await storeHead(seed.db, 'stable', realBytes)
    const v2dir = await makeTree(join(f.dir, 'src-v2'), 2)
    await f.push((await f.publish(v2dir, '2.0.0')).manifestPath) // signed by the publisher key that is rotated out below
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_ROLLBACK') === true, 20_000, 'honest head refused as a rollback')
    expect(await installedVersion(ep)).toBe('1.0.0')

    // 2. The admins rotate root, online and publisher keys. A root v2 signed by the new root key
    //    alone is refused by the seed, and by the endpoint when a compromised seed serves it anyway.
    const newRootKey = generateKeyPair()
    const newOnline = generateKeyPair()
    const newPublisher = generateKeyPair()
    const rootV2 = (signers: KeyPair[]): Uint8Array => encodeEnvelope(createRoot({
      rootKeys: [newRootKey], rootThreshold: 1, publisherKeys: [newPublisher], publisherThreshold: 1, onlineKeys: [newOnline],
      expires: new Date(Date.now() + 30 * 86400_000), version: 2, signers
    }))
    const s = await SeedSession.open({ seed: f.seedAddr, networkKey: f.keys.fleet.networkKey, privateKey: await generatePeerKey('Ed25519'), blobs: await BlobStore.open(join(f.dir, 'scratch')) })
    try {
      await expect(s.sendRoot(rootV2([newRootKey]))).rejects.toMatchObject({ remoteCode: 'ERR_SIGNATURE_THRESHOLD' })
      await expect(s.sendRoot(rootV2([oldRootKey]))).rejects.toMatchObject({ remoteCode: 'ERR_SIGNATURE_THRESHOLD' }) // nor by the old alone
      // the compromised seed claims that root in its heads replies and serves it
      const forged = rootV2([newRootKey])
      await seed.db.kv.put('root/2', { bytes: Buffer.from(forged).toString('base64') })
      Object.defineProperty(seed.trust, 'current', { configurable: true, get: () => decodeRoot(forged) })
      await until(async () => (await ep.status()).root.error?.includes('ERR_SIGNATURE_THRESHOLD') === true, 20_000, 'new-keys-only root refused')
      delete (seed.trust as { current?: unknown }).current // the seed's own code again
      expect((await ep.status()).root.version).toBe(1)
      expect((await ep.status()).root.error).toMatch(/by the root keys of v1/)
      expect(formatStatus(await ep.status())).toMatch(/root\.json v1 kept — a newer one was refused: .*ERR_SIGNATURE_THRESHOLD/)
      await seed.db.kv.del('root/2')

      // 3. Signed by the old and the new root key, pushed through the seed: the endpoint takes it,
      //    forgets its fast-forwarded head, and refuses heads of the rotated-out online key.
      expect(await s.sendRoot(rootV2([oldRootKey, newRootKey]))).toEqual({ version: 2, onlineChanged: true, signsHeads: false })
    } finally {
      await s.close()
    }
    await until(async () => (await ep.status()).root.version === 2, 20_000, 'root v2 taken')
    expect((await ep.status()).root.error).toBeUndefined()
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_SIGNATURE_THRESHOLD') === true, 20_000, 'old online key refused')
    expect((await headStatus(ep))?.seq).toBe(0) // no head held: the fast-forwarded one is gone

    // 4. The seed restarts with the new online key: its head restarts at seq 1, and the endpoint takes it.
    const enrollV2 = join(f.dir, 'seed-enroll-v2.json')
    await writeFile(enrollV2, encodeSeedEnrollment(decodeRoot(rootV2([oldRootKey, newRootKey])), f.keys.fleet.networkKey, newOnline))
    await f.stopDaemon(seed)
    seed = await f.startSeed({ enroll: enrollV2, listen: [seedListen] })
    await until(async () => (await headStatus(ep))?.seq === 1 && (await headStatus(ep))?.error === undefined, 30_000, 'restarted head sequence taken')
    // It names v2, which the rotated-out publisher key signed: refused, v1 keeps running.
    await until(async () => (await appStatus(ep))?.error?.code === 'ERR_SIGNATURE_THRESHOLD', 20_000, 'rotated-out publisher key refused')
    expect(await appStatus(ep)).toMatchObject({ installed: '1.0.0', target: '2.0.0', state: 'failed' })
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v1dir))

    // 5. A release signed by the new publisher key installs under head seq 2.
    const v3dir = await makeTree(join(f.dir, 'src-v3'), 3)
    await f.push((await f.publish(v3dir, '3.0.0', { signers: [newPublisher] })).manifestPath)
    await until(async () => await installedVersion(ep) === '3.0.0', 30_000, 'v3 installed')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v3dir))
    expect((await headStatus(ep))?.seq).toBe(2)

    // 6. The revoked online key fast-forwards again: refused, seq 2 kept.
    const cur = decodeHead((await loadHead(seed.db, 'stable'))!).signed
    await serveHead(seed, [stolenOnline], 2 ** 52 + 1, cur.packages)
    await until(async () => (await headStatus(ep))?.error?.includes('ERR_SIGNATURE_THRESHOLD') === true, 20_000, 'revoked online key refused')
    expect(await headStatus(ep)).toMatchObject({ seq: 2 })
    expect(await installedVersion(ep)).toBe('3.0.0')
  }, 90_000)
})
