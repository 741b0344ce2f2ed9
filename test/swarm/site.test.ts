// Site membership and have increments between real libp2p nodes on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest'
import { HAVES_PROTOCOL } from '../../src/net/constants.js'
import type { ShoalNode } from '../../src/net/node.js'
import { FLUSH_MS, Site, type SiteMember } from '../../src/swarm/site.js'
import { NodePool, waitFor } from '../net/helpers.js'

const pool = new NodePool()
const sites: Site[] = []
afterEach(async () => {
  for (const s of sites.splice(0)) await s.stop()
  await pool.stopAll()
})

const RELEASE = 'ab'.repeat(32)
const CHUNKS = 64

async function site (node: ShoalNode): Promise<{ site: Site, heard: number[] }> {
  const heard: number[] = []
  const bits = new Uint8Array(CHUNKS / 8)
  const s = new Site(node, 'lab', { haves: () => new Map([[RELEASE, bits]]), weight: () => 1, wan: () => false }, {
    onHave: (_m: SiteMember, release: string, indices: number[] | 'all') => { if (release === RELEASE && indices !== 'all') heard.push(...indices) }
  })
  await s.start()
  sites.push(s)
  return { site: s, heard }
}

function held (m: SiteMember | undefined): number[] {
  const bits = m?.haves.get(RELEASE) ?? new Uint8Array(0)
  return [...Array(bits.byteLength * 8).keys()].filter(i => ((bits[i >> 3] ?? 0) & (1 << (i & 7))) !== 0)
}

describe('site', () => {
  it('increments reach every member over one long-lived stream each, flush after flush', async () => {
    const nodes = await Promise.all([pool.create(), pool.create(), pool.create()])
    const [a, b, c] = await Promise.all(nodes.map(site))
    await a!.site.meet(nodes[1]!.peerId)
    await a!.site.meet(nodes[2]!.peerId)
    expect(a!.site.members.size).toBe(2)
    for (const i of [3, 5, 9, 40, 63]) {
      a!.site.have(RELEASE, i)
      await new Promise(resolve => setTimeout(resolve, FLUSH_MS + 20)) // one flush each
    }
    for (const x of [b!, c!]) {
      await waitFor(() => x.heard.length === 5)
      expect(x.heard).toEqual([3, 5, 9, 40, 63])
      expect(held(x.site.members.get(nodes[0]!.peerId.toString()))).toEqual([3, 5, 9, 40, 63])
    }
    for (const n of [nodes[1]!, nodes[2]!]) {
      expect(n.getConnections(nodes[0]!.peerId).flatMap(conn => conn.streams).filter(s => s.protocol === HAVES_PROTOCOL)).toHaveLength(1)
    }
  })

  it('a member without /shoal/haves/1 (an older version) still hears every increment, as RPCs', async () => {
    const nodes = await Promise.all([pool.create(), pool.create()])
    const [a, old] = await Promise.all(nodes.map(site))
    await nodes[1]!.unhandle(HAVES_PROTOCOL)
    await a!.site.meet(nodes[1]!.peerId)
    a!.site.have(RELEASE, 7)
    await waitFor(() => old!.heard.length === 1)
    a!.site.have(RELEASE, 8)
    a!.site.have(RELEASE, 1)
    await waitFor(() => old!.heard.length === 3)
    expect(held(old!.site.members.get(nodes[0]!.peerId.toString()))).toEqual([1, 7, 8])
  })

  it('an increment from a peer that is not (yet) a member is ignored, and the stream stays up for the next', async () => {
    const nodes = await Promise.all([pool.create(), pool.create()])
    const [a, b] = await Promise.all(nodes.map(site))
    await a!.site.meet(nodes[1]!.peerId)
    // b forgets a (as if a's hello had not reached it yet); a's increment is then ignored
    b!.site.members.clear()
    a!.site.have(RELEASE, 2)
    await waitFor(() => nodes[1]!.getConnections(nodes[0]!.peerId).flatMap(conn => conn.streams).some(s => s.protocol === HAVES_PROTOCOL))
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(b!.heard).toEqual([])
    await b!.site.meet(nodes[0]!.peerId)
    a!.site.have(RELEASE, 4)
    await waitFor(() => b!.heard.length === 1)
    expect(held(b!.site.members.get(nodes[0]!.peerId.toString()))).toEqual([4])
    expect(nodes[1]!.getConnections(nodes[0]!.peerId).flatMap(conn => conn.streams).filter(s => s.protocol === HAVES_PROTOCOL)).toHaveLength(1)
  })

  it('a member whose hello names another site label stops being a member: its increments stream closes and it hears no more', async () => {
    const nodes = await Promise.all([pool.create(), pool.create()])
    const [a, b] = await Promise.all(nodes.map(site))
    await a!.site.meet(nodes[1]!.peerId)
    a!.site.have(RELEASE, 6)
    await waitFor(() => b!.heard.length === 1)
    const bId = nodes[1]!.peerId.toString()
    const outbound = (): number => nodes[0]!.getConnections(nodes[1]!.peerId).flatMap(conn => conn.streams).filter(s => s.protocol === HAVES_PROTOCOL).length
    expect(outbound()).toBe(1)
    // b now names another label in its hello (its config changed). Its Site keeps running, so the
    // stream a opened to it stays up unless a itself drops it.
    ;(b!.site as { label: string | null }).label = 'elsewhere'
    await b!.site.meet(nodes[0]!.peerId)
    await waitFor(() => !a!.site.members.has(bId))
    await waitFor(() => outbound() === 0)
    a!.site.have(RELEASE, 7)
    await new Promise(resolve => setTimeout(resolve, FLUSH_MS + 200))
    expect(b!.heard).toEqual([6])
    expect(outbound()).toBe(0)
  })
})
