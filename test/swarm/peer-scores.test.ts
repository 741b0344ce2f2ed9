import { describe, it, expect } from 'vitest'
import { BAN_MS, BAN_THRESHOLD, BAD_BLOB_PENALTY, PeerScores, SLOW_PENALTY } from '../../src/swarm/peer-scores.js'

describe('PeerScores', () => {
  it('bans after enough bad blobs, for BAN_MS, then doubles the next ban', () => {
    let t = 0
    const s = new PeerScores({ now: () => t })
    const needed = Math.ceil(BAN_THRESHOLD / BAD_BLOB_PENALTY)
    for (let k = 1; k < needed; k++) expect(s.badBlob('liar')).toBe(false)
    expect(s.isBanned('liar')).toBe(false)
    expect(s.badBlob('liar')).toBe(true)
    expect(s.isBanned('liar')).toBe(true)
    expect(s.isBanned('honest')).toBe(false)
    expect(s.banned()).toEqual(['liar'])
    expect(s.bannedUntil('liar')).toBe(BAN_MS)
    t = BAN_MS - 1
    expect(s.isBanned('liar')).toBe(true)
    t = BAN_MS
    expect(s.isBanned('liar')).toBe(false)
    expect(s.bannedUntil('liar')).toBeUndefined()
    for (let k = 0; k < needed; k++) s.badBlob('liar')
    expect(s.bannedUntil('liar')).toBe(BAN_MS + 2 * BAN_MS)
  })

  it('lets points fade, so rare faults never add up to a ban', () => {
    let t = 0
    const s = new PeerScores({ now: () => t })
    for (let k = 0; k < 20; k++) {
      expect(s.badBlob('unlucky')).toBe(false)
      t += 11 * 60_000
    }
    expect(s.points('unlucky')).toBe(0)
  })

  it('counts slow replies too', () => {
    const s = new PeerScores({ now: () => 0 })
    const needed = Math.ceil(BAN_THRESHOLD / SLOW_PENALTY)
    for (let k = 1; k < needed; k++) expect(s.slow('trickle')).toBe(false)
    expect(s.slow('trickle')).toBe(true)
  })
})
