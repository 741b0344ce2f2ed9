import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerInfo } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { LanDiscovery, REANNOUNCE_MS } from '../../src/net/lan-discovery.js'

// Stands in for @libp2p/mdns: emits 'peer' for each answer it is told about.
class FakeMdns extends EventTarget {
  started = false
  async start (): Promise<void> { this.started = true }
  async stop (): Promise<void> { this.started = false }
  answer (peer: PeerInfo): void { this.dispatchEvent(new CustomEvent('peer', { detail: peer })) }
}

async function peer (...addrs: string[]): Promise<PeerInfo> {
  return { id: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), multiaddrs: addrs.map(a => multiaddr(a)) }
}

describe('LAN discovery', () => {
  it('passes libp2p a peer when new, when its addresses change, and once per REANNOUNCE_MS; the site hears every answer', async () => {
    const inner = new FakeMdns()
    let now = 1_000_000
    const d = new LanDiscovery(inner as never, () => now)
    const toLibp2p: string[] = []
    const answers: string[] = []
    d.addEventListener('peer', (evt) => { toLibp2p.push((evt as CustomEvent<PeerInfo>).detail.id.toString()) })
    const off = d.onAnswer(p => answers.push(p.id.toString()))
    await d.start()
    expect(inner.started).toBe(true)

    const a = await peer('/ip4/10.0.0.2/tcp/7700')
    const b = await peer('/ip4/10.0.0.3/tcp/7700')
    for (let i = 0; i < 10; i++) { inner.answer(a); inner.answer(b); now += 1000 }
    expect(toLibp2p).toEqual([a.id.toString(), b.id.toString()])
    expect(answers).toHaveLength(20)
    // the same addresses in another order are the same set
    inner.answer({ id: a.id, multiaddrs: [...a.multiaddrs].reverse() })
    expect(toLibp2p).toHaveLength(2)
    // a new address goes through at once
    const moved = { id: a.id, multiaddrs: [multiaddr('/ip4/10.0.0.9/tcp/7700')] }
    inner.answer(moved)
    expect(toLibp2p).toEqual([a.id.toString(), b.id.toString(), a.id.toString()])
    // unchanged, again after REANNOUNCE_MS
    now += REANNOUNCE_MS
    inner.answer(moved)
    inner.answer(moved)
    expect(toLibp2p).toHaveLength(4)

    off()
    inner.answer(b)
    expect(answers).toHaveLength(24) // the last one came after off()
    expect(toLibp2p).toHaveLength(5) // b was last passed on REANNOUNCE_MS ago
    await d.stop()
    expect(inner.started).toBe(false)
    // stopping forgets: after a restart every peer is new again
    await d.start()
    inner.answer(moved)
    expect(toLibp2p).toHaveLength(6)
  })
})
