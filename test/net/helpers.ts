// Shared set-up for the net tests: real libp2p nodes on 127.0.0.1, stopped after each test.
import { createHash, randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { createShoalNode, type ShoalNode, type ShoalNodeOptions } from '../../src/net/node.js'
import type { BlobSource } from '../../src/net/blobs.js'
import { decodeClientMsg, encodeHello, MsgType } from '../../src/net/blobs-wire.js'
import { BLOBS_PROTOCOL } from '../../src/net/constants.js'
import { FrameWriter, readFrames, type FramePayload } from '../../src/net/framing.js'

export const KEY_A = new Uint8Array(32).fill(0xa1)
export const KEY_B = new Uint8Array(32).fill(0xb2)

export class NodePool {
  readonly nodes: ShoalNode[] = []

  async create (opts: Partial<ShoalNodeOptions> = {}): Promise<ShoalNode> {
    const node = await createShoalNode({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      networkKey: KEY_A,
      ...opts
    })
    // every node of the pool knows the others' addresses, so tests can fetch by PeerId
    for (const other of this.nodes) {
      await other.peerStore.merge(node.peerId, { multiaddrs: node.getMultiaddrs() })
      await node.peerStore.merge(other.peerId, { multiaddrs: other.getMultiaddrs() })
    }
    this.nodes.push(node)
    return node
  }

  // One after the other, newest (usually the fetching side) first: otherwise a node closing a
  // connection whose far end is closing too waits out libp2p's 500 ms graceful-close timeout.
  async stopAll (): Promise<void> {
    for (const n of this.nodes.splice(0).reverse()) await n.stop()
  }
}

export function sha256 (b: Uint8Array): Uint8Array {
  return createHash('sha256').update(b).digest()
}

/** An in-memory BlobSource keyed by hex cid. */
export class MemorySource implements BlobSource {
  readonly blobs = new Map<string, Uint8Array>()
  gets = 0

  add (blob: Uint8Array): Uint8Array {
    const cid = sha256(blob)
    this.blobs.set(Buffer.from(cid).toString('hex'), blob)
    return cid
  }

  addRandom (size: number): { cid: Uint8Array, blob: Uint8Array } {
    const blob = randomBytes(size)
    return { cid: this.add(blob), blob }
  }

  async get (cid: Uint8Array): Promise<Uint8Array | null> {
    this.gets++
    return this.blobs.get(Buffer.from(cid).toString('hex')) ?? null
  }
}

/** A scriptable /shoal/blobs/1 server for tests that need a peer who misbehaves. */
export interface EvilRequest { reqId: number, cid: Uint8Array, maxSize: number }
export interface EvilCtx {
  stream: Stream
  /** Sends frames, waiting for drain; resolves false once the stream is gone. */
  send: (frames: FramePayload[]) => Promise<boolean>
}
export interface EvilServer { streams: number, requests: EvilRequest[], credits: number[], bytesSent: number }

export async function evilBlobServer (node: ShoalNode, onRequest: (req: EvilRequest, ctx: EvilCtx) => void | Promise<void>): Promise<EvilServer> {
  const state: EvilServer = { streams: 0, requests: [], credits: [], bytesSent: 0 }
  await node.handle(BLOBS_PROTOCOL, async (stream: Stream) => {
    state.streams++
    const writer = new FrameWriter(stream)
    const ctx: EvilCtx = {
      stream,
      send: async (frames) => {
        try {
          await writer.write(frames)
          for (const f of frames) state.bytesSent += f instanceof Uint8Array ? f.byteLength : f.reduce((n, p) => n + p.byteLength, 0)
          return true
        } catch {
          return false
        }
      }
    }
    await ctx.send([encodeHello(64)])
    try {
      for await (const frame of readFrames(stream, { maxFrameBytes: 1024 })) {
        const msg = decodeClientMsg(frame)
        if (msg.type === MsgType.CREDIT) state.credits.push(msg.bytes)
        if (msg.type === MsgType.REQUEST) {
          const req = { reqId: msg.reqId, cid: Uint8Array.from(msg.cid), maxSize: msg.maxSize }
          state.requests.push(req)
          void onRequest(req, ctx)
        }
      }
    } catch {
      // the test killed the stream, or the client dropped it: either way this server is done
    }
  })
  return state
}

export async function waitFor (cond: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
