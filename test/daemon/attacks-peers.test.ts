// Issue 7, attacks by sources of bytes, mounted against real daemons on loopback (real libp2p,
// LevelDB, installs): a LAN peer that streams past a blob's signed size (endless data) or trickles
// bytes (slow retrieval), and a seed that announces a huge manifest and serves corrupted blobs
// (malicious mirror). The attackers are small nodes built from the real src/net modules, admitted
// with the fleet's network key, speaking the wire protocols byte by byte where they lie.
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { Stream } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeAnnounceRequest } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import type { Logger } from '../../src/daemon/log.js'
import { registerBlobsProtocol } from '../../src/net/blobs.js'
import { encodeDataHeader, encodeResponse, Status } from '../../src/net/blobs-wire.js'
import { encodeControl } from '../../src/net/control.js'
import { ANNOUNCE_PROTOCOL, BLOBS_PROTOCOL } from '../../src/net/constants.js'
import { RpcRemoteError } from '../../src/net/errors.js'
import { FrameWriter, readFrames, waitForDrain } from '../../src/net/framing.js'
import { createShoalNode, type ShoalNode } from '../../src/net/node.js'
import { callRpc } from '../../src/net/rpc.js'
import { evilBlobServer } from '../net/helpers.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
const nodes: ShoalNode[] = []
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop()
  await fleet?.cleanup()
  fleet = undefined
})

/** A logger that keeps every line (JSON objects), to check what a daemon said. */
function capturingLogger (): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); cb() } })
  return { logger: pino({ level: 'debug' }, sink), lines }
}
const said = (lines: Array<Record<string, unknown>>, msg: string): Array<Record<string, unknown>> => lines.filter(l => l.msg === msg)
const errCode = (l: Record<string, unknown>): string | undefined => (l.err as { code?: string } | undefined)?.code

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Sends `bytes` on a libp2p stream, waiting for drain; false once the stream is no longer open. */
function sender (stream: Stream): (bytes: Uint8Array) => Promise<boolean> {
  return async (bytes) => {
    if (stream.status !== 'open') return false
    try {
      if (!stream.send(bytes)) await waitForDrain(stream)
      return true
    } catch {
      return false
    }
  }
}

interface HostileStats { requests: number, dataBytes: number }

/**
 * Replaces `d`'s /shoal/blobs/1 server with one that speaks the protocol correctly up to its lie:
 * 'endless' announces each blob's true size, sends it, then keeps sending (up to 64 MiB) as if the
 * blob never ended; 'trickle' sends 64 bytes every 300 ms, one request at a time, ignoring CANCEL.
 */
async function hostileBlobs (d: Daemon, mode: 'endless' | 'trickle'): Promise<HostileStats> {
  const stats: HostileStats = { requests: 0, dataBytes: 0 }
  let chain = Promise.resolve()
  await d.node.unhandle(BLOBS_PROTOCOL)
  await evilBlobServer(d.node, (req, ctx) => {
    stats.requests++
    chain = chain.then(async () => {
      const blob = await d.blobs.get(req.cid)
      if (blob === null) { await ctx.send([encodeResponse(req.reqId, Status.NOT_FOUND, 0)]); return }
      if (!await ctx.send([encodeResponse(req.reqId, Status.OK, blob.byteLength)])) return
      const piece = new Uint8Array(16 * 1024).fill(0x5a)
      for (let at = 0; mode === 'endless' ? stats.dataBytes < 64 * 1024 * 1024 : at < blob.byteLength; at += mode === 'endless' ? piece.byteLength : 64) {
        if (mode === 'trickle') await sleep(300)
        const data = at < blob.byteLength ? blob.subarray(at, at + (mode === 'endless' ? piece.byteLength : 64)) : piece
        if (!await ctx.send([[encodeDataHeader(req.reqId), data]])) return
        stats.dataBytes += data.byteLength
      }
    })
  })
  return stats
}

