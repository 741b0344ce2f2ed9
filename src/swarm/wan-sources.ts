// The WAN side of a fetch: the seeds (libp2p, /shoal/blobs/1) and the static-HTTP origins
// (src/net/origin-client.ts) a daemon is configured with, tried in order with failover. Every
// attempt first takes the blob's size from the WAN token bucket, whichever source serves it, so an
// origin fetch is WAN traffic like a seed fetch. A source that fails (unreachable, not found, a
// blob that fails its cid) is passed over for a while; the chunk is asked of the next source, so a
// stale or tampered source costs a retry, never a wrong byte.
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ShoalError } from '../core/errors.js'
import { cidToHex } from '../core/seal.js'
import { BlobBusyError, type BlobClient } from '../net/blobs.js'
import type { OriginClient } from '../net/origin-client.js'
import type { TokenBucket } from './token-bucket.js'

export type WanSourceKind = 'seed' | 'origin'

/** One WAN source of blobs. `fetch` returns bytes already checked against the cid. */
export interface WanSource {
  readonly kind: WanSourceKind
  /** The seed's multiaddr or the origin's base URL, for logs. */
  readonly name: string
  /** `onSent`: the request left for the source (cancelling from then on may waste bytes on their way). */
  fetch: (cid: Uint8Array, maxSize: number, signal: AbortSignal, onSent?: () => void) => Promise<Uint8Array>
}

export function seedSource (client: BlobClient, addr: Multiaddr | PeerId): WanSource {
  return { kind: 'seed', name: addr.toString(), fetch: (cid, maxSize, signal, onSent) => client.fetch(addr, cid, maxSize, signal, onSent) }
}

export function originSource (client: OriginClient): WanSource {
  return { kind: 'origin', name: client.base, fetch: async (cid, maxSize, signal, onSent) => { onSent?.(); return await client.blob(cid, maxSize, signal) } }
}

/** A failed source is tried after the healthy ones for this long. */
export const SOURCE_BACKOFF_MS = 10_000
/**
 * A seed that answers `busy` is shedding load, not failing: when every source that did not fail
 * outright declined, the blob is asked again after this pause (× 1…2, random, so a crowd of
 * endpoints does not come back in step), for at most BUSY_RETRY_FOR_MS.
 */
export const BUSY_RETRY_MS = 250
export const BUSY_RETRY_FOR_MS = 60_000

export class NoWanSourceError extends ShoalError {
  constructor () {
    super('ERR_NET_NO_SOURCE', 'no WAN source is configured: give the daemon "seeds" or "origins"')
  }
}

export interface WanFetchResult { blob: Uint8Array, source: WanSource }

export class WanSources {
  private readonly downUntil = new Map<WanSource, number>()

  constructor (
    readonly sources: readonly WanSource[],
    private readonly bucket: TokenBucket,
    private readonly onFailure?: (source: WanSource, cidHex: string, err: unknown) => void,
    private readonly now: () => number = Date.now
  ) {}

  /** Healthy sources in configured order, then those that failed lately (soonest back first). */
  order (): readonly WanSource[] {
    if (this.downUntil.size === 0) return this.sources // the common case, asked once per blob
    const t = this.now()
    const up = this.sources.filter(s => (this.downUntil.get(s) ?? 0) <= t)
    const down = this.sources.filter(s => (this.downUntil.get(s) ?? 0) > t)
      .sort((a, b) => (this.downUntil.get(a) ?? 0) - (this.downUntil.get(b) ?? 0))
    return [...up, ...down]
  }

  /**
   * The blob from the first source that serves it. `signal` cuts the attempt in flight; `soft`
   * (stop/pause) only keeps new attempts from starting. Throws the last source's error when
   * every source failed.
   */
  async fetch (cid: Uint8Array, maxSize: number, signal: AbortSignal, soft?: AbortSignal, onSent?: () => void): Promise<WanFetchResult> {
    const giveUpAt = this.now() + BUSY_RETRY_FOR_MS
    for (;;) {
      const order = this.order()
      if (order.length === 0) throw new NoWanSourceError()
      let last: unknown
      let busy = false
      for (const source of order) {
        const wait = this.bucket.takeNow(maxSize, soft === undefined ? [signal] : [signal, soft])
        if (wait !== undefined) await wait
        try {
          const blob = await source.fetch(cid, maxSize, signal, onSent)
          this.downUntil.delete(source)
          return { blob, source }
        } catch (err) {
          if (signal.aborted) throw err
          last = err
          if (err instanceof BlobBusyError) {
            busy = true // not a fault of the source: it is not passed over
          } else {
            this.downUntil.set(source, this.now() + SOURCE_BACKOFF_MS)
            this.onFailure?.(source, cidToHex(cid), err)
          }
          if (soft?.aborted === true) break
        }
      }
      // (signals combined only here, for the rare pause: an AbortSignal.any per blob was a measurable cost)
      const stopped = signal.aborted || soft?.aborted === true
      if (!busy || stopped || this.now() >= giveUpAt || !await pause(BUSY_RETRY_MS * (1 + Math.random()), soft === undefined ? signal : AbortSignal.any([signal, soft]))) {
        throw last instanceof Error ? last : new ShoalError('ERR_NET_NO_SOURCE', String(last))
      }
    }
  }
}

/** Waits `ms`; false when `signal` ended the wait first. */
async function pause (ms: number, signal: AbortSignal): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const done = (ok: boolean): void => { clearTimeout(timer); signal.removeEventListener('abort', onAbort); resolve(ok) }
    const onAbort = (): void => { done(false) }
    const timer = setTimeout(() => { done(true) }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
