// /shoal/announce/1: how channel heads and manifests travel (docs/protocol.md §6.5). Every daemon
// serves the heads it holds and the manifests they name; endpoints poll their seeds, and a daemon
// that accepts a new head pushes it to the peers it is connected to. Signatures make the path
// irrelevant, so nothing here trusts what it receives: the caller verifies.
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { DecodeError, ShoalError, quoteValue } from '../core/errors.js'
import { MAX_HEAD_BYTES } from '../core/head.js'
import { LABEL, MAX_MANIFEST_BYTES, PACKAGE_NAME } from '../core/manifest.js'
import { encodeManifestDelta, isManifestDeltaBase, ManifestDeltaError, rebuildManifest } from '../core/manifest-delta.js'
import {
  applyPayloadPatch, buildPayloadPatch, checkPayloadPatch, decodePatchList, encodeStrippedDelta, ManifestPatchError, MAX_PATCHES_PER_RELEASE, type PatchFor
} from '../core/manifest-patch.js'
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
/** The root of a version as this daemon holds it, or null. */
export type RootSource = (version: number) => Promise<Uint8Array | null>

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

/** Manifest deltas a server keeps, by (manifest, base): the members of a site ask for the same pair. */
const MANIFEST_DELTA_CACHE = 8

/** A manifest as it crossed the wire: its bytes (rebuilt when a delta came), and what the reply cost. */
export interface FetchedManifest {
  bytes: Uint8Array
  /** Bytes of the manifest replies received (a refused delta and what followed it all count). */
  wireBytes: number
  /**
   * 'patch': rebuilt from a stripped delta and a payload patch; 'delta': from a plain delta;
   * 'refused': a delta or patch came but did not rebuild `id`, and what followed did.
   */
  via: 'full' | 'delta' | 'patch' | 'refused'
  /** Why a delta or patch was refused (via = 'refused'). */
  refusal?: ManifestDeltaError | ManifestPatchError
}

/** A payload patch held for (target, base): the key of `StateDb.manifestPatches`. */
export function patchKey (target: string, base: string): string {
  return `${target}:${base}`
}

/**
 * Level of the patches a site member makes itself (it holds the content key and both manifests):
 * made on demand while a member waits, so faster than the publisher's level 19.
 */
const MEMBER_PATCH_LEVEL = 9

/** A manifest the caller holds, offered as the base of a delta (the one installed, or the latest held). */
export interface ManifestBase { id: string, bytes: Uint8Array }

export class Announce {
  private unhandle: (() => Promise<void>) | undefined
  /** In flight or done, so that concurrent askers share one encode; null: no delta worth sending. */
  private readonly deltas = new Map<string, Promise<Uint8Array | null>>()
  private readonly patched = new Map<string, Promise<Uint8Array[] | null>>()

