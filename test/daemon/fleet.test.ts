// Issue 3's integration tests: a seed and endpoints in one process on 127.0.0.1, real libp2p,
// real LevelDB, real installs into temp folders.
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair as generateSigningKey } from '../../src/core/keys.js'
import { ANNOUNCE_PROTOCOL } from '../../src/net/constants.js'
import { encodeControl } from '../../src/net/control.js'
import { createShoalNode } from '../../src/net/node.js'
import { callRpc } from '../../src/net/rpc.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { PackStore } from '../../src/store/pack-store.js'
import { SeedSession } from '../../src/publish/push.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

function cidsOf (manifest: Uint8Array): Set<string> {
  const m = JSON.parse(Buffer.from(manifest).toString()) as { signed: { chunks: Array<{ cid: string, size: number }> } }
  return new Set(m.signed.chunks.map(c => `${c.cid}:${c.size}`))
}

describe('seed + 3 endpoints on loopback', () => {
  it('installs v1 everywhere, then v2 fetching only the blobs v1 lacked', async () => {
    fleet = await Fleet.create()
    const seed = await fleet.startSeed()
    const eps = await Promise.all(['e1', 'e2', 'e3'].map(async n => await fleet!.startEndpoint(n)))

    const v1dir = await makeTree(join(fleet.dir, 'src-v1'), 1)
    const p1 = await fleet.publish(v1dir, '1.0.0')
    const c1 = await fleet.push(p1.manifestPath)
    expect(c1.headSeq).toBe(1)
    expect(c1.fetched).toBe(p1.uniqueChunks)
    for (const e of eps) await until(async () => await installedVersion(e) === '1.0.0', 30_000, 'v1 installed')
    for (const e of eps) {
      expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v1dir))
    }

    const before = await Promise.all(eps.map(async e => (await e.status()).bytes.seed))
    const v2dir = await makeTree(join(fleet.dir, 'src-v2'), 2)
    const p2 = await fleet.publish(v2dir, '2.0.0')
    const c2 = await fleet.push(p2.manifestPath)
    // the seed, too, received only the blobs it lacked: the new chunks and the delta blobs
    expect(p2.deltaBlobs).toBeGreaterThan(0)
    expect(c2.fetched).toBe(p2.newChunks + p2.deltaBlobs)
    for (const e of eps) await until(async () => await installedVersion(e) === '2.0.0', 30_000, 'v2 installed')

    const m1 = cidsOf(await readFile(p1.manifestPath))
    const m2 = cidsOf(await readFile(p2.manifestPath))
    const newBytes = [...m2].filter(c => !m1.has(c)).reduce((n, c) => n + Number(c.split(':')[1]), 0)
    expect(newBytes).toBeGreaterThan(0)
    expect(newBytes).toBeLessThan(p2.blobBytes / 2)
    for (const [i, e] of eps.entries()) {
      const s = await e.status()
      // a holder of v1 fetches delta blobs where they serve, full blobs otherwise: less than every new blob
      expect(s.bytes.seed - before[i]!).toBe(p2.fetchBytesFromPrevious)
      expect(p2.fetchBytesFromPrevious).toBeLessThan(newBytes)
      expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2dir))
      expect(s.packages).toEqual([expect.objectContaining({ name: 'app', installed: '2.0.0', state: 'installed' })])
    }
    // publishing the same release again is a no-op at the seed
    const again = await fleet.push(p2.manifestPath)
    expect(again.already).toBe(true)
    expect(again.fetched).toBe(0)
    expect((await seed.status()).role).toBe('seed')
  })

  it('refuses a peer with another fleet secret any shoal protocol', async () => {
    fleet = await Fleet.create()
    await fleet.startSeed()
    const outsider = await createShoalNode({ privateKey: await generateKeyPair('Ed25519'), listen: [], networkKey: new Uint8Array(32).fill(9) })
    try {
      await expect(callRpc(outsider, multiaddr(fleet.seedAddr), ANNOUNCE_PROTOCOL, encodeControl({ op: 'heads', channels: ['stable'] }), {
        maxRequestBytes: 1024, maxResponseBytes: 1 << 20, timeoutMs: 10_000
      })).rejects.toMatchObject({ code: expect.stringMatching(/ERR_ADMISSION|ERR_PEER_CONNECTION|ERR_PEER_PROTOCOL/) })
    } finally {
      await outsider.stop()
    }
  })

  it('refuses an upload not signed by the publisher threshold and stores nothing', async () => {
    fleet = await Fleet.create()
    const seed = await fleet.startSeed()
    const dir = await makeTree(join(fleet.dir, 'src'), 1)
    const p = await fleet.publish(dir, '1.0.0', { signers: [generateSigningKey()] })
    const s = await SeedSession.open({ seed: fleet.seedAddr, networkKey: fleet.keys.fleet.networkKey, privateKey: await generateKeyPair('Ed25519'), blobs: await BlobStore.open(fleet.repo) })
    try {
      const bytes = await readFile(p.manifestPath)
      await expect(s.offer(bytes)).rejects.toMatchObject({ remoteCode: 'ERR_SIGNATURE_THRESHOLD' })
      await expect(s.commit(bytes)).rejects.toMatchObject({ remoteCode: 'ERR_SIGNATURE_THRESHOLD' })
    } finally {
      await s.close()
    }
    expect((await seed.blobs.stats()).blobs).toBe(0)
    expect(await seed.db.heads.get('stable')).toBeNull()
    expect(s.stats.blobsServed).toBe(0)
  })

  it('refuses an upload from a peer outside "publishers"', async () => {
    fleet = await Fleet.create()
    await fleet.startSeed({ publishers: ['12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'] })
    const dir = await makeTree(join(fleet.dir, 'src'), 1)
    const p = await fleet.publish(dir, '1.0.0')
    await expect(fleet.push(p.manifestPath)).rejects.toMatchObject({ remoteCode: 'ERR_PUBLISH_REFUSED' })
  })

  it('a failing postinstall hook switches back and records the exit code and log tail', async () => {
    fleet = await Fleet.create()
    await fleet.startSeed()
    const e = await fleet.startEndpoint('e1')
    const p1 = await fleet.publish(await makeTree(join(fleet.dir, 'v1'), 1), '1.0.0')
    await fleet.push(p1.manifestPath)
    await until(async () => await installedVersion(e) === '1.0.0')
    const p2 = await fleet.publish(await makeTree(join(fleet.dir, 'v2'), 2), '2.0.0', { hooks: { postinstall: 'echo "migration failed: $SHOAL_VERSION"\nexit 7\n' } })
    await fleet.push(p2.manifestPath)
    await until(async () => (await e.status()).packages[0]?.state === 'failed')
    const st = (await e.status()).packages[0]!
    expect(st.installed).toBe('1.0.0')
    expect(st.error).toMatchObject({ code: 'ERR_HOOK_FAILED', exitCode: 7 })
    expect(st.error?.logTail).toContain('migration failed: 2.0.0')
    expect(await snapshot(join(e.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(join(fleet.dir, 'v1')))
  })

  it('resumes after a restart mid-download without fetching any verified blob twice', async () => {
    fleet = await Fleet.create()
    const seed = await fleet.startSeed()
    const p = await fleet.publish(await makeTree(join(fleet.dir, 'v1'), 1, { binaryBytes: 2_000_000 }), '1.0.0')
    await fleet.push(p.manifestPath)
    // 1 MB/s with a 256 KiB burst: the 2.3 MB release takes about 2 s
    const cfg = fleet.config('e1', { role: 'endpoint', enroll: join(fleet.keysDir, 'enroll.json'), seeds: [fleet.seedAddr], wanRate: 1_000_000 })
    let e = await fleet.start(cfg)
    await until(async () => { const s = await e.status(); return s.bytes.seed > 600_000 }, 30_000, 'part of the download')
    await fleet.stopDaemon(e)
    const stopped = await PackStore.open(cfg.stateDir)
    const partial = await stopped.stats()
    await stopped.close()
    expect(partial.blobs).toBeGreaterThan(0)
    expect(partial.blobs).toBeLessThan(p.uniqueChunks)
    e = await fleet.start(cfg)
    await until(async () => await installedVersion(e) === '1.0.0', 30_000, 'install after restart')
    const served = seed.serverStats.bytesServedTo.get(e.node.peerId.toString())
    expect(served).toBe(p.blobBytes === 0 ? 0 : (await e.status()).bytes.seed)
    expect((await e.status()).bytes.seed).toBe([...cidsOf(await readFile(p.manifestPath))].reduce((n, c) => n + Number(c.split(':')[1]), 0))
  })

  it('interoperates with an mplex-only endpoint', async () => {
    fleet = await Fleet.create()
    await fleet.startSeed()
    const e = await fleet.startEndpoint('e1', {}, { muxers: ['mplex'] })
    const p = await fleet.publish(await makeTree(join(fleet.dir, 'v1'), 1), '1.0.0')
    await fleet.push(p.manifestPath)
    await until(async () => await installedVersion(e) === '1.0.0')
    const conns = e.node.getConnections()
    expect(conns.length).toBeGreaterThan(0)
    expect(conns.every(c => c.multiplexer === '/mplex/6.7.0')).toBe(true)
  })
})
