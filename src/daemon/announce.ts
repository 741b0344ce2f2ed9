// /shoal/announce/1: how channel heads and manifests travel (docs/protocol.md §6.5). Every daemon
// serves the heads it holds and the manifests they name; endpoints poll their seeds, and a daemon
// that accepts a new head pushes it to the peers it is connected to. Signatures make the path
// irrelevant, so nothing here trusts what it receives: the caller verifies.
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ShoalError } from '../core/errors.js'
import { MAX_HEAD_BYTES } from '../core/head.js'
import { LABEL, MAX_MANIFEST_BYTES, PACKAGE_NAME } from '../core/manifest.js'
import { HEX64 } from '../core/signed.js'
import { ANNOUNCE_PROTOCOL } from '../net/constants.js'
import { decodeControl, encodeControl, headerString, headerStrings } from '../net/control.js'
import type { ShoalNode } from '../net/node.js'
import { callRpc, handleRpc } from '../net/rpc.js'
import type { StateDb } from '../store/state-db.js'

/** Channels one request may ask about. */
export const MAX_CHANNELS = 64
const MAX_REQUEST = MAX_HEAD_BYTES + 64 * 1024
const MAX_RESPONSE = Math.max(MAX_MANIFEST_BYTES, MAX_CHANNELS * MAX_HEAD_BYTES) + 1024 * 1024

export class NotFoundError extends ShoalError {
  constructor (what: string) {
    super('ERR_NOT_FOUND', `${what} is not held by this peer`)
  }
}

interface StoredHead { bytes: string /* base64 */ }

/** The head this daemon holds (and serves) for `channel`, as signed. */
export async function loadHead (db: StateDb, channel: string): Promise<Uint8Array | null> {
  const rec = await db.heads.get(channel) as StoredHead | null
  return rec === null ? null : Buffer.from(rec.bytes, 'base64')
}

export async function storeHead (db: StateDb, channel: string, bytes: Uint8Array): Promise<void> {
  await db.heads.put(channel, { bytes: Buffer.from(bytes).toString('base64') } satisfies StoredHead)
}

export type PushListener = (channel: string, head: Uint8Array, from: PeerId) => void
/** A pushed control record (unverified). */
export type RecordListener = (record: Uint8Array, from: PeerId) => void
/** The control records this daemon holds for `pkg`, as signed, in seq order. */
export type RecordSource = (pkg: string) => Promise<Uint8Array[]>

export interface DirectoryEntry { id: string, addrs: string[] }
/** Seed only: records the caller under its site label and returns its label mates. */
export type Directory = (peer: PeerId, site: string, addrs: string[]) => DirectoryEntry[]

/** Packages one `records` request may ask about. */
export const MAX_RECORD_PACKAGES = 64
/** Records one `records` reply carries (the newest of each package first kept). */
export const MAX_RECORDS_REPLY = 4096

/** Label mates one directory answer lists; addresses per peer. */
export const MAX_DIRECTORY_PEERS = 64
const MAX_ADDRS = 16

export class Announce {
  private unhandle: (() => Promise<void>) | undefined

  constructor (
    private readonly node: ShoalNode,
    private readonly db: StateDb,
    private readonly opts: { onPush?: PushListener, directory?: Directory, onRecord?: RecordListener, records?: RecordSource } = {}
  ) {}

  async start (): Promise<void> {
    this.unhandle = await handleRpc(this.node, ANNOUNCE_PROTOCOL, async (req, peer) => await this.serve(req, peer), {
      maxRequestBytes: MAX_REQUEST,
      maxResponseBytes: MAX_RESPONSE,
      timeoutMs: 60_000
    })
  }

  async stop (): Promise<void> {
    await this.unhandle?.()
  }

  private async serve (req: Uint8Array, peer: PeerId): Promise<Uint8Array> {
    const what = 'announce request'
    const { header, parts } = decodeControl(req, what)
    const op = headerString(header, 'op', what)
    if (op === 'heads') {
      const channels = headerStrings(header, 'channels', what, MAX_CHANNELS, PACKAGE_NAME)
      const heads: Uint8Array[] = []
      const held: string[] = []
      for (const c of channels) {
        const h = await loadHead(this.db, c)
        if (h !== null) { heads.push(h); held.push(c) }
      }
      return encodeControl({ channels: held }, heads)
    }
    if (op === 'manifest') {
      const id = headerString(header, 'id', what, HEX64)
      const bytes = await this.db.manifests.get(id)
      if (bytes === null) throw new NotFoundError(`manifest ${id}`)
      return encodeControl({}, [bytes])
    }
    if (op === 'push') {
      const channel = headerString(header, 'channel', what, PACKAGE_NAME)
      const head = parts[0]
      if (head === undefined || parts.length !== 1) throw new NotFoundError('a pushed head')
      this.opts.onPush?.(channel, head, peer)
      return encodeControl({ ok: true })
    }
    if (op === 'records' && this.opts.records !== undefined) {
      const packages = headerStrings(header, 'packages', what, MAX_RECORD_PACKAGES, PACKAGE_NAME)
      const out: Uint8Array[] = []
      for (const pkg of packages) out.push(...(await this.opts.records(pkg)).slice(-MAX_RECORDS_REPLY))
      const parts = out.slice(-MAX_RECORDS_REPLY)
      return encodeControl({ count: parts.length }, parts)
    }
    if (op === 'push-record') {
      const rec = parts[0]
      if (rec === undefined || parts.length !== 1) throw new NotFoundError('a pushed record')
      this.opts.onRecord?.(rec, peer)
      return encodeControl({ ok: true })
    }
    if (op === 'site' && this.opts.directory !== undefined) {
      const site = headerString(header, 'site', what, LABEL)
      const addrs = headerStrings(header, 'addrs', what, MAX_ADDRS)
      return encodeControl({ peers: this.opts.directory(peer, site, addrs).slice(0, MAX_DIRECTORY_PEERS) })
    }
    throw new NotFoundError(`operation ${JSON.stringify(op).slice(0, 40)}`)
  }

