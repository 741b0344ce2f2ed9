// The daemon's state database: `<dir>/state.ldb`, a LevelDB (`level`) split into named sublevels
// with JSON values (raw bytes for manifests). One process at a time: LevelDB's lock file keeps a
// second daemon out. Layout and key formats: docs/protocol.md §5.
//
// Writes are not fsynced one by one: they survive a crash of the process (kill -9), a power cut
// may lose the last few. Nothing here is the only copy of anything that cannot be fetched or
// recomputed again (manifests come from the seed, blobs are files).
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { InvalidArgumentError, ShoalError } from '../core/errors.js'
import { StorageFullError } from './fs-util.js'

export { StorageFullError } from './fs-util.js'

/** Version of the layout below; a database written by a newer shoal is refused, not misread. */
export const STATE_SCHEMA_VERSION = 1

export class StateLockedError extends ShoalError {
  constructor (dir: string, options?: { cause?: unknown }) {
    super('ERR_STATE_LOCKED', `another shoal daemon is using ${dir} (its state database is locked); stop it first, or give this one its own state directory`, options)
  }
}

export class StateCorruptError extends ShoalError {
  constructor (path: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_STATE_CORRUPT', `the state database ${path} is damaged (${detail}); stop shoal and move that folder aside to start from an empty state (blob files are kept), or restore it from a backup`, options)
  }
}

export class StateSchemaError extends ShoalError {
  constructor (path: string, found: number) {
    super('ERR_STATE_SCHEMA', `the state database ${path} has schema version ${found}, written by a newer shoal; this shoal reads up to version ${STATE_SCHEMA_VERSION} — upgrade shoal, or point it at another state directory`)
  }
}

export interface ReleaseRecord {
  package: string
  version: string
  manifestId: string
  /**
   * 'waiting-for-ring': downloaded, its ring not open yet (or not named: then for good); 'deferred':
   * the notify command deferred it (until `deferUntil`); 'halted': a halt or rollback record stopped
   * it (a rolled-back release also carries `rollbackTo`).
   */
  state: 'announced' | 'downloading' | 'downloaded' | 'installing' | 'installed' | 'failed' | 'superseded' | 'waiting-for-ring' | 'deferred' | 'halted'
  updatedAt: string
  error?: { code: string, message: string, exitCode?: number, logTail?: string }
  [k: string]: unknown
}

export interface RangeOptions { gte?: string, lt?: string, limit?: number }

/** One write of a StateDb.batch, made by KV.putOp/delOp or blobIndex.addOps. Opaque to callers. */
export interface StateOp { readonly type: 'put' | 'del', readonly key: string, readonly value?: unknown, readonly sublevel: unknown }

/** What this file uses of an abstract-level sublevel. */
interface Sublevel<V> {
  get (key: string): Promise<V | undefined>
  put (key: string, value: V): Promise<void>
  del (key: string): Promise<void>
  iterator (opts: RangeOptions): AsyncIterable<[string, V]>
  keys (opts: RangeOptions): AsyncIterable<string>
}

/** Runs async tasks one after another: read-modify-write sequences that must not interleave. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve()
  async run<T> (task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task)
    this.tail = result.catch(() => {})
    return await result
  }
}

function isDiskFullMessage (err: unknown): boolean {
  for (let e = err as { message?: unknown, cause?: unknown } | undefined; e != null; e = e.cause as typeof e) {
    if (typeof e.message === 'string' && /No space left on device|Disk quota exceeded/i.test(e.message)) return true
  }
  return false
}

function checkKey (key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidArgumentError(`a state key must be a non-empty string, got ${JSON.stringify(key)}`)
}

/** A typed key-value view of one sublevel. */
export class KV<T> {
  /** @internal */
  constructor (private readonly sub: Sublevel<T>, private readonly guard: <R>(p: Promise<R>) => Promise<R>) {}

  async get (key: string): Promise<T | null> {
    checkKey(key)
    return (await this.sub.get(key)) ?? null
  }