  constructor (
    private readonly node: ShoalNode,
    private readonly db: StateDb,
    private readonly opts: {
      onPush?: PushListener
      directory?: Directory
      onRecord?: RecordListener
      records?: RecordSource
      root?: RootSource
      rootVersion?: () => number
      /**
       * Endpoints: the content key, so this daemon asks for and opens payload patches, and makes
       * them for peers from the manifests it holds. Seeds have none: they serve the patches
       * publishers uploaded, and take plain deltas themselves.
       */
      contentKey?: Uint8Array
    } = {}
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
    const r = decodeAnnounceRequest(req)
    if (r.op === 'heads') {
      const channels = r.channels
      const heads: Uint8Array[] = []
      const held: string[] = []
      for (const c of channels) {
        const h = await loadHead(this.db, c)
        if (h !== null) { heads.push(h); held.push(c) }
      }
      // The version of the root I trust rides along, so peers ask for roots only when there is one.
      return encodeControl({ channels: held, ...(this.opts.rootVersion !== undefined ? { root: this.opts.rootVersion() } : {}) }, heads)
    }
    if (r.op === 'manifest') {
      const bytes = await this.db.manifests.get(r.id)
      if (bytes === null) throw new NotFoundError(`manifest ${r.id}`)
      if (r.base === undefined || r.base === r.id) return encodeControl({}, [bytes])
      const patched = r.patch === true ? await this.patchedDelta(r.id, bytes, r.base) : null
      if (patched !== null) return encodeControl({ delta: r.base, patch: true }, patched)
      const delta = await this.manifestDelta(r.id, bytes, r.base)
      return delta !== null ? encodeControl({ delta: r.base }, [delta]) : encodeControl({}, [bytes])
    }
    if (r.op === 'push') {
      this.opts.onPush?.(r.channel, r.head, peer)
      return encodeControl({ ok: true })
    }
    if (r.op === 'records') {
      if (this.opts.records === undefined) throw new NotFoundError('operation "records"')
      const out: Uint8Array[] = []
      for (const pkg of r.packages) out.push(...(await this.opts.records(pkg)).slice(-MAX_RECORDS_REPLY))
      const parts = out.slice(-MAX_RECORDS_REPLY)
      return encodeControl({ count: parts.length }, parts)
    }
    if (r.op === 'push-record') {
      this.opts.onRecord?.(r.record, peer)
      return encodeControl({ ok: true })
    }
    if (r.op === 'manifest-patches') {
      const bases: string[] = []
      const parts: Uint8Array[] = []
      let total = 0
      // keys are `<target>:<base>`; ';' is the character after ':', so this range is exactly the target's
      for await (const [k, v] of this.db.manifestPatches.entries({ gte: `${r.id}:`, lt: `${r.id};`, limit: MAX_PATCHES_PER_RELEASE })) {
        if (total + v.length > MAX_MANIFEST_BYTES) break
        bases.push(k.slice(r.id.length + 1))
        parts.push(v)
        total += v.length
      }
      return encodeControl({ bases }, parts)
    }
    if (r.op === 'root') {
      const bytes = await this.opts.root?.(r.version) ?? null
      if (bytes === null) throw new NotFoundError(`root version ${r.version}`)
      return encodeControl({}, [bytes])
    }
    if (this.opts.directory === undefined) throw new NotFoundError('operation "site"')
    return encodeControl({ peers: this.opts.directory(peer, r.site, r.addrs).slice(0, MAX_DIRECTORY_PEERS) })
  }

  /** Manifest `id` as a delta against `baseId` if this daemon holds that base and the delta is worth it. */
  private async manifestDelta (id: string, bytes: Uint8Array, baseId: string): Promise<Uint8Array | null> {
    return await this.cached(this.deltas, `${id}:${baseId}`, async () => {
      const base = await this.db.manifests.get(baseId)
      return base === null ? null : await encodeManifestDelta(base, bytes)
    })
  }

  /**
   * Manifest `id` against `baseId` as [delta of the stripped manifests, sealed payload patch], when
   * this daemon holds the base and a patch for the pair: uploaded by the publisher (seeds), kept
   * from the peer it came from, or (with the content key) made here and kept.
   */
  private async patchedDelta (id: string, bytes: Uint8Array, baseId: string): Promise<Uint8Array[] | null> {
    return await this.cached(this.patched, `${id}:${baseId}`, async () => {
      const base = await this.db.manifests.get(baseId)
      if (base === null) return null
      let patch = await this.db.manifestPatches.get(patchKey(id, baseId))
      if (patch === null && this.opts.contentKey !== undefined) {
        patch = await buildPayloadPatch({ id: baseId, bytes: base }, { id, bytes }, this.opts.contentKey, { level: MEMBER_PATCH_LEVEL })
        if (patch !== null) await this.db.manifestPatches.put(patchKey(id, baseId), patch)
      }
      if (patch === null) return null
      const delta = await encodeStrippedDelta(base, bytes)
      // never more than the manifest itself (which also keeps the reply within its limit)
      return delta === null || delta.length + patch.length >= bytes.length ? null : [delta, patch]
    })
  }

