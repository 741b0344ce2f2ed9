import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../src/core/errors.js'
import { BlobClient, registerBlobsProtocol } from '../../src/net/blobs.js'
import { createShoalNode } from '../../src/net/node.js'
import { KEY_A, MemorySource, NodePool } from './helpers.js'

const pool = new NodePool()
const clients: BlobClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => { await c.close() }))
  await pool.stopAll()
})

describe('createShoalNode', () => {
  it('validates its options', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const base = { privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], networkKey: KEY_A, start: false }
    await expect(createShoalNode({ ...base, networkKey: new Uint8Array(31) })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(createShoalNode({ ...base, admission: 'open' as 'pnet' })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(createShoalNode({ ...base, muxers: [] })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(createShoalNode({ ...base, muxers: ['spdy' as 'yamux'] })).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('offers yamux first and admits by handshake by default', async () => {
    const [a, b] = await Promise.all([pool.create(), pool.create()])
    const conn = await b.dial(a.peerId)
    expect(conn.multiplexer).toBe('/yamux/1.0.0')
    expect(b.services.admission.mode).toBe('handshake')
    await b.services.admission.whenAdmitted(conn)
    expect(b.services.admission.isAdmitted(conn)).toBe(true)
  })

  it('serves a dozen nodes on 127.0.0.1 that all connect within the same second', async () => {
    const server = await pool.create()
    const source = new MemorySource()
    const { cid, blob } = source.addRandom(4096)
    await registerBlobsProtocol(server, source)
    const nodes = await Promise.all(Array.from({ length: 12 }, async () => await pool.create()))
    const got = await Promise.all(nodes.map(async (n) => {
      const bc = new BlobClient(n)
      clients.push(bc)
      return await bc.fetch(server.peerId, cid, 4096)
    }))
    for (const g of got) expect(Buffer.from(g).equals(blob)).toBe(true)
    expect(server.getConnections().length).toBe(12)
  })
})
