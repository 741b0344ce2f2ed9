// Seed → admin webhooks (docs/rollout.md §6): one JSON POST per event to every configured URL,
// signed with an HMAC of the body so the receiver can trust it, retried with exponential backoff
// when the receiver is away or answers 5xx/429. Fire and forget for the caller: `emit` never
// throws and never waits; a bounded queue per URL keeps a dead receiver from growing memory.
import { createHmac, randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShoalError } from '../core/errors.js'

export const WEBHOOK_EVENTS = ['published', 'ring-opened', 'ring-complete', 'install-failed', 'halted', 'rolled-back'] as const
export type WebhookEvent = typeof WEBHOOK_EVENTS[number]

/** Shortest secret accepted, in bytes (an HMAC key guessable by brute force protects nothing). */
export const MIN_SECRET_BYTES = 16
/** Deliveries waiting per URL; past this the oldest is dropped (and logged). */
export const MAX_QUEUED = 1000

export class WebhookSecretError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options)
  }
}

export interface WebhookOptions {
  urls: readonly string[]
  /** HMAC-SHA256 key. */
  secret: Uint8Array
  /** Attempts per delivery, the first included. Default 5. */
  attempts?: number
  /** Wait before the second attempt; doubles each time. Default 1 s. */
  backoffMs?: number
  /** Per attempt. Default 10 s. */
  timeoutMs?: number
  onDeliveryFailed?: (url: string, event: WebhookEvent, err: unknown) => void
}

export interface WebhookBody { event: WebhookEvent, id: string, time: string, data: Record<string, unknown> }

/** `sha256=<hex HMAC-SHA256(secret, body)>`: the value of the X-Shoal-Signature header. */
export function webhookSignature (secret: Uint8Array, body: Uint8Array | string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex')
}

/** The secret file's contents, surrounding whitespace removed; at least MIN_SECRET_BYTES. */
export async function loadWebhookSecret (path: string): Promise<Uint8Array> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new WebhookSecretError(`cannot read the webhook secret "webhookSecret" = ${path}: ${(err as Error).message}`, { cause: err })
  }
  const secret = Buffer.from(text.trim(), 'utf8')
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new WebhookSecretError(`the webhook secret in ${path} is ${secret.byteLength} bytes; use at least ${MIN_SECRET_BYTES} (e.g. \`openssl rand -hex 32 > ${path}\`)`)
  }
  return secret
}

interface Delivery { event: WebhookEvent, body: string }

export class Webhooks {
  private readonly queues = new Map<string, Delivery[]>()
  private readonly workers = new Map<string, Promise<void>>()
  private readonly abort = new AbortController()

  constructor (private readonly o: WebhookOptions) {
    for (const u of o.urls) this.queues.set(u, [])
  }

  /** Queues `event` for every URL; returns the body sent (for logs and tests). */
  emit (event: WebhookEvent, data: Record<string, unknown>): WebhookBody {
    const body: WebhookBody = { event, id: randomUUID(), time: new Date().toISOString(), data }
    if (this.abort.signal.aborted) return body
    const text = JSON.stringify(body)
    for (const [url, q] of this.queues) {
      q.push({ event, body: text })
      if (q.length > MAX_QUEUED) {
        const dropped = q.shift() as Delivery
        this.o.onDeliveryFailed?.(url, dropped.event, new ShoalError('ERR_WEBHOOK_QUEUE', `more than ${MAX_QUEUED} webhooks wait for ${url}; the oldest was dropped`))
      }
      if (!this.workers.has(url)) {
        const w = this.drain(url, q).finally(() => this.workers.delete(url))
        this.workers.set(url, w)
      }
    }
    return body
  }

  /** Resolves when every queued delivery was sent or given up. */
  async flush (): Promise<void> {
    while (this.workers.size > 0) await Promise.all(this.workers.values())
  }

  /** Stops retrying; deliveries not yet sent are dropped. */
  async stop (): Promise<void> {
    this.abort.abort()
    for (const q of this.queues.values()) q.length = 0
    await Promise.all(this.workers.values())
  }

  private async drain (url: string, q: Delivery[]): Promise<void> {
    for (let d = q.shift(); d !== undefined; d = q.shift()) {
      try {
        await this.deliver(url, d)
      } catch (err) {
        if (!this.abort.signal.aborted) this.o.onDeliveryFailed?.(url, d.event, err)
      }
    }
  }

  /** One delivery: in order, one at a time per URL, so a receiver sees events in the order they happened. */
  private async deliver (url: string, d: Delivery): Promise<void> {
    const attempts = this.o.attempts ?? 5
    let wait = this.o.backoffMs ?? 1000
    let lastErr: unknown
    for (let i = 1; i <= attempts; i++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'shoal-seed',
            'x-shoal-event': d.event,
            'x-shoal-signature': webhookSignature(this.o.secret, d.body)
          },
          body: d.body,
          signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.o.timeoutMs ?? 10_000)]),
          redirect: 'error'
        })
        await res.arrayBuffer().catch(() => {})
        if (res.ok) return
        lastErr = new ShoalError('ERR_WEBHOOK_STATUS', `webhook ${url} answered HTTP ${res.status}`)
        // A 4xx other than 408/429 will not change by retrying: the receiver refuses this body.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) break
      } catch (err) {
        if (this.abort.signal.aborted) return
        lastErr = err
      }
      if (i < attempts) {
        await sleep(wait, undefined, { signal: this.abort.signal }).catch(() => {})
        if (this.abort.signal.aborted) return
        wait *= 2
      }
    }
    throw lastErr instanceof Error ? lastErr : new ShoalError('ERR_WEBHOOK_FAILED', `webhook ${url} failed`)
  }
}
