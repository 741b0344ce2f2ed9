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
import { BlobBusyError, NetAbortedError, type BatchOptions, type BlobClient, type BlobOutcome, type BlobWant } from '../net/blobs.js'
import type { OriginClient } from '../net/origin-client.js'
import type { TokenBucket } from './token-bucket.js'

export type WanSourceKind = 'seed' | 'origin'

/** One WAN source of blobs. What it hands to `onItem` is already checked against the cid. */
export interface WanSource {
  readonly kind: WanSourceKind
  /** The seed's multiaddr or the origin's base URL, for logs. */
  readonly name: string
  /**
   * Fetches a run of blobs as BlobClient.fetchBatch does: each item reported once to `onItem`,
   * then the promise resolves (it rejects only for bad arguments).
   */
  fetchBatch: (wants: readonly BlobWant[], onItem: BlobOutcome, opts: BatchOptions & { signal: AbortSignal }) => Promise<void>
}

export function seedSource (client: BlobClient, addr: Multiaddr | PeerId): WanSource {
  return { kind: 'seed', name: addr.toString(), fetchBatch: async (wants, onItem, opts) => { await client.fetchBatch(addr, wants, onItem, opts) } }
}

/** A source that fetches one blob at a time (an HTTP origin; tests), its runs fetched in parallel. */
export function singleBlobSource (kind: WanSourceKind, name: string, fetch: (cid: Uint8Array, maxSize: number, signal: AbortSignal) => Promise<Uint8Array>): WanSource {
  return {
    kind,
    name,
    fetchBatch: async (wants, onItem, { signal, onSent, skip }) => {
      await Promise.all(wants.map(async ({ cid, maxSize }, i) => {
        if (skip?.(i) === true) { onItem(i, undefined, new NetAbortedError('blob fetch (dropped before it was sent)')); return }
        onSent?.(i)
        let blob: Uint8Array
        try {
          blob = await fetch(cid, maxSize, signal)
        } catch (err) {
          onItem(i, undefined, err instanceof Error ? err : new Error(String(err)))
          return
        }
        onItem(i, blob, undefined)
      }))
    }
  }
}

export function originSource (client: OriginClient): WanSource {
  return singleBlobSource('origin', client.base, async (cid, maxSize, signal) => await client.blob(cid, maxSize, signal))
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

/** A batch's outcome for one item: the blob and who served it, or the last source's error. */
export type WanOutcome = (item: number, got: WanFetchResult | undefined, err: Error | undefined) => void

export interface WanBatchOptions extends BatchOptions {
  signal: AbortSignal
  /** Stop/pause: keeps new attempts (another source, a retry after `busy`) from starting. */
  soft?: AbortSignal
}

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
    if (this.downUntil.size === 0) return this.sources // the common case, asked once per batch
    const t = this.now()
    const up = this.sources.filter(s => (this.downUntil.get(s) ?? 0) <= t)
    const down = this.sources.filter(s => (this.downUntil.get(s) ?? 0) > t)
      .sort((a, b) => (this.downUntil.get(a) ?? 0) - (this.downUntil.get(b) ?? 0))
    return [...up, ...down]
  }

  /** One blob, as `fetchBatch` fetches a run of one; throws the last source's error. */
  async fetch (cid: Uint8Array, maxSize: number, signal: AbortSignal, soft?: AbortSignal, onSent?: () => void): Promise<WanFetchResult> {
    let got: WanFetchResult | undefined
    let error: Error | undefined
    await this.fetchBatch([{ cid, maxSize }], (_, g, err) => { got = g; error = err }, { signal, soft, onSent })
    if (error !== undefined) throw error
    return got!
  }

  /**
   * Each blob of the run from the first source that serves it: the run goes to the first source,
   * what it did not serve to the next, and so on. A source that serves none of what it was asked
   * (unreachable, or every blob failed) is passed over for SOURCE_BACKOFF_MS; one that serves part
   * of a run is not (it lacks a blob, or one of its copies is bad). Blobs answered `busy` by some
   * source are asked again after a pause, for at most BUSY_RETRY_FOR_MS. `signal` cuts the
   * attempt in flight; `soft` (stop/pause) only keeps new attempts from starting. Every item is
   * reported once to `onItem` (with the last source's error when every source failed it), then
   * the promise resolves. `onSent` and `skip` as for BlobClient.fetchBatch.
   */
  async fetchBatch (wants: readonly BlobWant[], onItem: WanOutcome, opts: WanBatchOptions): Promise<void> {
    const { signal, soft, onSent, skip } = opts
    const giveUpAt = this.now() + BUSY_RETRY_FOR_MS
    const errors: Array<Error | undefined> = []
    const all = wants.map((_, i) => i)
    let left = all
    const fail = (items: readonly number[], err?: Error): void => {
      for (const i of items) onItem(i, undefined, errors[i] ?? err ?? new ShoalError('ERR_NET_NO_SOURCE', 'no WAN source served this blob'))
    }
    for (;;) {
      const order = this.order()
      if (order.length === 0) { fail(left, new NoWanSourceError()); return }
      const busy = new Set<number>()
      for (const source of order) {
        const asked = left
        let bytes = 0
        for (const i of asked) bytes += wants[i]!.maxSize
        try {
          const wait = this.bucket.takeNow(bytes, soft === undefined ? [signal] : [signal, soft])
          if (wait !== undefined) await wait
        } catch (err) {
          fail(asked, asError(err)) // aborted while waiting for the budget
          return
        }
        const failed: number[] = []
        let served = false
        // (what failed comes back in the order it was reported, not in the run's)
        await source.fetchBatch(asked === all ? wants : asked.map(i => wants[i]!), (j, blob, err) => {
          const i = asked[j]!
          if (blob !== undefined) {
            served = true
            onItem(i, { blob, source }, undefined)
            return
          }
          errors[i] = err
          failed.push(i)
          if (err instanceof BlobBusyError) busy.add(i) // not a fault of the source: it is not passed over
          else if (!signal.aborted) this.onFailure?.(source, cidToHex(wants[i]!.cid), err)
        }, {
          signal,
          ...(onSent !== undefined ? { onSent: (j: number) => { onSent(asked[j]!) } } : {}),
          ...(skip !== undefined ? { skip: (j: number) => skip(asked[j]!) } : {})
        })
        if (signal.aborted) { fail(failed); return }
        if (served) this.downUntil.delete(source)
        else if (failed.some(i => !busy.has(i))) this.downUntil.set(source, this.now() + SOURCE_BACKOFF_MS)
        left = failed
        if (left.length === 0) return
        if (soft?.aborted === true) break
      }
      // asked again after a pause: the blobs some source declined as busy
      const giveUp = signal.aborted || soft?.aborted === true || this.now() >= giveUpAt
      const retry = giveUp ? [] : left.filter(i => busy.has(i))
      fail(giveUp ? left : left.filter(i => !busy.has(i)))
      // (signals combined only here, for the rare pause: an AbortSignal.any per blob was a measurable cost)
      if (retry.length === 0 || !await pause(BUSY_RETRY_MS * (1 + Math.random()), soft === undefined ? signal : AbortSignal.any([signal, soft]))) {
        fail(retry)
        return
      }
      left = retry
    }
  }
}

function asError (err: unknown): Error {
  return err instanceof Error ? err : new ShoalError('ERR_NET_NO_SOURCE', String(err))
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
