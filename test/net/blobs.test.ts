import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import {
  BlobBusyError, BlobClient, BlobNotFoundError, BlobServerStats, BlobVerifyError, NetAbortedError,
  NetTimeoutError, PeerConnectionError, PeerProtocolError, registerBlobsProtocol, type BlobSource
} from '../../src/net/blobs.js'
import { decodeClientMsg, encodeDataHeader, encodeHello, encodeResponse, MsgType, Status } from '../../src/net/blobs-wire.js'
import { FrameWriter, readFrames } from '../../src/net/framing.js'
import { BLOBS_PROTOCOL } from '../../src/net/constants.js'
import { evilBlobServer, MemorySource, NodePool, sha256, waitFor } from './helpers.js'

const pool = new NodePool()
const clients: BlobClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
  await pool.stopAll()
})

function client (...args: ConstructorParameters<typeof BlobClient>): BlobClient {
  const c = new BlobClient(...args)
  clients.push(c)
  return c
}

const KiB = 1024
const MiB = 1024 * 1024

describe('blobs protocol', () => {
  it('fetches 200 blobs of 1 B…1 MiB, many in flight, all verified, over one stream', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const source = new MemorySource()
    // log-uniform sizes keep the total near 15 MiB; the edges are always included
    const sizes = [1, 2, 65_535, 65_536, 65_537, MiB]
    while (sizes.length < 200) sizes.push(Math.max(1, Math.floor(Math.exp(Math.random() * Math.log(MiB)))))
    const blobs = sizes.map((n) => source.addRandom(n))
    await registerBlobsProtocol(server, source)
    const bc = client(node)
    const got = await Promise.all(blobs.map(async (b) => await bc.fetch(server.peerId, b.cid, b.blob.byteLength)))
    for (let i = 0; i < blobs.length; i++) expect(Buffer.from(got[i]!).equals(blobs[i]!.blob)).toBe(true)
    const total = sizes.reduce((s, n) => s + n, 0)
    expect(bc.bytesReceived(server.peerId)).toBe(total)
    expect(bc.stats().get(server.peerId.toString())).toMatchObject({ blobsVerified: 200, verifyFailures: 0 })
    const streams = node.getConnections(server.peerId).flatMap((c) => c.streams).filter((s) => s.protocol === BLOBS_PROTOCOL)
    expect(streams).toHaveLength(1)
    // an empty blob is a valid blob too
    const empty = source.add(new Uint8Array(0))
    expect((await bc.fetch(server.peerId, empty, 0)).byteLength).toBe(0)
  })

  it('reports not-found, and keeps using the stream afterwards', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const source = new MemorySource()
    const { cid, blob } = source.addRandom(1000)
    await registerBlobsProtocol(server, source)
    const bc = client(node)
    await expect(bc.fetch(server.peerId, randomBytes(32), 1000)).rejects.toBeInstanceOf(BlobNotFoundError)
    expect(Buffer.from(await bc.fetch(server.peerId, cid, 1000)).equals(blob)).toBe(true)
    // a blob larger than the caller allows is refused by an honest server
    await expect(bc.fetch(server.peerId, cid, 999)).rejects.toThrow(/failed to serve/)
  })

  it('accepts a PeerId, a multiaddr with /p2p/ or a bare multiaddr, and reuses one stream', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const source = new MemorySource()
    const { cid, blob } = source.addRandom(777)
    await registerBlobsProtocol(server, source)
    const bc = client(node)
    const full = server.getMultiaddrs()[0]!
    const bare = full.decapsulateCode(421) // drop /p2p/<id>
    expect(bare.toString()).not.toMatch(/p2p/)
    for (const target of [bare, bare, full, server.peerId]) {
      expect(Buffer.from(await bc.fetch(target, cid, 777)).equals(blob)).toBe(true)
    }
    expect(node.getConnections(server.peerId)).toHaveLength(1)
    expect(node.getConnections(server.peerId)[0]!.streams.filter((s) => s.protocol === BLOBS_PROTOCOL)).toHaveLength(1)
  })

  it('respects the credit window and the in-flight limits (server instrumented)', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    let reading = 0
    let maxReading = 0
    const inner = new MemorySource()
    const source: BlobSource = {
      get: async (cid) => {
        reading++
        maxReading = Math.max(maxReading, reading)
        await new Promise((resolve) => setTimeout(resolve, 1))
        reading--
        return await inner.get(cid)
      }
    }
    const blobs = Array.from({ length: 64 }, (_, i) => inner.addRandom(i % 3 === 0 ? 200 * KiB : 16 * KiB))
    const stats = new BlobServerStats()
    await registerBlobsProtocol(server, source, { maxInflightPerStream: 8, readAhead: 3, stats })
    const window = 64 * KiB
    const bc = client(node, { window, maxInflight: 100 })
    await Promise.all(blobs.map(async (b) => { await bc.fetch(server.peerId, b.cid, b.blob.byteLength) }))
    expect(stats.blobsServed).toBe(64)
    expect(stats.bytesServed).toBe(blobs.reduce((s, b) => s + b.blob.byteLength, 0))
    expect(stats.maxUnackedBytes).toBeGreaterThan(0)
    expect(stats.maxUnackedBytes).toBeLessThanOrEqual(window)
    expect(stats.maxInflight).toBe(8) // the client lowered its 100 to the server's HELLO
    expect(maxReading).toBeLessThanOrEqual(3)
    expect(stats.maxReading).toBeLessThanOrEqual(3)
  })

  it('bounds the bytes a server reads ahead, yet serves a blob larger than that bound', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    let reading = 0
    let maxReading = 0
    const inner = new MemorySource()
    const source: BlobSource = {
      get: async (cid) => {
        maxReading = Math.max(maxReading, ++reading)
        await new Promise((resolve) => setTimeout(resolve, 2))
        reading--
        return await inner.get(cid)
      }
    }
    const small = Array.from({ length: 32 }, () => inner.addRandom(16 * KiB))
    const big = inner.addRandom(300 * KiB)
    await registerBlobsProtocol(server, source, { readAhead: 16, readAheadBytes: 64 * KiB })
    const bc = client(node)
    await Promise.all([...small, big].map(async (b) => { await bc.fetch(server.peerId, b.cid, b.blob.byteLength) }))
    expect(maxReading).toBeGreaterThan(1)
    expect(maxReading).toBeLessThanOrEqual(4) // 4 × 16 KiB fill the 64 KiB budget
  })

  it('rejects bytes that do not hash to the cid (lying server)', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    await evilBlobServer(server, async (req, ctx) => {
      const junk = randomBytes(5000)
      await ctx.send([encodeResponse(req.reqId, Status.OK, junk.byteLength), [encodeDataHeader(req.reqId), junk]])
    })
    const bc = client(node)
    await expect(bc.fetch(server.peerId, randomBytes(32), 10_000)).rejects.toBeInstanceOf(BlobVerifyError)
    expect(bc.stats().get(server.peerId.toString())?.verifyFailures).toBe(1)
    // the stream survives a bad blob: a second fetch goes over it again
    await expect(bc.fetch(server.peerId, randomBytes(32), 10_000)).rejects.toBeInstanceOf(BlobVerifyError)
  })

  it('refuses a blob announced larger than maxSize without reading any of it', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const evil = await evilBlobServer(server, async (req, ctx) => {
      // announce 30 MiB and then stream data for as long as the stream lets us
      if (!await ctx.send([encodeResponse(req.reqId, Status.OK, 30 * MiB)])) return
      const piece = randomBytes(64 * KiB)
      for (let i = 0; i < 480; i++) if (!await ctx.send([[encodeDataHeader(req.reqId), piece]])) return
    })
    const bc = client(node, { window: 256 * KiB })
    const err = await bc.fetch(server.peerId, randomBytes(32), MiB).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BlobVerifyError)
    expect((err as Error).message).toMatch(/more than the 1048576 allowed/)
    expect(bc.bytesReceived(server.peerId)).toBe(0)
    await waitFor(() => server.getConnections(node.peerId).every((c) => c.streams.every((s) => s.protocol !== BLOBS_PROTOCOL)))
    expect(evil.bytesSent).toBeLessThan(30 * MiB)
  })

  it('drops a server that sends past the announced size or beyond its credit', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    await evilBlobServer(server, async (req, ctx) => {
      if (req.cid[0] === 2) {
        // announces 100 KiB, then keeps going
        if (!await ctx.send([encodeResponse(req.reqId, Status.OK, 100 * KiB)])) return
        const piece = randomBytes(30 * KiB)
        for (let i = 0; i < 40; i++) if (!await ctx.send([[encodeDataHeader(req.reqId), piece]])) return
      } else {
        // sends 20 KiB at once against a 16 KiB window
        await ctx.send([encodeResponse(req.reqId, Status.OK, 100 * KiB), [encodeDataHeader(req.reqId), randomBytes(20 * KiB)]])
      }
    })
    const overrun = randomBytes(32); overrun[0] = 2
    const greedy = randomBytes(32); greedy[0] = 3
    const bc1 = client(node, { window: 256 * KiB })
    const e1 = await bc1.fetch(server.peerId, overrun, MiB).catch((e: unknown) => e)
    expect(e1).toBeInstanceOf(PeerProtocolError)
    expect((e1 as Error).message).toMatch(/more than the 102400 bytes announced/)
    expect(bc1.bytesReceived(server.peerId)).toBe(90 * KiB) // three pieces kept, the fourth refused
    const bc2 = client(node, { window: 16 * KiB })
    const e2 = await bc2.fetch(server.peerId, greedy, MiB).catch((e: unknown) => e)
    expect(e2).toBeInstanceOf(PeerProtocolError)
    expect((e2 as Error).message).toMatch(/credit/)
    expect(bc2.bytesReceived(server.peerId)).toBe(0)
  })

  it('fails in-flight fetches cleanly when the stream dies mid-transfer, then reopens', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const good = randomBytes(3000)
    const goodCid = sha256(good)
    const evil = await evilBlobServer(server, async (req, ctx) => {
      if (Buffer.from(req.cid).equals(Buffer.from(goodCid))) {
        await ctx.send([encodeResponse(req.reqId, Status.OK, good.byteLength), [encodeDataHeader(req.reqId), good]])
        return
      }
      // half a blob, then silence
      await ctx.send([encodeResponse(req.reqId, Status.OK, 200 * KiB), [encodeDataHeader(req.reqId), randomBytes(50 * KiB)]])
    })
    const bc = client(node)
    const stalled = bc.fetch(server.peerId, randomBytes(32), MiB)
    const outcome = stalled.catch((e: unknown) => e)
    await waitFor(() => bc.bytesReceived(server.peerId) === 50 * KiB)
    const stream = server.getConnections(node.peerId).flatMap((c) => c.streams).find((s) => s.protocol === BLOBS_PROTOCOL)!
    stream.abort(new Error('killed by the test'))
    expect(await outcome).toBeInstanceOf(PeerConnectionError)
    expect(Buffer.from(await bc.fetch(server.peerId, goodCid, 3000)).equals(good)).toBe(true)
    expect(evil.streams).toBe(2)
  })

  it('times out a silent server (idle) and a slow request, and honours AbortSignal', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const inner = new MemorySource()
    const fast = inner.addRandom(100)
    const slow = inner.addRandom(100)
    const source: BlobSource = {
      get: async (cid) => {
        if (Buffer.from(cid).equals(Buffer.from(slow.cid))) await new Promise((resolve) => setTimeout(resolve, 600))
        return await inner.get(cid)
      }
    }
    await registerBlobsProtocol(server, source)
    const bc = client(node, { requestTimeoutMs: 200 })
    await expect(bc.fetch(server.peerId, slow.cid, 100)).rejects.toBeInstanceOf(NetTimeoutError)
    // the stream stays usable: the late answer to the timed-out request is drained and ignored
    expect(Buffer.from(await bc.fetch(server.peerId, fast.cid, 100)).equals(fast.blob)).toBe(true)

    const ac = new AbortController()
    const p = bc.fetch(server.peerId, slow.cid, 100, ac.signal)
    setTimeout(() => { ac.abort() }, 50)
    await expect(p).rejects.toBeInstanceOf(NetAbortedError)
    await expect(bc.fetch(server.peerId, fast.cid, 100, AbortSignal.abort())).rejects.toBeInstanceOf(NetAbortedError)
    expect(Buffer.from(await bc.fetch(server.peerId, fast.cid, 100)).equals(fast.blob)).toBe(true)

    const silent = await pool.create()
    await evilBlobServer(silent, () => {}) // says HELLO, then never answers
    const bc2 = client(node, { idleTimeoutMs: 300 })
    await expect(bc2.fetch(silent.peerId, randomBytes(32), 100)).rejects.toThrow(/waiting for data/)
  })

  it('fetchBatch reports every item once (blob or error), then resolves; abort fails what is left; skip drops queued requests unsent', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const source = new MemorySource()
    const blobs = Array.from({ length: 6 }, () => source.addRandom(2000))
    const stats = new BlobServerStats()
    await registerBlobsProtocol(server, source, { maxInflightPerStream: 1, stats })
    const bc = client(node)
    const outcomes = new Map<number, Uint8Array | Error>()
    const record = (i: number, blob: Uint8Array | undefined, err: Error | undefined): void => {
      expect(outcomes.has(i)).toBe(false) // once per item
      expect((blob === undefined) !== (err === undefined)).toBe(true) // one of the two
      outcomes.set(i, blob ?? err!)
    }
    const missing = randomBytes(32)
    const wants = [...blobs.slice(0, 3).map(b => ({ cid: b.cid, maxSize: 2000 })), { cid: missing, maxSize: 10 }, { cid: blobs[3]!.cid, maxSize: 1999 }]
    const sent: number[] = []
    await bc.fetchBatch(server.peerId, wants, record, { onSent: i => sent.push(i) })
    expect(outcomes.size).toBe(5)
    for (let i = 0; i < 3; i++) expect(Buffer.from(outcomes.get(i) as Uint8Array).equals(blobs[i]!.blob)).toBe(true)
    expect(outcomes.get(3)).toBeInstanceOf(BlobNotFoundError)
    expect(outcomes.get(4)).toBeInstanceOf(Error) // larger than the caller allows: the server refuses it
    expect(sent).toEqual([0, 1, 2, 3, 4]) // one in flight at a time (the server's limit), in order

    // skip: asked when an item's turn to be sent comes; a dropped item never reaches the server
    outcomes.clear()
    const before = stats.requests
    const dropped = new Set([1, 3])
    await bc.fetchBatch(server.peerId, blobs.slice(0, 4).map(b => ({ cid: b.cid, maxSize: 2000 })), record, { skip: i => dropped.has(i) })
    expect(outcomes.get(1)).toBeInstanceOf(NetAbortedError)
    expect(outcomes.get(3)).toBeInstanceOf(NetAbortedError)
    expect(Buffer.from(outcomes.get(2) as Uint8Array).equals(blobs[2]!.blob)).toBe(true)
    expect(stats.requests - before).toBe(2)

    // abort after the first blob: the rest fail with NetAbortedError, each once, and the promise resolves
    outcomes.clear()
    const ac = new AbortController()
    await bc.fetchBatch(server.peerId, blobs.map(b => ({ cid: b.cid, maxSize: 2000 })), (i, blob, err) => {
      record(i, blob, err)
      if (i === 0) ac.abort()
    }, { signal: ac.signal })
    expect(outcomes.size).toBe(6)
    expect(outcomes.get(0)).toBeInstanceOf(Uint8Array)
    for (let i = 1; i < 6; i++) expect(outcomes.get(i)).toBeInstanceOf(NetAbortedError)
    // an empty run resolves at once; a bad cid rejects before anything is sent
    await bc.fetchBatch(server.peerId, [], record)
    await expect(bc.fetchBatch(server.peerId, [{ cid: new Uint8Array(3), maxSize: 1 }], record)).rejects.toThrow(/32 bytes/)
    // and the stream still serves
    expect(Buffer.from(await bc.fetch(server.peerId, blobs[5]!.cid, 2000)).equals(blobs[5]!.blob)).toBe(true)
  })

  it('drops a server that keeps a cancelled request open (trickling, ignoring CANCEL): requests queued behind it fail, they do not wait forever', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    // one request in flight at a time; each answered with one byte every 100 ms, CANCEL ignored
    await server.handle(BLOBS_PROTOCOL, async (stream) => {
      const w = new FrameWriter(stream)
      await w.write([encodeHello(1)])
      try {
        for await (const f of readFrames(stream, { maxFrameBytes: 1024 })) {
          const m = decodeClientMsg(f)
          if (m.type !== MsgType.REQUEST) continue
          await w.write([encodeResponse(m.reqId, Status.OK, 1000)])
          for (let i = 0; i < 1000 && stream.status === 'open'; i++) {
            await new Promise(resolve => setTimeout(resolve, 100))
            await w.write([[encodeDataHeader(m.reqId), Uint8Array.of(0)]]).catch(() => {})
          }
        }
      } catch { /* the client dropped the stream */ }
    })
    const bc = client(node, { requestTimeoutMs: 200 })
    const t0 = Date.now()
    await expect(bc.fetch(server.peerId, randomBytes(32), 1000)).rejects.toBeInstanceOf(NetTimeoutError)
    // queued behind the cancelled one, which the server goes on trickling
    await expect(bc.fetch(server.peerId, randomBytes(32), 1000)).rejects.toThrow(/kept a cancelled request open/)
    expect(Date.now() - t0).toBeLessThan(3000) // not the 100 s the trickle would take
  })

  it('stops serving when unregistered', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const source = new MemorySource()
    const { cid, blob } = source.addRandom(100)
    const unregister = await registerBlobsProtocol(server, source)
    const bc = client(node)
    expect(Buffer.from(await bc.fetch(server.peerId, cid, 100)).equals(blob)).toBe(true)
    await unregister()
    // the open stream is ended, and no new one can be opened
    await waitFor(() => node.getConnections(server.peerId).flatMap((c) => c.streams).every((s) => s.protocol !== BLOBS_PROTOCOL))
    const err = await bc.fetch(server.peerId, cid, 100).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PeerProtocolError)
    expect((err as Error).message).toMatch(/does not serve/)
  })

  it('answers busy past the server-wide in-flight budget', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const inner = new MemorySource()
    const blobs = Array.from({ length: 6 }, () => inner.addRandom(100))
    const source: BlobSource = { get: async (cid) => { await new Promise((resolve) => setTimeout(resolve, 50)); return await inner.get(cid) } }
    await registerBlobsProtocol(server, source, { maxInflightTotal: 2 })
    const bc = client(node)
    const results = await Promise.allSettled(blobs.map(async (b) => await bc.fetch(server.peerId, b.cid, 100)))
    const busy = results.filter((r) => r.status === 'rejected' && r.reason instanceof BlobBusyError)
    const ok = results.filter((r) => r.status === 'fulfilled')
    expect(ok.length).toBeGreaterThanOrEqual(2)
    expect(busy.length).toBeGreaterThanOrEqual(1)
    expect(ok.length + busy.length).toBe(6)
  })

  it('interoperates between an mplex-only node and a default (yamux+mplex) node, both ways', async () => {
    const [mplexOnly, dflt] = await Promise.all([pool.create({ muxers: ['mplex'] }), pool.create()])
    const srcA = new MemorySource()
    const srcB = new MemorySource()
    const a = Array.from({ length: 20 }, (_, i) => srcA.addRandom(1 + i * 20_000))
    const b = Array.from({ length: 20 }, (_, i) => srcB.addRandom(1 + i * 20_000))
    await registerBlobsProtocol(mplexOnly, srcA)
    await registerBlobsProtocol(dflt, srcB)
    const fromMplex = client(dflt, { window: 128 * KiB })
    const fromDefault = client(mplexOnly, { window: 128 * KiB })
    const [gotA, gotB] = await Promise.all([
      Promise.all(a.map(async (x) => await fromMplex.fetch(mplexOnly.getMultiaddrs()[0]!, x.cid, x.blob.byteLength))),
      Promise.all(b.map(async (x) => await fromDefault.fetch(dflt.peerId, x.cid, x.blob.byteLength)))
    ])
    gotA.forEach((g, i) => { expect(Buffer.from(g).equals(a[i]!.blob)).toBe(true) })
    gotB.forEach((g, i) => { expect(Buffer.from(g).equals(b[i]!.blob)).toBe(true) })
    for (const c of dflt.getConnections(mplexOnly.peerId)) expect(c.multiplexer).toBe('/mplex/6.7.0')
  })
})