  /** In flight or done, so that concurrent askers share one encode; a failure is no delta. */
  private async cached<T> (cache: Map<string, Promise<T | null>>, key: string, make: () => Promise<T | null>): Promise<T | null> {
    let p = cache.get(key)
    if (p === undefined) {
      p = make().catch(() => null)
      cache.set(key, p)
      if (cache.size > MANIFEST_DELTA_CACHE) cache.delete(cache.keys().next().value!)
    }
    return await p
  }

  /** The heads `peer` holds for `channels` (unverified), by channel. */
  async fetchHeads (peer: PeerId | Multiaddr, channels: string[], signal?: AbortSignal): Promise<Map<string, Uint8Array>> {
    return (await this.fetchHeadsAndRoot(peer, channels, signal)).heads
  }

  /** …and the version of the root `peer` trusts, when it says (older daemons do not). */
  async fetchHeadsAndRoot (peer: PeerId | Multiaddr, channels: string[], signal?: AbortSignal): Promise<{ heads: Map<string, Uint8Array>, root: number | undefined }> {
    const res = await this.call(peer, encodeControl({ op: 'heads', channels }), signal)
    return { heads: decodeHeadsReply(res, channels), root: decodeHeadsReplyRoot(res) }
  }

  /**
   * Manifest `id` from `peer`; with `base`, asked as a delta against it (peers that do not know
   * `base`, or do not hold it, answer the full manifest), and, holding the content key, with a
   * payload patch. Rebuilt bytes are returned only if they hash to `id`; a patched reply that does
   * not is refused and the plain delta asked for, a delta that does not, the full manifest, all
   * from the same peer. A patch that rebuilt `id` is kept, to serve the pair onward.
   * Full bytes are unverified: the caller checks the id and, for all, the signatures.
   */
  async fetchManifest (peer: PeerId | Multiaddr, id: string, signal?: AbortSignal, base?: ManifestBase): Promise<FetchedManifest> {
    const ask = base !== undefined && base.id !== id && isManifestDeltaBase(base.bytes)
    const contentKey = this.opts.contentKey
    let wireBytes = 0
    let refusal: ManifestDeltaError | ManifestPatchError | undefined
    const done = (bytes: Uint8Array, via: 'full' | 'delta' | 'patch'): FetchedManifest =>
      refusal === undefined ? { bytes, wireBytes, via } : { bytes, wireBytes, via: 'refused', refusal }
    let t: 'patch' | 'delta' | 'full' = !ask ? 'full' : contentKey !== undefined ? 'patch' : 'delta'
    for (;;) {
      const res = await this.call(peer, encodeControl({ op: 'manifest', id, ...(t !== 'full' ? { base: base!.id } : {}), ...(t === 'patch' ? { patch: true } : {}) }), signal)
      wireBytes += res.length
      let reply: ReturnType<typeof decodeManifestReply>
      try {
        reply = decodeManifestReply(res, id)
      } catch (err) {
        // only a patched reply is retried in another form: anything else malformed is this peer's fault
        if (t !== 'patch' || !(err instanceof DecodeError)) throw err
        refusal = new ManifestPatchError(err.message, { cause: err })
        t = 'delta'
        continue
      }
      if (reply.delta === undefined) return done(reply.bytes, 'full')
      try {
        if (t === 'full') throw new ManifestDeltaError('a delta again, though none was asked for')
        if (!ask || reply.delta !== base.id) throw new ManifestDeltaError(`a delta against ${reply.delta.slice(0, 12)}…, which was not offered as base`)
        if (reply.patch === undefined) return done(rebuildManifest(base.bytes, reply.bytes, id), 'delta')
        if (t !== 'patch' || contentKey === undefined) throw new ManifestPatchError('a patch, though none was asked for')
        const bytes = applyPayloadPatch(base, reply.bytes, reply.patch, id, contentKey)
        await this.db.manifestPatches.put(patchKey(id, base.id), reply.patch)
        return done(bytes, 'patch')
      } catch (err) {
        if (t === 'full' || !(err instanceof ManifestDeltaError || err instanceof ManifestPatchError)) throw err
        refusal = err
        // a refused patch: the plain delta next; a refused plain delta: the full manifest
        t = reply.patch !== undefined ? 'delta' : 'full'
      }
    }
  }

