import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { admitMac, pnetSwarmKey } from '../../src/net/admission.js'
import { BlobClient, registerBlobsProtocol } from '../../src/net/blobs.js'
import { encodeCredit, encodeRequest } from '../../src/net/blobs-wire.js'
import { BLOBS_PROTOCOL } from '../../src/net/constants.js'
import { encodeFrames } from '../../src/net/framing.js'
import type { ShoalNode } from '../../src/net/node.js'
import { callRpc, handleRpc } from '../../src/net/rpc.js'
import { KEY_A, KEY_B, MemorySource, NodePool, waitFor } from './helpers.js'

const pool = new NodePool()
const clients: BlobClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
  await pool.stopAll()
})

const RPC = '/shoal/test-echo/1'

describe('admission MAC', () => {
  it('binds the role, both PeerIds and both nonces', async () => {
    const i = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const r = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const nI = randomBytes(32)
    const nR = randomBytes(32)
    const base = Buffer.from(admitMac(KEY_A, 'I', i, r, nI, nR)).toString('hex')
    expect(Buffer.from(admitMac(KEY_A, 'I', i, r, nI, nR)).toString('hex')).toBe(base)
    const variants = [
      admitMac(KEY_B, 'I', i, r, nI, nR),
      admitMac(KEY_A, 'R', i, r, nI, nR),
      admitMac(KEY_A, 'I', r, i, nI, nR),
      admitMac(KEY_A, 'I', i, r, nR, nI)
    ].map((m) => Buffer.from(m).toString('hex'))
    expect(new Set([base, ...variants]).size).toBe(5)
  })

  it('writes the network key in pnet swarm.key format', () => {
    const text = new TextDecoder().decode(pnetSwarmKey(KEY_A))
    expect(text).toBe(`/key/swarm/psk/1.0.0/\n/base16/\n${'a1'.repeat(32)}`)
  })
})

for (const mode of ['handshake', 'pnet'] as const) {
  describe(`admission = ${mode}`, () => {
    it('same-key nodes use blobs and rpc', async () => {
      const [server, node] = await Promise.all([pool.create({ admission: mode }), pool.create({ admission: mode })])
      const source = new MemorySource()
      const { cid, blob } = source.addRandom(50_000)
      await registerBlobsProtocol(server, source)
      await handleRpc(server, RPC, async (req) => req, { maxRequestBytes: 100, maxResponseBytes: 100 })
      const bc = new BlobClient(node)
      clients.push(bc)
      expect(Buffer.from(await bc.fetch(server.peerId, cid, 50_000)).equals(blob)).toBe(true)
      expect(Buffer.from(await callRpc(node, server.peerId, RPC, Buffer.from('hi'), { maxRequestBytes: 100, maxResponseBytes: 100 })).toString()).toBe('hi')
      const admission = node.services.admission
      const conn = node.getConnections(server.peerId)[0]!
      expect(admission.isAdmitted(conn)).toBe(true)
      // identify ran once admitted
      await waitFor(() => { void identified(node, server.peerId).then((v) => { seen = v }); return seen })
    })

    it('a node with another network key gets nothing', async () => {
      const server = await pool.create({ admission: mode, networkKey: KEY_A })
      const outsider = await pool.create({ admission: mode, networkKey: KEY_B })
      const source = new MemorySource()
      const { cid } = source.addRandom(1000)
      await registerBlobsProtocol(server, source)
      let rpcCalls = 0
      await handleRpc(server, RPC, async (req) => { rpcCalls++; return req }, { maxRequestBytes: 100, maxResponseBytes: 100 })

      // through the proper client: refused before any request leaves
      // (with pnet a wrong-key dial stalls inside Noise until a deadline: keep them short)
      const bc = new BlobClient(outsider, { openTimeoutMs: 1_500 })
      clients.push(bc)
      await expect(bc.fetch(server.peerId, cid, 1000)).rejects.toThrow(mode === 'pnet' ? /cannot connect|timed out/ : /not admitted|connection closed/)
      await expect(callRpc(outsider, server.peerId, RPC, Buffer.from('hi'), { maxRequestBytes: 100, maxResponseBytes: 100, timeoutMs: 1_500 })).rejects.toThrow()

      // a hostile client that skips its own checks and writes a request straight away
      const received: number[] = []
      const raw = await (async () => {
        try {
          const stream = await outsider.dialProtocol(server.peerId, BLOBS_PROTOCOL, { signal: AbortSignal.timeout(1_500) })
          stream.send(encodeFrames([encodeCredit(1 << 20), encodeRequest(0, 1000, cid)]))
          for await (const chunk of stream) received.push(chunk.byteLength)
          return 'stream ended'
        } catch (err) {
          return (err as Error).name
        }
      })()
      expect(raw).toBeDefined()
      expect(received).toEqual([]) // not even the server's HELLO
      expect(source.gets).toBe(0)
      expect(rpcCalls).toBe(0)
      await waitFor(() => server.getConnections(outsider.peerId).length === 0, 8_000)

      // identify told the outsider nothing (no agent, no protocol list, no addresses). In handshake
      // mode, multistream-select still confirms a protocol id the outsider names itself.
      expect(await identified(outsider, server.peerId)).toBe(false)
      const known = await outsider.peerStore.get(server.peerId).then((p) => p.protocols, () => [])
      if (mode === 'pnet') expect(known).toEqual([])
      else expect(known).not.toContain(RPC)
    })
  })
}

describe('admission handshake deadline', () => {
  it('closes a connection from a node that never runs the handshake', async () => {
    const server = await pool.create({ admission: 'handshake', admissionTimeoutMs: 300 })
    const source = new MemorySource()
    const { cid } = source.addRandom(10)
    await registerBlobsProtocol(server, source)
    const plain = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })
    try {
      const started = Date.now()
      const conn = await plain.dial(server.getMultiaddrs()[0]!)
      const stream = await conn.newStream(BLOBS_PROTOCOL).catch(() => undefined)
      stream?.send(encodeFrames([encodeCredit(1 << 20), encodeRequest(0, 10, cid)]))
      await waitFor(() => conn.status !== 'open', 5_000)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(source.gets).toBe(0)
    } finally {
      await plain.stop()
    }
  })
})

let seen = false

async function identified (node: ShoalNode, peer: PeerId): Promise<boolean> {
  try {
    return (await node.peerStore.get(peer)).metadata.has('AgentVersion')
  } catch {
    return false
  }
}
