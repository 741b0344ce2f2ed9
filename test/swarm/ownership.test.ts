import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { LINK_WEIGHTS, ownerOf, ownershipWeight, rankOwners, rendezvousUnit, type Candidate } from '../../src/swarm/ownership.js'

const cid = (n: number): string => createHash('sha256').update(`chunk ${n}`).digest('hex')
const peerArb = fc.uniqueArray(fc.record({ id: fc.string({ minLength: 1, maxLength: 12 }), weight: fc.constantFrom(0, 20, 40, 100, 7.5) }), { minLength: 1, maxLength: 8, selector: p => p.id })

describe('ownership weights', () => {
  it('puts a wired desktop above a Wi-Fi laptop, zero on battery or metered', () => {
    expect(ownershipWeight({ power: 'ac', link: 'wired' })).toBe(100)
    expect(ownershipWeight({ power: 'ac', link: 'wifi' })).toBe(40)
    expect(ownershipWeight({ power: 'ac', link: 'unknown' })).toBe(20)
    expect(ownershipWeight({ power: 'ac', link: 'metered' })).toBe(0)
    expect(ownershipWeight({ power: 'battery', link: 'wired' })).toBe(0)
    expect(LINK_WEIGHTS.wired).toBeGreaterThan(LINK_WEIGHTS.wifi)
  })
})

describe('weighted rendezvous', () => {
  it('draws u strictly inside (0, 1), fixed by (peerId, cid)', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (p, c) => {
      const u = rendezvousUnit(p, c)
      expect(u).toBeGreaterThan(0)
      expect(u).toBeLessThan(1)
      expect(rendezvousUnit(p, c)).toBe(u)
    }))
    expect(rendezvousUnit('ab', 'c')).not.toBe(rendezvousUnit('a', 'bc'))
  })

  it('is the first 53 bits of SHA-256(utf8(peerId) ‖ 0x00 ‖ utf8(cid)), as docs/swarm.md defines it (checked against noble)', () => {
    const spec = (p: string, c: string): number => {
      const enc = new TextEncoder()
      const d = nobleSha256(new Uint8Array([...enc.encode(p), 0, ...enc.encode(c)]))
      const v = new DataView(d.buffer, d.byteOffset)
      return ((v.getUint32(0) >>> 11) * 2 ** 32 + v.getUint32(4) + 0.5) / 2 ** 53
    }
    fc.assert(fc.property(fc.string({ maxLength: 300 }), fc.oneof(fc.string(), fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => Buffer.from(b).toString('hex'))), (p, c) => {
      expect(rendezvousUnit(p, c)).toBe(spec(p, c))
    }), { numRuns: 500 })
    // long ids and cids outgrow the scratch buffer; the same peer again reuses its cached prefix
    const long = 'x'.repeat(5000)
    expect(rendezvousUnit(long, long)).toBe(spec(long, long))
    expect(rendezvousUnit('12D3KooWpeer', 'ab'.repeat(32))).toBe(spec('12D3KooWpeer', 'ab'.repeat(32)))
  })

  it('is deterministic: the order peers are listed in does not matter', () => {
    fc.assert(fc.property(peerArb, fc.nat(), fc.integer(), (peers, n, seed) => {
      const shuffled = [...peers].sort((a, b) => ((a.id.length * 31 + seed) % 7) - ((b.id.length * 31 + seed) % 7) || (a.id < b.id ? 1 : -1))
      const r1 = rankOwners(cid(n), peers).map(p => p.id)
      const r2 = rankOwners(cid(n), shuffled).map(p => p.id)
      expect(r2).toEqual(r1)
      expect(ownerOf(cid(n), shuffled)?.id).toBe(r1[0])
    }))
  })

  it('ranks zero-weight peers last, yet lets them own when alone', () => {
    fc.assert(fc.property(peerArb, fc.nat(), (peers, n) => {
      const r = rankOwners(cid(n), peers)
      const firstZero = r.findIndex(p => p.weight === 0)
      if (firstZero >= 0) expect(r.slice(firstZero).every(p => p.weight === 0)).toBe(true)
    }))
    expect(ownerOf(cid(1), [{ id: 'battery', weight: 0 }])?.id).toBe('battery')
    expect(ownerOf(cid(1), [])).toBeUndefined()
  })

  it('moves only the leaving peer\'s chunks', () => {
    fc.assert(fc.property(peerArb.filter(p => p.length >= 2), fc.nat(), fc.nat(), (peers, leaver, n0) => {
      const gone = peers[leaver % peers.length]!
      const rest = peers.filter(p => p !== gone)
      for (let n = n0; n < n0 + 50; n++) {
        const before = rankOwners(cid(n), peers)
        const after = rankOwners(cid(n), rest)
        // The rest keep their relative order: the next in rank takes over exactly the leaver's chunks.
        expect(after.map(p => p.id)).toEqual(before.filter(p => p !== gone).map(p => p.id))
        if (before[0] !== gone) expect(after[0]).toBe(before[0])
      }
    }), { numRuns: 50 })
  })

  it('spreads chunks in proportion to weight', () => {
    const peers: Candidate[] = [{ id: 'desktop', weight: 100 }, { id: 'laptop', weight: 40 }, { id: 'other', weight: 20 }, { id: 'battery', weight: 0 }]
    const n = 8000
    const won = new Map<string, number>()
    for (let i = 0; i < n; i++) {
      const o = ownerOf(cid(i), peers)!.id
      won.set(o, (won.get(o) ?? 0) + 1)
    }
    expect(won.get('battery') ?? 0).toBe(0)
    for (const p of peers.slice(0, 3)) {
      const share = (won.get(p.id) ?? 0) / n
      expect(Math.abs(share - p.weight / 160)).toBeLessThan(0.025)
    }
    // Equal weights: a uniform split.
    const eq = Array.from({ length: 5 }, (_, i) => ({ id: `peer-${i}`, weight: 40 }))
    const counts = new Array<number>(5).fill(0)
    for (let i = 0; i < n; i++) counts[Number(ownerOf(cid(i), eq)!.id.slice(5))]!++
    for (const c of counts) expect(Math.abs(c / n - 0.2)).toBeLessThan(0.025)
  })
})
