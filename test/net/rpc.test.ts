import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../src/core/errors.js'
import { NetTimeoutError, PeerProtocolError, RpcRemoteError } from '../../src/net/errors.js'
import { encodeFrames } from '../../src/net/framing.js'
import { callRpc, handleRpc } from '../../src/net/rpc.js'
import { BlobNotFoundError } from '../../src/net/blobs.js'
import { NodePool, waitFor } from './helpers.js'

const pool = new NodePool()
afterEach(async () => { await pool.stopAll() })

const P = '/shoal/test-rpc/1'
const limits = { maxRequestBytes: 1000, maxResponseBytes: 2000 }

describe('rpc', () => {
  it('round-trips a request and passes the caller PeerId', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    const callers: string[] = []
    await handleRpc(server, P, async (req, peer) => {
      callers.push(peer.toString())
      return Buffer.concat([Buffer.from('echo:'), req])
    }, limits)
    const res = await callRpc(node, server.peerId, P, Buffer.from('ping'), limits)
    expect(Buffer.from(res).toString()).toBe('echo:ping')
    expect(Buffer.from(await callRpc(node, server.getMultiaddrs()[0]!, P, new Uint8Array(0), limits)).toString()).toBe('echo:')
    expect(callers).toEqual([node.peerId.toString(), node.peerId.toString()])
  })

  it('reports handler failures: ShoalError code and message, anything else as ERR_INTERNAL', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    await handleRpc(server, P, async (req) => {
      if (req[0] === 1) throw new BlobNotFoundError('x', 'abcd')
      throw new Error('secret internals')
    }, limits)
    const e1 = await callRpc(node, server.peerId, P, Uint8Array.of(1), limits).catch((e: unknown) => e)
    expect(e1).toBeInstanceOf(RpcRemoteError)
    expect((e1 as RpcRemoteError).remoteCode).toBe('ERR_BLOB_NOT_FOUND')
    expect((e1 as Error).message).toMatch(/does not have blob abcd/)
    const e2 = await callRpc(node, server.peerId, P, Uint8Array.of(2), limits).catch((e: unknown) => e)
    expect((e2 as RpcRemoteError).remoteCode).toBe('ERR_INTERNAL')
    expect((e2 as Error).message).not.toMatch(/secret/)
  })

  it('enforces byte caps on both sides', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    let calls = 0
    await handleRpc(server, P, async (req) => { calls++; return new Uint8Array(req[0] === 9 ? 5000 : 10) }, { maxRequestBytes: 100, maxResponseBytes: 10_000 })
    // the caller refuses to send more than its own cap
    await expect(callRpc(node, server.peerId, P, new Uint8Array(200), { maxRequestBytes: 100, maxResponseBytes: 100 })).rejects.toBeInstanceOf(InvalidArgumentError)
    // a caller with a larger cap is cut off by the server before the handler runs
    await expect(callRpc(node, server.peerId, P, new Uint8Array(200), { maxRequestBytes: 1000, maxResponseBytes: 100 })).rejects.toThrow()
    expect(calls).toBe(0)
    // a reply above the caller's cap is refused
    await expect(callRpc(node, server.peerId, P, Uint8Array.of(9), { maxRequestBytes: 100, maxResponseBytes: 100 })).rejects.toBeInstanceOf(PeerProtocolError)
    expect(Buffer.from(await callRpc(node, server.peerId, P, Uint8Array.of(1), { maxRequestBytes: 100, maxResponseBytes: 100 })).byteLength).toBe(10)
  })

  it('refuses a hostile caller that announces a huge request', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    let calls = 0
    await handleRpc(server, P, async () => { calls++; return new Uint8Array(1) }, limits)
    const stream = await node.dialProtocol(server.peerId, P)
    const frame = encodeFrames([new Uint8Array(10)])
    new DataView(frame.buffer).setUint32(0, 50 * 1024 * 1024) // claims 50 MiB
    stream.send(frame)
    const got: number[] = []
    await expect((async () => { for await (const c of stream) got.push(c.byteLength) })()).rejects.toThrow()
    expect(got).toEqual([])
    expect(calls).toBe(0)
  })

  it('times out a slow handler and rejects an unknown protocol', async () => {
    const [server, node] = await Promise.all([pool.create(), pool.create()])
    await handleRpc(server, P, async () => { await new Promise((resolve) => setTimeout(resolve, 1_000)); return new Uint8Array(1) }, limits)
    await expect(callRpc(node, server.peerId, P, Uint8Array.of(1), { ...limits, timeoutMs: 200 })).rejects.toBeInstanceOf(NetTimeoutError)
    await expect(callRpc(node, server.peerId, '/shoal/nope/1', Uint8Array.of(1), limits)).rejects.toBeInstanceOf(PeerProtocolError)
  })

  it('serves a burst of calls over mplex (one stream each) without being disconnected', async () => {
    const [server, node] = await Promise.all([pool.create({ muxers: ['mplex'] }), pool.create({ muxers: ['mplex'] })])
    await handleRpc(server, P, async (req) => req, { ...limits, maxInboundStreams: 64 })
    const replies = await Promise.all(Array.from({ length: 60 }, async (_, i) => await callRpc(node, server.peerId, P, Uint8Array.of(i), limits)))
    expect(replies.map((r) => r[0])).toEqual(Array.from({ length: 60 }, (_, i) => i))
    await waitFor(() => node.getConnections(server.peerId).length === 1)
    expect(node.getConnections(server.peerId)[0]!.multiplexer).toBe('/mplex/6.7.0')
  })
})