  /** The heads `peer` holds for `channels` (unverified), by channel. */
  async fetchHeads (peer: PeerId | Multiaddr, channels: string[], signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
    const res = await this.call(peer, encodeControl({ op: 'heads', channels }), signal)
    const { header, parts } = decodeControl(res, 'announce heads reply')
    const held = headerStrings(header, 'channels', 'announce heads reply', MAX_CHANNELS, PACKAGE_NAME)
    const out = new Map<string, Uint8Array>()
    held.forEach((c, i) => { const p = parts[i]; if (p !== undefined && channels.includes(c)) out.set(c, p) })
    return out
  }

  /** Manifest bytes by id from `peer` (unverified: the caller checks the id and signatures). */
  async fetchManifest (peer: PeerId | Multiaddr, id: string, signal?: AbortSignal): Promise<Uint8Array> {
    const res = await this.call(peer, encodeControl({ op: 'manifest', id }), signal)
    const { parts } = decodeControl(res, 'announce manifest reply')
    const bytes = parts[0]
    if (bytes === undefined) throw new NotFoundError(`manifest ${id}`)
    return bytes
  }

  /** Registers with a seed's directory under `site`; returns the label mates it knows. */
  async siteMates (seed: PeerId | Multiaddr, site: string, addrs: string[], signal?: AbortSignal): Promise<DirectoryEntry[]> {
    const res = await this.call(seed, encodeControl({ op: 'site', site, addrs: addrs.slice(0, MAX_ADDRS) }), signal)
    const { header } = decodeControl(res, 'announce site reply')
    const peers = header.peers
    if (!Array.isArray(peers)) return []
    return peers.slice(0, MAX_DIRECTORY_PEERS).filter((p): p is DirectoryEntry =>
      typeof p === 'object' && p !== null && typeof p.id === 'string' && Array.isArray(p.addrs) && p.addrs.every((a: unknown) => typeof a === 'string'))
  }

  /** The control records `peer` holds for `packages` (unverified), in the order it sent them. */
  async fetchRecords (peer: PeerId | Multiaddr, packages: string[], signal?: AbortSignal): Promise<Uint8Array[]> {
    const res = await this.call(peer, encodeControl({ op: 'records', packages: packages.slice(0, MAX_RECORD_PACKAGES) }), signal)
    const { header, parts } = decodeControl(res, 'announce records reply')
    if (header.count !== parts.length) throw new ShoalError('ERR_DECODE', `announce records reply: count ${String(header.count)} does not match its ${parts.length} record(s)`)
    return parts
  }

  /** Pushes a control record to every connected peer that speaks announce. */
  async pushRecordToAll (record: Uint8Array): Promise<number> {
    return await this.fanout(async p => { await this.call(p, encodeControl({ op: 'push-record' }, [record]), AbortSignal.timeout(10_000)) })
  }

  async push (peer: PeerId, channel: string, head: Uint8Array): Promise<void> {
    await this.call(peer, encodeControl({ op: 'push', channel }, [head]), AbortSignal.timeout(10_000))
  }

  /** Pushes a head to every connected peer that speaks announce; failures are only logged by the caller. */
  async pushToAll (channel: string, head: Uint8Array, except?: PeerId): Promise<number> {
    return await this.fanout(async p => { await this.push(p, channel, head) }, except)
  }

  private async fanout (send: (p: PeerId) => Promise<void>, except?: PeerId): Promise<number> {
    const peers = new Map<string, PeerId>()
    for (const c of this.node.getConnections()) {
      if (except !== undefined && c.remotePeer.equals(except)) continue
      peers.set(c.remotePeer.toString(), c.remotePeer)
    }
    const results = await Promise.allSettled([...peers.values()].map(async p => {
      const protocols = (await this.node.peerStore.get(p).catch(() => undefined))?.protocols ?? []
      if (!protocols.includes(ANNOUNCE_PROTOCOL)) return false
      await send(p)
      return true
    }))
    return results.filter(r => r.status === 'fulfilled' && r.value).length
  }

  private async call (peer: PeerId | Multiaddr, req: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    return await callRpc(this.node, peer, ANNOUNCE_PROTOCOL, req, {
      maxRequestBytes: MAX_REQUEST,
      maxResponseBytes: MAX_RESPONSE,
      timeoutMs: 60_000,
      ...(signal !== undefined ? { signal } : {})
    })
  }
}