/** A seed, a LAN peer holding v1 that turns hostile, and a victim endpoint of the same site fetching v1 with `victimOpts`. */
async function lanAttack (name: string, mode: 'endless' | 'trickle', victimOpts: Parameters<Fleet['startEndpoint']>[2] = {}): Promise<{ victim: Daemon, evil: Daemon, stats: HostileStats, src: string, ms: number }> {
  const f = fleet = await Fleet.create(name)
  await f.startSeed()
  const evil = await f.startEndpoint('evil', { site: 'x', pollInterval: 500 })
  const src = await makeTree(join(f.dir, 'src'), 1, { binaryBytes: 400_000 })
  await f.push((await f.publish(src, '1.0.0')).manifestPath)
  await until(async () => await installedVersion(evil) === '1.0.0', 30_000, 'the attacker installed v1')
  const stats = await hostileBlobs(evil, mode)
  const t0 = Date.now()
  const victim = await f.startEndpoint('victim', { site: 'x', pollInterval: 500 }, victimOpts)
  try {
    await until(async () => await installedVersion(victim) === '1.0.0', 40_000, 'the victim installed v1')
  } catch (err) {
    console.log('victim status at the timeout', JSON.stringify({ status: await victim.status(), banned: victim.endpoint!.scores.isBanned(evil.node.peerId.toString()), stats }))
    throw err
  }
  return { victim, evil, stats, src, ms: Date.now() - t0 }
}