  async put (key: string, value: T): Promise<void> {
    checkKey(key)
    await this.guard(this.sub.put(key, value))
  }

  async del (key: string): Promise<void> {
    checkKey(key)
    await this.guard(this.sub.del(key))
  }

  /** Entries in key order (UTF-8 byte order), within [gte, lt). */
  async * entries (range: RangeOptions = {}): AsyncGenerator<[string, T]> {
    yield * this.sub.iterator(range)
  }

  putOp (key: string, value: T): StateOp {
    checkKey(key)
    return { type: 'put', sublevel: this.sub, key, value }
  }

  delOp (key: string): StateOp {
    checkKey(key)
    return { type: 'del', sublevel: this.sub, key }
  }
}

const CID_HEX = /^[0-9a-f]{64}$/
/** Cids per blob-index batch (BlobIndex.add, removeRelease). */
const INDEX_SLICE = 2048
// Index keys are `a!b`; '"' is the character after '!', so [`a!`, `a"`) is exactly a's entries.
const SEP = '!'
const SEP_END = '"'

function checkCid (cid: string): void {
  if (typeof cid !== 'string' || !CID_HEX.test(cid)) throw new InvalidArgumentError(`a cid is 64 lowercase hex characters, got ${JSON.stringify(cid)}`)
}

function checkRelease (release: string): void {
  if (typeof release !== 'string' || release.length === 0 || release.includes(SEP)) {
    throw new InvalidArgumentError(`a release name (package@version) must be non-empty and without "${SEP}", got ${JSON.stringify(release)}`)
  }
}

/** Which releases need which blob, kept in both directions by the same batches. */
export class BlobIndex {
  /** @internal */
  constructor (
    private readonly byCid: Sublevel<string>,
    private readonly byRelease: Sublevel<string>,
    private readonly db: StateDb
  ) {}

  /** The writes that record `release` as needing `cids`, for StateDb.batch (idempotent). */
  addOps (release: string, cids: readonly string[]): StateOp[] {
    checkRelease(release)
    const ops: StateOp[] = []
    for (const cid of cids) {
      checkCid(cid)
      ops.push({ type: 'put', sublevel: this.byCid, key: cid + SEP + release, value: '' })
      ops.push({ type: 'put', sublevel: this.byRelease, key: release + SEP + cid, value: '' })
    }
    return ops
  }

  /**
   * Records `release` as needing `cids`, in batches of INDEX_SLICE (idempotent: a crash midway
   * is mended by adding the same cids again). One batch for a 1 GiB release — 57 000 cids,
   * 115 000 writes — took ~45 MB of heap at once (docs/bench-daemon.md, 2026-12-02).
   */
  async add (release: string, cids: readonly string[]): Promise<void> {
    for (let i = 0; i < cids.length; i += INDEX_SLICE) await this.db.batch(this.addOps(release, cids.slice(i, i + INDEX_SLICE)))
  }

  /** Forgets `release`; returns the cids it needed that no release needs any more (GC candidates). */
  async removeRelease (release: string): Promise<string[]> {
    checkRelease(release)
    return await this.db.exclusive(async () => {
      const cids = await this.cidsOf(release)
      for (let i = 0; i < cids.length; i += INDEX_SLICE) {
        const ops: StateOp[] = []
        for (const cid of cids.slice(i, i + INDEX_SLICE)) {
          ops.push({ type: 'del', sublevel: this.byCid, key: cid + SEP + release })
          ops.push({ type: 'del', sublevel: this.byRelease, key: release + SEP + cid })
        }
        await this.db.writeBatch(ops)
      }
      const orphans: string[] = []
      for (const cid of cids) {
        if ((await this.releasesOf(cid, 1)).length === 0) orphans.push(cid)
      }
      return orphans
    })
  }

  async releasesOf (cid: string, limit?: number): Promise<string[]> {
    checkCid(cid)
    return await this.suffixes(this.byCid, cid, limit)
  }

  async cidsOf (release: string): Promise<string[]> {
    checkRelease(release)
    return await this.suffixes(this.byRelease, release)
  }

