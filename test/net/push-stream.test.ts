import { afterEach, describe, expect, it } from 'vitest'
import type { PeerId } from '@libp2p/interface'
import { InvalidArgumentError } from '../../src/core/errors.js'
import { PeerProtocolError } from '../../src/net/errors.js'
import { encodeFrames } from '../../src/net/framing.js'
import type { ShoalNode } from '../../src/net/node.js'
import { handlePushStream, PushStreams } from '../../src/net/push-stream.js'
import { KEY_B, NodePool, waitFor } from './helpers.js'

const pool = new NodePool()
afterEach(async () => { await pool.stopAll() })

const P = '/shoal/test-push/1'

function streamsOn (node: ShoalNode, peer: PeerId): number {
  return node.getConnections(peer).flatMap(c => c.streams).filter(s => s.protocol === P).length
}

describe('push streams', () => {
  it('delivers every message in order over one stream per peer, from the sender\'s PeerId', async () => {
    const [rx, tx] = await Promise.all([pool.create(), pool.create()])
    const got: string[] = []
    const from = new Set<string>()
    await handlePushStream(rx, P, (msg, peer) => { got.push(Buffer.from(msg).toString()); from.add(peer.toString()) }, { maxFrameBytes: 100 })
    const out = new PushStreams(tx, P, { maxFrameBytes: 100 })
    const sent: string[] = []
    for (let i = 0; i < 50; i++) {
      const batch = [`m${i}a`, `m${i}b`]
      sent.push(...batch)
      await out.send(rx.peerId, batch.map(s => Buffer.from(s)))
    }
    await waitFor(() => got.length === sent.length)
    expect(got).toEqual(sent)
    expect([...from]).toEqual([tx.peerId.toString()])
    expect(streamsOn(rx, tx.peerId)).toBe(1)
    out.close()
    await expect(out.send(rx.peerId, [Buffer.from('late')])).rejects.toThrow(InvalidArgumentError)
  })

  it('refuses to send a frame above its limit, and says when the peer does not serve the protocol', async () => {
    const [rx, tx] = await Promise.all([pool.create(), pool.create()])
    const out = new PushStreams(tx, P, { maxFrameBytes: 10 })
    await expect(out.send(rx.peerId, [new Uint8Array(11)])).rejects.toThrow(InvalidArgumentError)
    await expect(out.send(rx.peerId, [new Uint8Array(5)])).rejects.toThrow(PeerProtocolError)
  })

  it('a stream the receiver ends (an oversize frame, a handler that throws) is replaced on the next send', async () => {
    const [rx, tx] = await Promise.all([pool.create(), pool.create()])
    const got: string[] = []
    await handlePushStream(rx, P, (msg) => {
      const s = Buffer.from(msg).toString()
      if (s === 'bad') throw new Error('refused')
      got.push(s)
    }, { maxFrameBytes: 8 })
    // a raw sender: a frame above the receiver's limit ends the stream before its payload is kept
    const raw = await tx.dialProtocol(rx.peerId, P)
    raw.send(encodeFrames([Buffer.from('ok1'), Buffer.from('much too long')]))
    await waitFor(() => raw.status !== 'open')
    expect(got).toEqual(['ok1'])

    const out = new PushStreams(tx, P, { maxFrameBytes: 100 })
    await out.send(rx.peerId, [Buffer.from('a'), Buffer.from('bad'), Buffer.from('lost')])
    await waitFor(() => streamsOn(tx, rx.peerId) === 0)
    expect(got).toEqual(['ok1', 'a'])
    // the dead stream is forgotten: the next send opens another and gets through
    await out.send(rx.peerId, [Buffer.from('b')])
    await waitFor(() => got.length === 3)
    expect(got).toEqual(['ok1', 'a', 'b'])
  })

  it('a peer of another fleet gets nothing delivered', async () => {
    const rx = await pool.create()
    const foreign = await pool.create({ networkKey: KEY_B })
    const got: Uint8Array[] = []
    await handlePushStream(rx, P, (msg) => { got.push(msg) }, { maxFrameBytes: 100 })
    const out = new PushStreams(foreign, P, { maxFrameBytes: 100 })
    await expect(out.send(rx.peerId, [Buffer.from('hi')])).rejects.toThrow()
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(got).toEqual([])
  })
})
