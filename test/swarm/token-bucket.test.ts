import { describe, it, expect, vi, afterEach } from 'vitest'
import { getEventListeners } from 'node:events'
import { TokenBucket } from '../../src/swarm/token-bucket.js'

// Fake timers drive both the bucket's clock and its wake-up timer: no sleeping, no flakiness.
afterEach(() => { vi.useRealTimers() })

function fake (): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
}

describe('TokenBucket', () => {
  it('is unlimited at rate 0', async () => {
    const b = new TokenBucket({ rate: 0 })
    await b.take(1e12)
    expect(b.unlimited).toBe(true)
  })

  it('lets a burst through, then meters at the rate', async () => {
    fake()
    const b = new TokenBucket({ rate: 1000, burst: 1000 })
    await b.take(1000)
    let done = false
    const p = b.take(500).then(() => { done = true })
    await vi.advanceTimersByTimeAsync(490)
    expect(done).toBe(false)
    await vi.advanceTimersByTimeAsync(20)
    await p
    expect(done).toBe(true)
  })

  it('serves waiters in order and honours abort', async () => {
    fake()
    const b = new TokenBucket({ rate: 100, burst: 100 })
    await b.take(100)
    const order: number[] = []
    const ac = new AbortController()
    const p1 = b.take(50).then(() => order.push(1))
    const p2 = b.take(10, ac.signal).then(() => order.push(2), () => order.push(-2))
    const p3 = b.take(10).then(() => order.push(3))
    ac.abort(new Error('stop'))
    await vi.advanceTimersByTimeAsync(1000)
    await Promise.all([p1, p2, p3])
    expect(order).toEqual([-2, 1, 3])
  })

  it('keeps the long-run rate: 10 s at 1 kB/s moves about 10 kB plus the burst', async () => {
    fake()
    const b = new TokenBucket({ rate: 1000, burst: 1000 })
    let moved = 0
    let stop = false
    const pump = (async () => { while (!stop) { await b.take(100); moved += 100 } })()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(moved).toBeGreaterThanOrEqual(10_500)
    expect(moved).toBeLessThanOrEqual(11_100)
    stop = true
    await vi.advanceTimersByTimeAsync(1000)
    await pump
  })

  it('setRate takes effect for waiters already queued', async () => {
    fake()
    const b = new TokenBucket({ rate: 10, burst: 10 })
    await b.take(10)
    let done = false
    const p = b.take(10).then(() => { done = true })
    b.setRate(1_000_000)
    await vi.advanceTimersByTimeAsync(5)
    await p
    expect(done).toBe(true)
  })

  it('listens once per signal however many wait on it; an abort drops exactly its waiters', async () => {
    fake()
    const b = new TokenBucket({ rate: 10, burst: 10 })
    await b.take(10)
    const stop = new AbortController()
    const own = Array.from({ length: 50 }, () => new AbortController())
    const results = own.map(async (c, i) => await b.take(1, c.signal, i < 40 ? stop.signal : undefined).then(() => 'ok', () => 'aborted'))
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(1)
    expect(getEventListeners(own[0]!.signal, 'abort')).toHaveLength(1)
    own[45]!.abort()
    stop.abort()
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(2_000)
    const got = await Promise.all(results)
    expect(got.filter(r => r === 'aborted')).toHaveLength(41)
    expect(got.slice(40).filter(r => r === 'ok')).toHaveLength(9)
    for (const c of own) expect(getEventListeners(c.signal, 'abort')).toHaveLength(0)
  })
})