  private async suffixes (sub: Sublevel<string>, head: string, limit?: number): Promise<string[]> {
    const out: string[] = []
    const range: RangeOptions = { gte: head + SEP, lt: head + SEP_END }
    if (limit !== undefined) range.limit = limit
    for await (const key of sub.keys(range)) out.push(key.slice(head.length + 1))
    return out
  }
}

/**
 * Named numbers (bytes by source, installs, …). Adds are write-behind: the value lives in memory
 * and at most one LevelDB write per counter is in flight, carrying every add made before it
 * started — so a download adding per blob costs a handful of writes, not one per blob, and an
 * `add` still resolves only once a write including it is on disk.
 */
export class Counters {
  private readonly values = new Map<string, number>()
  private readonly writing = new Map<string, Promise<void>>()
  private readonly dirty = new Set<string>()

  /** @internal */
  constructor (private readonly sub: Sublevel<number>, private readonly guard: <R>(p: Promise<R>) => Promise<R>) {}

  private async load (name: string): Promise<number> {
    let v = this.values.get(name)
    if (v === undefined) {
      v = (await this.sub.get(name)) ?? 0
      // another add may have loaded it while we awaited
      v = this.values.get(name) ?? v
      this.values.set(name, v)
    }
    return v
  }

  /** Adds `n` to counter `name`; concurrent calls in this process never lose an update. */
  async add (name: string, n: number): Promise<void> {
    checkKey(name)
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`a counter increment must be a finite number, got ${n}`)
    await this.load(name)
    this.values.set(name, (this.values.get(name) ?? 0) + n) // read after the await: no lost update
    this.dirty.add(name)
    await this.flush(name)
  }

  private async flush (name: string): Promise<void> {
    // Wait for the write in flight (it may not include our add), then write if still dirty.
    for (;;) {
      const running = this.writing.get(name)
      if (running === undefined) break
      await running.catch(() => {})
      if (!this.dirty.has(name)) return
    }
    if (!this.dirty.has(name)) return
    this.dirty.delete(name)
    const p = this.guard(this.sub.put(name, this.values.get(name) ?? 0))
    this.writing.set(name, p)
    try {
      await p
    } catch (err) {
      this.dirty.add(name)
      throw err
    } finally {
      if (this.writing.get(name) === p) this.writing.delete(name)
    }
  }

  async get (name: string): Promise<number> {
    checkKey(name)
    return await this.load(name)
  }

  async all (): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    for await (const [k, v] of this.sub.iterator({})) out[k] = v
    for (const [k, v] of this.values) out[k] = v
    return out
  }
}

interface SchemaRecord { version: number, created: string }

export class StateDb {
  readonly path: string
  readonly manifests: KV<Uint8Array>
  /** Sealed payload patches, by `<target manifest id>:<base manifest id>` (src/core/manifest-patch.ts). */
  readonly manifestPatches: KV<Uint8Array>
  readonly heads: KV<unknown>
  readonly releases: KV<ReleaseRecord>
  readonly peers: KV<unknown>
  /** Anything else the daemon needs to remember, by name. */
  readonly kv: KV<unknown>
  /** Seed: the latest report of each endpoint, by PeerId, without its OS inventory (src/fleet/store.ts). */
  readonly fleetReports: KV<unknown>
  /** Seed: each endpoint's latest OS inventory, by PeerId. */
  readonly fleetInventory: KV<unknown>
  readonly blobIndex: BlobIndex
  readonly counters: Counters
  /** Batches and blob-index updates run one at a time, so removeRelease's orphan list is exact. */
  private readonly serial = new Serial()