  /**
   * The payload patches `peer` holds to manifest `id`, by base (seeds copy them from peer seeds:
   * they cannot make or open one). Unverified: they only ever serve as patches, which the
   * endpoint checks; an older peer refuses the operation (`ERR_NOT_FOUND`).
   */
  async fetchManifestPatches (peer: PeerId | Multiaddr, id: string, signal?: AbortSignal): Promise<PatchFor[]> {
    return decodeManifestPatchesReply(await this.call(peer, encodeControl({ op: 'manifest-patches', id }), signal))
  }

  /** The root of `version` from `peer` (unverified: the caller walks the chain), NotFound-coded RpcRemoteError when it holds none. */
  async fetchRoot (peer: PeerId | Multiaddr, version: number, signal?: AbortSignal): Promise<Uint8Array> {
    const bytes = decodeControl(await this.call(peer, encodeControl({ op: 'root', version }), signal), 'announce root reply').parts[0]
    if (bytes === undefined) throw new NotFoundError(`root version ${version}`)
    return bytes
  }

  /** Registers with a seed's directory under `site`; returns the label mates it knows. */
  async siteMates (seed: PeerId | Multiaddr, site: string, addrs: string[], signal?: AbortSignal): Promise<DirectoryEntry[]> {
    return decodeSiteReply(await this.call(seed, encodeControl({ op: 'site', site, addrs: addrs.slice(0, MAX_ADDRS) }), signal))
  }

