// The WAN budget: a token bucket in bytes. Callers take what they are about to fetch before
// fetching it, so a burst never exceeds `burst` bytes and the long-run rate never exceeds `rate`.
// Waiters are served in order, so one large request cannot be starved by many small ones.

export interface TokenBucketOptions {
  /** Bytes per second; 0 means unlimited. */
  rate: number
  /** Largest burst in bytes; defaults to one second of rate (at least 256 KiB). */
  burst?: number
  now?: () => number
}

interface Waiter { n: number, resolve: () => void, reject: (err: unknown) => void, signals: AbortSignal[] }

export class TokenBucket {
  private rate: number
  private burst: number
  private tokens: number
  private last: number
  private readonly now: () => number
  private readonly queue: Waiter[] = []
  private timer: NodeJS.Timeout | null = null
  // One listener per signal, whatever the number of waiters on it: hundreds of fetches wait on
  // the same stop signal, and a listener each tripped Node's MaxListenersExceededWarning.
  private readonly watched = new Map<AbortSignal, { waiters: Set<Waiter>, onAbort: () => void }>()

  constructor (o: TokenBucketOptions) {
    this.now = o.now ?? (() => performance.now())
    this.rate = o.rate
    this.burst = o.burst ?? Math.max(o.rate, 256 * 1024)
    this.tokens = this.burst
    this.last = this.now()
  }

  get unlimited (): boolean {
    return this.rate <= 0
  }

  /** Changes the rate (the swarm shares a site's budget among the peers fetching at the moment). */
  setRate (rate: number, burst?: number): void {
    this.refill()
    this.rate = rate
    this.burst = burst ?? Math.max(rate, 256 * 1024)
    this.tokens = Math.min(this.tokens, this.burst)
    this.pump()
  }

  private refill (): void {
    const t = this.now()
    if (this.rate > 0) this.tokens = Math.min(this.burst, this.tokens + (t - this.last) / 1000 * this.rate)
    this.last = t
  }

  /**
   * Resolves once `n` bytes may be sent. A request larger than the burst is let through when the
   * bucket is full, leaving it in debt. Any of `signals` aborting drops the wait; they are listened
   * to only when the caller has to wait (a fetch passes two, and combining them with
   * AbortSignal.any for every blob was a measurable per-blob cost). `takeNow` is the same without
   * the promise when no wait is needed (it is called once per blob).
   */
  async take (n: number, ...signals: Array<AbortSignal | undefined>): Promise<void> {
    await this.takeNow(n, signals)
  }

  /** undefined when the `n` bytes were taken at once; else a promise settled as take()'s is. Throws when a signal has aborted. */
  takeNow (n: number, signals: ReadonlyArray<AbortSignal | undefined>): Promise<void> | undefined {
    if (this.unlimited) return undefined
    for (const s of signals) s?.throwIfAborted()
    if (this.queue.length === 0) {
      this.refill()
      if (this.tokens >= Math.min(n, this.burst)) {
        this.tokens -= n
        return undefined
      }
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { n, resolve, reject, signals: signals.filter((s): s is AbortSignal => s !== undefined) }
      for (const s of w.signals) this.watch(s, w)
      this.queue.push(w)
      this.pump()
    })
  }

  private watch (signal: AbortSignal, w: Waiter): void {
    let entry = this.watched.get(signal)
    if (entry === undefined) {
      const waiters = new Set<Waiter>()
      const onAbort = (): void => {
        for (const x of [...waiters]) {
          const i = this.queue.indexOf(x)
          if (i >= 0) this.queue.splice(i, 1)
          this.unwatch(x)
          x.reject(signal.reason)
        }
        this.pump()
      }
      entry = { waiters, onAbort }
      this.watched.set(signal, entry)
      signal.addEventListener('abort', onAbort, { once: true })
    }
    entry.waiters.add(w)
  }

  private unwatch (w: Waiter): void {
    for (const s of w.signals) {
      const entry = this.watched.get(s)
      if (entry === undefined) continue
      entry.waiters.delete(w)
      if (entry.waiters.size === 0) {
        this.watched.delete(s)
        s.removeEventListener('abort', entry.onAbort)
      }
    }
  }

  private pump (): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    this.refill()
    while (this.queue.length > 0) {
      const w = this.queue[0] as Waiter
      if (!this.unlimited && this.tokens < Math.min(w.n, this.burst)) break
      this.queue.shift()
      this.unwatch(w)
      if (!this.unlimited) this.tokens -= w.n
      w.resolve()
    }
    if (this.queue.length > 0) {
      const w = this.queue[0] as Waiter
      const missing = Math.min(w.n, this.burst) - this.tokens
      const wait = Math.max(1, Math.ceil(missing / this.rate * 1000))
      this.timer = setTimeout(() => { this.timer = null; this.pump() }, wait)
      this.timer.unref?.()
    }
  }
}