  private constructor (readonly dir: string, private readonly db: Level<string, unknown>) {
    this.path = db.location
    const guard = async <R>(p: Promise<R>): Promise<R> => await this.guard(p)
    const json = <V>(name: string): Sublevel<V> => db.sublevel<string, V>(name, { valueEncoding: 'json' }) as unknown as Sublevel<V>
    this.manifests = new KV(db.sublevel<string, Uint8Array>('manifests', { valueEncoding: 'view' }) as unknown as Sublevel<Uint8Array>, guard)
    this.manifestPatches = new KV(db.sublevel<string, Uint8Array>('manifest-patches', { valueEncoding: 'view' }) as unknown as Sublevel<Uint8Array>, guard)
    this.heads = new KV(json('heads'), guard)
    this.releases = new KV(json<ReleaseRecord>('releases'), guard)
    this.peers = new KV(json('peers'), guard)
    this.kv = new KV(json('kv'), guard)
    this.fleetReports = new KV(json('fleet-reports'), guard)
    this.fleetInventory = new KV(json('fleet-inventory'), guard)
    const utf8 = (name: string): Sublevel<string> => db.sublevel<string, string>(name, { valueEncoding: 'utf8' }) as unknown as Sublevel<string>
    this.blobIndex = new BlobIndex(utf8('blob-by-cid'), utf8('blob-by-release'), this)
    this.counters = new Counters(json('counters'), guard)
  }

  /** Opens (creating if needed) `<dir>/state.ldb`. */
  static async open (dir: string): Promise<StateDb> {
    await mkdir(dir, { recursive: true })
    const db = new Level<string, unknown>(join(dir, 'state.ldb'), { valueEncoding: 'json' })
    try {
      await db.open()
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
      const detail = (err as { cause?: Error }).cause?.message ?? (err as Error).message
      if (code === 'LEVEL_LOCKED') throw new StateLockedError(dir, { cause: err })
      // A file LevelDB's own MANIFEST lists but cannot find is damage too, not a transient I/O fault.
      if (code === 'LEVEL_CORRUPTION' || (code === 'LEVEL_IO_ERROR' && /No such file/i.test(detail))) throw new StateCorruptError(db.location, detail, { cause: err })
      if (isDiskFullMessage(err)) throw new StorageFullError(dir, 'the state database', { cause: err })
      throw err
    }
    const state = new StateDb(dir, db)
    try {
      await state.checkSchema()
    } catch (err) {
      await db.close()
      throw err
    }
    return state
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  /** Applies all `ops` or none, across sublevels. */
  async batch (ops: StateOp[]): Promise<void> {
    await this.exclusive(async () => { await this.writeBatch(ops) })
  }

  /** @internal Runs `task` with no batch or blob-index update interleaved. */
  async exclusive<T> (task: () => Promise<T>): Promise<T> {
    return await this.serial.run(task)
  }

  /** @internal A batch without taking the lock (the caller holds it). */
  async writeBatch (ops: StateOp[]): Promise<void> {
    if (ops.length === 0) return
    // StateOp is abstract-level's sublevel batch operation with the types hidden.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    await this.guard((this.db as any).batch(ops) as Promise<void>)
  }

  private async guard<R> (p: Promise<R>): Promise<R> {
    try {
      return await p
    } catch (err) {
      if (isDiskFullMessage(err)) throw new StorageFullError(this.dir, 'the state database', { cause: err })
      throw err
    }
  }

  private async checkSchema (): Promise<void> {
    const meta = this.db.sublevel<string, SchemaRecord>('meta', { valueEncoding: 'json' })
    let rec: SchemaRecord | undefined
    try {
      rec = await meta.get('schema')
    } catch (err) {
      throw new StateCorruptError(this.path, `unreadable schema record: ${(err as Error).message}`, { cause: err })
    }
    if (rec === undefined) {
      await this.guard(meta.put('schema', { version: STATE_SCHEMA_VERSION, created: new Date().toISOString() }))
      return
    }
    if (typeof rec !== 'object' || rec === null || !Number.isSafeInteger(rec.version) || rec.version < 1) {
      throw new StateCorruptError(this.path, `unreadable schema record ${JSON.stringify(rec)}`)
    }
    if (rec.version > STATE_SCHEMA_VERSION) throw new StateSchemaError(this.path, rec.version)
    // Older versions get migrated here once there is a version 2.
  }
}