describe('a LAN peer that lies about sizes or trickles', () => {
  it('endless data: a peer streaming past a blob\'s signed size is cut at once, banned, and the blob comes from the seed', async () => {
    const log = capturingLogger()
    const { victim, evil, stats, src, ms } = await lanAttack('attack-endless', 'endless', { logger: log.logger })
    const evilId = evil.node.peerId.toString()
    expect(stats.requests).toBeGreaterThan(0)
    // The attacker had 64 MiB to send; what it got onto the wire before the victim dropped the
    // stream is bounded by the muxer window and socket buffers, not by the attacker.
    expect(stats.dataBytes).toBeLessThan(8 * 1024 * 1024)
    expect(victim.endpoint!.scores.isBanned(evilId)).toBe(true)
    const cut = said(log.lines, 'peer banned after blobs that failed their cid or their size')
    expect(cut.length).toBeGreaterThan(0)
    expect(cut[0]).toMatchObject({ peer: evilId, banned: true })
    expect(errCode(cut[0]!)).toBe('ERR_PEER_PROTOCOL')
    // past the announced size of a blob in progress, or DATA for one already complete
    expect(JSON.stringify(cut[0]!.err)).toMatch(/more than the \d+ bytes announced|DATA for unknown request/)
    expect(await snapshot(join(victim.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    const st = await victim.status()
    // at most the one blob that was whole and hashed to its cid before the excess came (it is correct)
    expect(st.bytes.lan).toBeLessThanOrEqual(64 * 1024)
    expect(st.bytes.seed).toBeGreaterThan(0)
    console.log(`endless data: attacker got ${stats.dataBytes} bytes onto the wire of its 64 MiB, ${stats.requests} requests; installed from the seed in ${ms} ms`)
  }, 60_000)

  it('slow retrieval: a peer trickling 64 bytes per 300 ms is dropped at the request deadline, banned, and the install completes from the seed', async () => {
    const log = capturingLogger()
    const requestTimeoutMs = 3_000
    const { victim, evil, stats, src, ms } = await lanAttack('attack-trickle', 'trickle', { logger: log.logger, blobClient: { requestTimeoutMs } })
    const evilId = evil.node.peerId.toString()
    expect(stats.requests).toBeGreaterThan(0)
    expect(victim.endpoint!.scores.isBanned(evilId)).toBe(true)
    const slow = said(log.lines, 'peer banned after requests that timed out (slow or stalled)')
    expect(slow.length).toBeGreaterThan(0)
    expect(slow[0]).toMatchObject({ peer: evilId, banned: true })
    expect(errCode(slow[0]!)).toBe('ERR_NET_TIMEOUT')
    expect(await snapshot(join(victim.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    const st = await victim.status()
    expect(st.bytes.lan).toBe(0)
    expect(st.bytes.seed).toBeGreaterThan(0)
    // one request deadline lost to the trickler, then the seed: well under a deadline per chunk
    expect(ms).toBeLessThan(requestTimeoutMs * 6)
    console.log(`slow retrieval: trickler sent ${stats.dataBytes} bytes over ${stats.requests} requests; installed in ${ms} ms (request deadline ${requestTimeoutMs} ms)`)
  }, 60_000)
})

describe('a malicious seed (mirror)', () => {
  it('announces a 1 GiB manifest and serves corrupted blobs: the read stops at the cap, the blobs fail their cid, both come from the next seed', async () => {
    const f = fleet = await Fleet.create('attack-mirror')
    const seed = await f.startSeed()
    // The hostile seed: a fleet member (network key) that passes heads, records and the site
    // directory through from the real seed, but lies about manifests and blobs.
    const evil = await createShoalNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], networkKey: f.keys.fleet.networkKey })
    nodes.push(evil)
    const manifestBytes = { announced: 1024 ** 3, written: 0, asked: 0 }
    const lie: { otherManifest?: Uint8Array } = {}
    await evil.handle(ANNOUNCE_PROTOCOL, async (stream: Stream) => {
      const send = sender(stream)
      try {
        let req: Uint8Array | undefined
        for await (const fr of readFrames(stream, { maxFrameBytes: 2 * 1024 * 1024 })) { req = fr; break }
        const body = req!.subarray(1)
        if (decodeAnnounceRequest(body).op === 'manifest' && lie.otherManifest !== undefined) {
          // a valid, signed manifest — of another release than the id asked for
          await new FrameWriter(stream).write([Uint8Array.of(0x00, ...encodeControl({}, [lie.otherManifest]))])
          await stream.close()
          return
        }
        if (decodeAnnounceRequest(body).op === 'manifest') {
          manifestBytes.asked++
          const header = new Uint8Array(4)
          new DataView(header.buffer).setUint32(0, manifestBytes.announced)
          if (!await send(Uint8Array.of(...header, 0x00))) return
          const junk = new Uint8Array(64 * 1024).fill(0x7b)
          while (manifestBytes.written < manifestBytes.announced && await send(junk)) manifestBytes.written += junk.byteLength
          return
        }
        let reply: Uint8Array
        try {
          reply = Uint8Array.of(0x00, ...await callRpc(evil, multiaddr(f.seedAddr), ANNOUNCE_PROTOCOL, body, { maxRequestBytes: 2 * 1024 * 1024, maxResponseBytes: 70 * 1024 * 1024, timeoutMs: 20_000 }))
        } catch (err) {
          const code = new TextEncoder().encode(err instanceof RpcRemoteError ? err.remoteCode : 'ERR_INTERNAL')
          reply = Uint8Array.of(0x01, code.byteLength, ...code, ...new TextEncoder().encode('passed through'))
        }
        await new FrameWriter(stream).write([reply])
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    let corrupted = 0
    await registerBlobsProtocol(evil, {
      get: async cid => {
        const b = await seed.blobs.get(cid)
        if (b === null) return null
        const bad = Uint8Array.from(b); bad[0]! ^= 0x80; corrupted++
        return bad
      }
    })
    const src = await makeTree(join(f.dir, 'src'), 1, { binaryBytes: 400_000 })
    const p1 = await f.publish(src, '1.0.0')
    await f.push(p1.manifestPath)

    const log = capturingLogger()
    const evilAddr = evil.getMultiaddrs()[0]!.toString()
    const t0 = Date.now()
    const ep = await f.startEndpoint('e1', { seeds: [evilAddr, f.seedAddr] }, { logger: log.logger })
    await until(async () => await installedVersion(ep) === '1.0.0', 40_000, 'v1 installed')
    const ms = Date.now() - t0
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src))

    // The manifest: refused from the 4-byte length alone; what the attacker pushed is bounded by
    // the muxer window, not by the 1 GiB it announced.
    expect(manifestBytes.asked).toBeGreaterThan(0)
    expect(manifestBytes.written).toBeLessThan(8 * 1024 * 1024)
    const refused = said(log.lines, 'manifest not available from seed; asking the next source')
    expect(refused.length).toBeGreaterThan(0)
    expect(refused[0]).toMatchObject({ seed: evilAddr })
    expect(JSON.stringify(refused[0]!.err)).toMatch(/1073741824-byte frame, above the \d+-byte limit/)
    // The blobs: each failed its cid, was logged and counted, and the seed was passed over.
    expect(corrupted).toBeGreaterThan(0)
    const bad = said(log.lines, 'a WAN blob failed its cid (tampered or broken mirror); asking the next source')
    expect(bad.length).toBeGreaterThan(0)
    expect(bad[0]).toMatchObject({ source: evilAddr })
    expect(await ep.metrics.text()).toMatch(/shoal_bad_blobs_total\{source="seed",role="endpoint"\} [1-9]/)
    expect(await ep.blobs.stats().then(s => s.blobs)).toBeGreaterThan(0)

    // v2: the hostile seed now answers with v1's manifest (validly signed, not the id the head
    // names); it is refused as such, logged, and v2's comes from the next seed.
    lie.otherManifest = await readFile(p1.manifestPath)
    const v2 = await makeTree(join(f.dir, 'src-v2'), 2, { binaryBytes: 400_000 })
    await f.push((await f.publish(v2, '2.0.0')).manifestPath)
    await until(async () => await installedVersion(ep) === '2.0.0', 30_000, 'v2 installed')
    expect(await snapshot(join(ep.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(v2))
    const swapped = said(log.lines, 'manifest not available from seed; asking the next source').filter(l => errCode(l) === 'ERR_MIX_AND_MATCH')
    expect(swapped.length).toBeGreaterThan(0)
    expect(swapped[0]).toMatchObject({ seed: evilAddr, release: 'app@2.0.0' })
    console.log(`malicious seed: ${manifestBytes.written} bytes of a 1 GiB manifest written before the cut; ${corrupted} corrupted blobs served, ${bad.length} refused; installed from the honest seed in ${ms} ms`)
  }, 60_000)
})

describe('a held blob changed on disk', () => {
  it('fails the install once: the blobs are checked against their cids, the changed one is deleted and fetched again, the install completes', async () => {
    const f = fleet = await Fleet.create('changed-blob')
    await f.startSeed()
    const src = await makeTree(join(f.dir, 'src'), 1, { binaryBytes: 400_000 })
    const p1 = await f.publish(src, '1.0.0')
    await f.push(p1.manifestPath)
    const log = capturingLogger()
    let ep = await f.startEndpoint('e1', {}, { logger: log.logger })
    await until(async () => await installedVersion(ep) === '1.0.0', 20_000, 'v1 installed')
    const installRoot = ep.cfg.installRoot
    const packsDir = join(ep.cfg.stateDir, 'packs')
    await f.stopDaemon(ep)

    // One byte of the first blob of the first pack flipped (sealed at the clean stop: its index is
    // trusted at open, so the store does not notice), and the installed tree removed, so the
    // endpoint installs 1.0.0 again from its blobs.
    const pack = join(packsDir, (await readdir(packsDir)).filter(n => n.endsWith('.pack')).sort()[0]!)
    const bytes = await readFile(pack)
    const cid = bytes.subarray(8 + 4, 8 + 4 + 32).toString('hex')
    bytes[8 + 4 + 32 + 100]! ^= 0x01
    await writeFile(pack, bytes)
    await rm(join(installRoot, 'app'), { recursive: true, force: true })

    ep = await f.startEndpoint('e1', {}, { logger: log.logger })
    await until(async () => await installedVersion(ep) === '1.0.0', 30_000, 'v1 installed again')
    expect(await snapshot(join(installRoot, 'app', 'current'))).toEqual(await snapshot(src))
    const dropped = said(log.lines, 'held blobs no longer match their cid (changed on disk): deleted, fetched again at the next pass')
    expect(dropped).toHaveLength(1)
    expect(dropped[0]).toMatchObject({ release: 'app@1.0.0', changed: 1, cids: [cid] })
  }, 60_000)
})