  /** The control records `peer` holds for `packages` (unverified), in the order it sent them. */
  async fetchRecords (peer: PeerId | Multiaddr, packages: string[], signal?: AbortSignal): Promise<Uint8Array[]> {
    return decodeRecordsReply(await this.call(peer, encodeControl({ op: 'records', packages: packages.slice(0, MAX_RECORD_PACKAGES) }), signal))
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

// ---- the messages, decoded strictly (docs/protocol.md §6.5); pure, so they are fuzzed as called ----

export type AnnounceRequest =
  | { op: 'heads', channels: string[] }
  | { op: 'manifest', id: string, base?: string, patch?: true }
  | { op: 'manifest-patches', id: string }
  | { op: 'push', channel: string, head: Uint8Array }
  | { op: 'site', site: string, addrs: string[] }
  | { op: 'records', packages: string[] }
  | { op: 'push-record', record: Uint8Array }
  | { op: 'root', version: number }

export function decodeAnnounceRequest (req: Uint8Array): AnnounceRequest {
  const what = 'announce request'
  const { header, parts } = decodeControl(req, what)
  const op = headerString(header, 'op', what)
  if (op === 'heads') return { op, channels: headerStrings(header, 'channels', what, MAX_CHANNELS, PACKAGE_NAME) }
  if (op === 'manifest') {
    const id = headerString(header, 'id', what, HEX64)
    if (header.base === undefined) return { op, id }
    const base = headerString(header, 'base', what, HEX64)
    // `patch` is asked only beside a base; anything but true is no patch (an older caller's absence)
    return header.patch === true ? { op, id, base, patch: true } : { op, id, base }
  }
  if (op === 'manifest-patches') return { op, id: headerString(header, 'id', what, HEX64) }
  if (op === 'push') {
    const channel = headerString(header, 'channel', what, PACKAGE_NAME)
    const head = parts[0]
    if (head === undefined || parts.length !== 1) throw new NotFoundError('a pushed head')
    return { op, channel, head }
  }
  if (op === 'site') return { op, site: headerString(header, 'site', what, LABEL), addrs: headerStrings(header, 'addrs', what, MAX_ADDRS) }
  if (op === 'records') return { op, packages: headerStrings(header, 'packages', what, MAX_RECORD_PACKAGES, PACKAGE_NAME) }
  if (op === 'push-record') {
    const record = parts[0]
    if (record === undefined || parts.length !== 1) throw new NotFoundError('a pushed record')
    return { op, record }
  }
  if (op === 'root') {
    const v = header.version
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new DecodeError(what, 'header field "version" must be a whole number ≥ 1')
    return { op, version: v }
  }
  throw new NotFoundError(`operation ${JSON.stringify(op.slice(0, 40))}`)
}

/** The heads a reply holds for the channels asked about (unverified), by channel. */
export function decodeHeadsReply (res: Uint8Array, asked: readonly string[]): Map<string, Uint8Array> {
  const { header, parts } = decodeControl(res, 'announce heads reply')
  const held = headerStrings(header, 'channels', 'announce heads reply', MAX_CHANNELS, PACKAGE_NAME)
  const out = new Map<string, Uint8Array>()
  held.forEach((c, i) => { const p = parts[i]; if (p !== undefined && asked.includes(c)) out.set(c, p) })
  return out
}

/** The root version a heads reply names, or undefined when absent or not a whole number ≥ 1. */
export function decodeHeadsReplyRoot (res: Uint8Array): number | undefined {
  const v = decodeControl(res, 'announce heads reply').header.root
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : undefined
}

/**
 * A manifest reply: the manifest's bytes, or (`delta` set: the base's id) a delta to rebuild them
 * from; with `patch` (only beside `delta`): the delta is of the manifests without their ciphertext,
 * and `patch` the sealed payload patch (size and framing checked here, its contents when opened).
 */
export function decodeManifestReply (res: Uint8Array, id: string): { bytes: Uint8Array, delta?: string, patch?: Uint8Array } {
  const what = 'announce manifest reply'
  const { header, parts } = decodeControl(res, what)
  const bytes = parts[0]
  if (bytes === undefined) throw new NotFoundError(`manifest ${id}`)
  if (header.delta === undefined) {
    if (header.patch !== undefined) throw new DecodeError(what, 'a patch without a delta')
    return { bytes }
  }
  const delta = headerString(header, 'delta', what, HEX64)
  if (header.patch === undefined) return { bytes, delta }
  const patch = parts[1]
  if (header.patch !== true || patch === undefined || parts.length !== 2) throw new DecodeError(what, 'a patched reply holds exactly a delta and a patch, with "patch": true')
  try {
    checkPayloadPatch(patch)
  } catch (err) {
    throw new DecodeError(what, (err as Error).message, { cause: err })
  }
  return { bytes, delta, patch }
}

/** A `manifest-patches` reply: at most MAX_PATCHES_PER_RELEASE patches by distinct base, each one's framing checked. */
export function decodeManifestPatchesReply (res: Uint8Array): PatchFor[] {
  const what = 'announce manifest-patches reply'
  const { header, parts } = decodeControl(res, what)
  return decodePatchList(headerStrings(header, 'bases', what, MAX_PATCHES_PER_RELEASE, HEX64), parts, what)
}

/** Label mates from a directory reply; malformed entries are skipped, at most MAX_DIRECTORY_PEERS of MAX_ADDRS addresses each. */
/** The records a peer sent for an announce `records` request (unverified: each is decodeRecord'ed later). */
export function decodeRecordsReply (res: Uint8Array): Uint8Array[] {
  const { header, parts } = decodeControl(res, 'announce records reply')
  if (header.count !== parts.length) throw new DecodeError('announce records reply', `count ${quoteValue(header.count)} does not match its ${parts.length} record(s)`)
  return parts
}

export function decodeSiteReply (res: Uint8Array): DirectoryEntry[] {
  const { header } = decodeControl(res, 'announce site reply')
  const peers = header.peers
  if (!Array.isArray(peers)) return []
  return peers.slice(0, MAX_DIRECTORY_PEERS).filter((p): p is DirectoryEntry =>
    typeof p === 'object' && p !== null && typeof p.id === 'string' && p.id.length <= 128 &&
    Array.isArray(p.addrs) && p.addrs.length <= MAX_ADDRS && p.addrs.every((a: unknown) => typeof a === 'string' && a.length <= 1024))
}
