// A static-HTTP origin (CDN, S3 bucket, nginx `root`) serving a repository in the origin layout
// (docs/protocol.md §3): plain GETs of `heads/<channel>.json`, `manifests/<pkg>/<version>.json` and
// `blobs/ab/cdef…`, over one keep-alive agent per origin so blobs reuse a few connections.
//
// Nothing an origin sends is trusted: every body is bounded before it is read (the signed size for
// a blob, the format's cap for heads and manifests), a blob must hash to its cid, and heads and
// manifests are verified by the caller like those from any other source.
import { createHash } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import { ShoalError } from '../core/errors.js'
import { MAX_HEAD_BYTES } from '../core/head.js'
import { MAX_MANIFEST_BYTES } from '../core/manifest.js'
import { cidToHex } from '../core/seal.js'
import { BlobVerifyError, NetAbortedError, NetTimeoutError } from './errors.js'

/** An origin could not be reached, answered with an unexpected status, or sent too much. */
export class OriginError extends ShoalError {
  readonly status: number | undefined

  constructor (origin: string, reason: string, options?: { cause?: unknown, status?: number }) {
    super('ERR_NET_ORIGIN', `origin ${origin}: ${reason}`, options)
    this.status = options?.status
  }
}

/** Connections kept open per origin; further requests queue on the agent. */
export const ORIGIN_MAX_SOCKETS = 16
/** A request with no byte for this long fails (a slow-retrieval attack must not hang a fetch). */
export const ORIGIN_IDLE_TIMEOUT_MS = 30_000

/**
 * Validates an origin base URL: http or https, no credentials, query or fragment. Returns it
 * with exactly one trailing slash, so paths can be appended.
 */
export function normalizeOriginUrl (text: string): string {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new ShoalError('ERR_INVALID_ARGUMENT', `origin "${text}" is not a URL (e.g. "https://cdn.example.com/shoal/")`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ShoalError('ERR_INVALID_ARGUMENT', `origin "${text}" must be an http:// or https:// URL`)
  if (u.username !== '' || u.password !== '') throw new ShoalError('ERR_INVALID_ARGUMENT', `origin "${text}" must not carry credentials (an origin is public: everything on it is ciphertext or signed)`)
  if (u.search !== '' || u.hash !== '') throw new ShoalError('ERR_INVALID_ARGUMENT', `origin "${text}" must not have a query or fragment`)
  return u.origin + u.pathname.replace(/\/*$/, '/')
}

export class OriginClient {
  readonly base: string
  private readonly agent: http.Agent
  private readonly get: typeof http.get

  constructor (base: string) {
    this.base = normalizeOriginUrl(base)
    const secure = this.base.startsWith('https:')
    this.agent = secure
      ? new https.Agent({ keepAlive: true, maxSockets: ORIGIN_MAX_SOCKETS })
      : new http.Agent({ keepAlive: true, maxSockets: ORIGIN_MAX_SOCKETS })
    this.get = secure ? https.get : http.get
  }

  /** The head bytes the origin holds for `channel` (unverified), or null when it has none (404). */
  async head (channel: string, signal?: AbortSignal): Promise<Uint8Array | null> {
    return await this.fetch(`heads/${channel}.json`, MAX_HEAD_BYTES, signal, true)
  }

  /** The heads held for `channels` (unverified), by channel; channels without a head are left out. */
  async heads (channels: readonly string[], signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>()
    for (const c of channels) {
      const bytes = await this.head(c, signal)
      if (bytes !== null) out.set(c, bytes)
    }
    return out
  }

  /** Manifest bytes by package and version (unverified: the caller checks id and signatures). */
  async manifest (pkg: string, version: string, signal?: AbortSignal): Promise<Uint8Array> {
    return await this.fetch(`manifests/${pkg}/${encodeURIComponent(version)}.json`, MAX_MANIFEST_BYTES, signal, false) as Uint8Array
  }

  /** A blob by cid: at most `maxSize` bytes, and they must hash to `cid` (else BlobVerifyError). */
  async blob (cid: Uint8Array, maxSize: number, signal?: AbortSignal): Promise<Uint8Array> {
    const hex = cidToHex(cid)
    const body = await this.fetch(`blobs/${hex.slice(0, 2)}/${hex.slice(2)}`, maxSize, signal, false,
      () => new BlobVerifyError(this.base, hex, `larger than the ${maxSize} bytes the manifest signs`)) as Uint8Array
    if (!Buffer.from(createHash('sha256').update(body).digest()).equals(Buffer.from(cid))) {
      throw new BlobVerifyError(this.base, hex, 'the bytes do not hash to the cid')
    }
    return body
  }

  close (): void {
    this.agent.destroy()
  }

  /** GET base + path; the body is cut off past `limit` bytes. 404 is null when `allowMissing`. */
  private async fetch (
    path: string, limit: number, signal: AbortSignal | undefined, allowMissing: boolean,
    oversize = (): Error => new OriginError(this.base, `GET ${path} sent more than the ${limit} bytes allowed`)
  ): Promise<Uint8Array | null> {
    const url = this.base + path
    if (signal?.aborted === true) throw new NetAbortedError(`GET ${url}`)
    return await new Promise<Uint8Array | null>((resolve, reject) => {
      let settled = false
      const finish = (err: Error | null, value?: Uint8Array | null): void => {
        if (settled) return
        settled = true
        signal?.removeEventListener('abort', onAbort)
        if (err !== null) { req.destroy(); reject(err) } else resolve(value ?? null)
      }
      const onAbort = (): void => { finish(new NetAbortedError(`GET ${url}`)) }
      const req = this.get(url, { agent: this.agent, headers: { accept: '*/*' } }, (res) => {
        const status = res.statusCode ?? 0
        if (status === 404 && allowMissing) { res.resume(); finish(null, null); return }
        if (status !== 200) {
          res.resume()
          finish(new OriginError(this.base, `GET ${path} answered HTTP ${status}`, { status }))
          return
        }
        const declared = Number(res.headers['content-length'])
        if (Number.isFinite(declared) && declared > limit) { finish(oversize()); return }
        const parts: Buffer[] = []
        let received = 0
        res.on('data', (piece: Buffer) => {
          received += piece.length
          if (received > limit) { finish(oversize()); return }
          parts.push(piece)
        })
        res.on('end', () => {
          if (!res.complete) finish(new OriginError(this.base, `GET ${path}: the body was cut short`))
          else finish(null, new Uint8Array(Buffer.concat(parts, received)))
        })
        res.on('error', (err) => { finish(new OriginError(this.base, `GET ${path}: ${err.message}`, { cause: err })) })
        res.on('aborted', () => { finish(new OriginError(this.base, `GET ${path}: the connection closed mid-body`)) })
      })
      req.setTimeout(ORIGIN_IDLE_TIMEOUT_MS, () => { finish(new NetTimeoutError(`GET ${url}`, ORIGIN_IDLE_TIMEOUT_MS)) })
      req.on('error', (err) => { finish(new OriginError(this.base, `GET ${path}: ${err.message}`, { cause: err })) })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}
