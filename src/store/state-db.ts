// The daemon's state database: `<dir>/state.ldb`, a LevelDB (`level`) split into named sublevels
// with JSON values (raw bytes for manifests, patches and blob sets). One process at a time: LevelDB's lock file keeps a
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
import { ManifestFiles } from './manifest-files.js'

export { StorageFullError } from './fs-util.js'

/** Version of the layout below; a database written by a newer shoal is refused, not misread. */
export const STATE_SCHEMA_VERSION = 2

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
/** Bytes of one cid in a blob set. */
const CID_BYTES = 32
/** Keys per delete batch of the schema 1 → 2 migration. */
const MIGRATION_SLICE = 2048
// Release names must not contain '!' (schema 1 keys were `<release>!<cid>`; names valid then stay valid).
const SEP = '!'

function checkCid (cid: string): void {
  if (typeof cid !== 'string' || !CID_HEX.test(cid)) throw new InvalidArgumentError(`a cid is 64 lowercase hex characters, got ${JSON.stringify(cid)}`)
}

function checkRelease (release: string): void {
  if (typeof release !== 'string' || release.length === 0 || release.includes(SEP)) {
    throw new InvalidArgumentError(`a release name (package@version) must be non-empty and without "${SEP}", got ${JSON.stringify(release)}`)
  }
}

// A blob set is a Buffer of 32-byte records (raw cids), strictly increasing in unsigned byte order.
// Lowercase hex preserves that order: schema 1 listed a release's cids in hex order, which the migration takes as sorted.

/** Compares record `i` of `a` with record `j` of `b`. */
function cmpRecord (a: Uint8Array, i: number, b: Uint8Array, j: number): number {
  let p = i * CID_BYTES
  let q = j * CID_BYTES
  const end = p + CID_BYTES
  for (; p < end; p++, q++) {
    const d = a[p]! - b[q]!
    if (d !== 0) return d
  }
  return 0
}

/**
 * The first record index in [from, n) of `set` not less than record `k` of `key`, given that the
 * records before `from` are less: exponential then binary search, O(log distance).
 */
function seek (set: Uint8Array, from: number, n: number, key: Uint8Array, k: number): number {
  let lo = from
  let hi = from
  let step = 1
  while (hi < n && cmpRecord(set, hi, key, k) < 0) {
    lo = hi + 1
    hi += step
    step *= 2
  }
  if (hi > n) hi = n
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (cmpRecord(set, mid, key, k) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** The set of hex `cids` (validated, deduplicated), sorted. */
function encodeSet (cids: readonly string[]): Buffer {
  const records = Buffer.allocUnsafe(cids.length * CID_BYTES)
  cids.forEach((cid, i) => { checkCid(cid); records.write(cid, i * CID_BYTES, CID_BYTES, 'hex') })
  return encodeRecords(records)
}

/** The set of 32-byte `records` (any order, repeats allowed), sorted: no hex string per cid. */
function encodeRecords (records: Uint8Array): Buffer {
  if (records.length % CID_BYTES !== 0) throw new InvalidArgumentError(`cid records are ${CID_BYTES} bytes each, got ${records.length} bytes`)
  const n = records.length / CID_BYTES
  const order = Uint32Array.from({ length: n }, (_, i) => i).sort((x, y) => cmpRecord(records, x, records, y))
  const out = Buffer.allocUnsafe(records.length)
  let m = 0
  for (let k = 0; k < n; k++) {
    const i = order[k]!
    if (m > 0 && cmpRecord(records, i, out, m - 1) === 0) continue
    out.set(records.subarray(i * CID_BYTES, (i + 1) * CID_BYTES), m * CID_BYTES)
    m++
  }
  return out.subarray(0, m * CID_BYTES)
}

/** a ∪ b, one merge walk. */
function unionSets (a: Buffer, b: Buffer): Buffer {
  if (a.length === 0) return b
  if (b.length === 0) return a
  const na = a.length / CID_BYTES
  const nb = b.length / CID_BYTES
  const out = Buffer.allocUnsafe(a.length + b.length)
  let i = 0
  let j = 0
  let n = 0
  while (i < na && j < nb) {
    const d = cmpRecord(a, i, b, j)
    if (d <= 0) {
      a.copy(out, n * CID_BYTES, i * CID_BYTES, (i + 1) * CID_BYTES)
      i++
      if (d === 0) j++
    } else {
      b.copy(out, n * CID_BYTES, j * CID_BYTES, (j + 1) * CID_BYTES)
      j++
    }
    n++
  }
  n += a.copy(out, n * CID_BYTES, i * CID_BYTES) / CID_BYTES
  n += b.copy(out, n * CID_BYTES, j * CID_BYTES) / CID_BYTES
  return out.subarray(0, n * CID_BYTES)
}

/**
 * Sets `found[i]` for each record i of `set` that `other` holds too; returns how many it newly
 * set. Galloping merge walk: O(min(|set|, |other|) · log) record comparisons.
 */
function markCommon (set: Buffer, other: Buffer, found: Uint8Array): number {
  const n = set.length / CID_BYTES
  const m = other.length / CID_BYTES
  let i = 0
  let j = 0
  let marked = 0
  while (i < n && j < m) {
    const d = cmpRecord(set, i, other, j)
    if (d === 0) {
      if (found[i] === 0) {
        found[i] = 1
        marked++
      }
      i++
      j++
    } else if (d < 0) {
      i = seek(set, i + 1, n, other, j)
    } else {
      j = seek(other, j + 1, m, set, i)
    }
  }
  return marked
}

function hasRecord (set: Buffer, key: Buffer): boolean {
  const n = set.length / CID_BYTES
  const i = seek(set, 0, n, key, 0)
  return i < n && cmpRecord(set, i, key, 0) === 0
}

/** `value` read from `blob-sets` for `release`, checked: a whole number of records, strictly increasing. */
function checkedSet (path: string, release: string, value: unknown): Buffer {
  if (!(value instanceof Uint8Array)) throw new StateCorruptError(path, `the blob set of release ${JSON.stringify(release)} (sublevel blob-sets) is not binary`)
  const set = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (set.length % CID_BYTES !== 0) {
    throw new StateCorruptError(path, `the blob set of release ${JSON.stringify(release)} (sublevel blob-sets) is ${set.length} bytes, not a multiple of ${CID_BYTES}`)
  }
  const n = set.length / CID_BYTES
  for (let i = 1; i < n; i++) {
    if (cmpRecord(set, i - 1, set, i) >= 0) {
      throw new StateCorruptError(path, `the blob set of release ${JSON.stringify(release)} (sublevel blob-sets) is not strictly sorted at cid #${i} of ${n}`)
    }
  }
  return set
}

/**
 * Which releases need which blob: per release one value, its distinct cids as sorted 32-byte
 * records (docs/protocol.md §5.3), so set operations are merge walks over buffers, with no JS
 * string or object per cid.
 *
 * Measured, `blobIndex.add` of one release of 57 000 random cids into an open database (Node 20,
 * `--expose-gc`, `process.memoryUsage()` after gc minus before, 8 runs each on the 2-core VM
 * while benchmarks ran, so times are noisy; median and range):
 *
 * | | schema 1: 2 keys per cid, 114 000 writes | schema 2: one 1.8 MB value |
 * |---|---|---|
 * | add | 0.42 s (0.30–0.88) | 0.10 s (0.08–0.23) |
 * | RSS after gc | +16.4 MB (15.1–21.6) | +2.7 MB (2.3–2.9) |
 * | RSS before gc | +16.6–23.2 MB | +5.2–5.9 MB |
 * | heapUsed after gc / before gc | +0.1–0.3 / +2.0–14.2 MB | +0.0 / +3.8–3.9 MB |
 * | add again (same cids) | 0.39–0.87 s | 0.11–0.13 s (nothing written) |
 * | removeRelease (no other release) | 78–95 s (a range query per cid) | 0.05–0.10 s |
 *
 * removeRelease against 3 other releases of 57 000 cids sharing 95 %: 0.06–0.08 s. Migrating
 * that release from schema 1 at open: 0.9–1.1 s, RSS +20–23 MB once.
 */
export class BlobIndex {
  /** @internal */
  constructor (private readonly sets: Sublevel<Buffer>, private readonly db: StateDb) {}

  /**
   * The write that makes `release`'s set **exactly** `cids` (replacing what is stored: a batch
   * cannot read, so it cannot union), for StateDb.batch. No cids: the set is deleted.
   * BlobIndex.add unions instead.
   */
  addOps (release: string, cids: readonly string[]): StateOp[] {
    checkRelease(release)
    const set = encodeSet(cids)
    return [set.length === 0 ? { type: 'del', sublevel: this.sets, key: release } : { type: 'put', sublevel: this.sets, key: release, value: set }]
  }

  /**
   * Records `release` as needing `cids` too: its set becomes the union of the stored one and
   * `cids`, written as one value (a crash leaves the old set or the new one). Idempotent; adding
   * cids already there writes nothing. `cids`: hex strings, or raw 32-byte records one after
   * another (a ChunkTable's, say: no string per cid).
   */
  async add (release: string, cids: readonly string[] | Uint8Array): Promise<void> {
    checkRelease(release)
    const incoming = cids instanceof Uint8Array ? encodeRecords(cids) : encodeSet(cids)
    await this.db.exclusive(async () => { await this.db.writeBatch(await this.unionOps(release, incoming)) })
  }

  /** @internal The writes (none or one) that union `incoming` (a sorted set) into `release`'s set. */
  async unionOps (release: string, incoming: Buffer): Promise<StateOp[]> {
    const stored = await this.read(release)
    if (stored === null) return incoming.length === 0 ? [] : [{ type: 'put', sublevel: this.sets, key: release, value: incoming }]
    const merged = unionSets(stored, incoming)
    // merged ⊇ stored: the same length means nothing new
    return merged.length === stored.length ? [] : [{ type: 'put', sublevel: this.sets, key: release, value: merged }]
  }

  /**
   * Forgets `release`; returns the cids it needed that no release needs any more (GC candidates).
   * Walks each other release's set once against this one (stopping once every cid is found
   * elsewhere): O(bytes stored), no set of all other cids in memory.
   */
  async removeRelease (release: string): Promise<string[]> {
    checkRelease(release)
    return await this.db.exclusive(async () => {
      const own = await this.read(release)
      if (own === null) return []
      const n = own.length / CID_BYTES
      const found = new Uint8Array(n)
      let left = n
      if (left > 0) {
        for await (const [key, value] of this.sets.iterator({})) {
          if (key === release) continue
          left -= markCommon(own, checkedSet(this.db.path, key, value), found)
          if (left === 0) break
        }
      }
      await this.db.writeBatch([{ type: 'del', sublevel: this.sets, key: release }])
      const orphans: string[] = []
      for (let i = 0; i < n; i++) {
        if (found[i] === 0) orphans.push(own.toString('hex', i * CID_BYTES, (i + 1) * CID_BYTES))
      }
      return orphans
    })
  }

  /** The releases whose set holds `cid`, in release-name order (at most `limit`). */
  async releasesOf (cid: string, limit?: number): Promise<string[]> {
    checkCid(cid)
    const max = limit === undefined || limit < 0 ? Infinity : limit
    const key = Buffer.from(cid, 'hex')
    const out: string[] = []
    if (max === 0) return out
    for await (const [release, value] of this.sets.iterator({})) {
      if (hasRecord(checkedSet(this.db.path, release, value), key)) {
        out.push(release)
        if (out.length >= max) break
      }
    }
    return out
  }

  /** The cids `release` needs, in hex order. */
  async cidsOf (release: string): Promise<string[]> {
    checkRelease(release)
    const set = await this.read(release)
    const out: string[] = []
    if (set === null) return out
    for (let i = 0; i < set.length; i += CID_BYTES) out.push(set.toString('hex', i, i + CID_BYTES))
    return out
  }

  private async read (release: string): Promise<Buffer | null> {
    const value = await this.sets.get(release)
    return value === undefined ? null : checkedSet(this.db.path, release, value)
  }
}

/**
 * Per-blob adds (a download's bytes by source) made visible at once and written once per counter
 * every `everyMs`: one LevelDB write per counter per interval, where an awaited add per blob kept a
 * promise chain per blob waiting on the disk. A failed write is retried at the next flush; `close`
 * writes what is left and throws when that fails. A kill loses at most the last interval's counts,
 * as it may lose those blobs' appends (written without fsync).
 */
export class CounterBatch {
  private readonly names = new Set<string>()
  private readonly loading = new Set<Promise<void>>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly counters: Pick<Counters, 'add' | 'addDeferred' | 'persist'>, private readonly everyMs: number, private readonly onError: (err: unknown) => void) {}

  add (name: string, n: number): void {
    if (!this.counters.addDeferred(name, n)) {
      // the counter's first use: a plain add loads it (and writes this one increment)
      const p = this.counters.add(name, n).catch(this.onError).finally(() => this.loading.delete(p))
      this.loading.add(p)
      return
    }
    this.names.add(name)
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      this.flush().catch(this.onError)
    }, this.everyMs)
  }

  async close (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await Promise.all([...this.loading])
    await this.flush()
  }

  private async flush (): Promise<void> {
    const names = [...this.names]
    this.names.clear()
    let failed: unknown
    for (const name of names) {
      try {
        await this.counters.persist(name)
      } catch (err) {
        this.names.add(name) // still dirty in Counters: written by the next flush
        failed ??= err
      }
    }
    if (failed !== undefined) throw failed
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

  /**
   * Adds `n` in memory at once (get and all see it) and leaves the write to the next
   * `persist(name)`. False, and nothing added, when the counter is not loaded yet: use `add`.
   */
  addDeferred (name: string, n: number): boolean {
    const v = this.values.get(name)
    if (v === undefined) return false
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`a counter increment must be a finite number, got ${n}`)
    this.values.set(name, v + n)
    this.dirty.add(name)
    return true
  }

  /** Writes counter `name` if it changed since its last write (a failed write leaves it to the next). */
  async persist (name: string): Promise<void> {
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

/** `migratingFrom`: a migration from that version began and has not finished (it resumes at open). */
interface SchemaRecord { version: number, created: string, migratingFrom?: number }

/** @internal Test hooks of StateDb.open. */
export interface StateDbOpenOptions {
  /**
   * Called before each write of a schema migration with what it is about to write; a throw aborts
   * the open there (the database is closed), as a crash at that point would.
   */
  beforeMigrationWrite?: (what: string) => void
  /** Keys per delete batch of a migration (default 2048). */
  migrationSlice?: number
}

export class StateDb {
  readonly path: string
  /** Manifests by id, as files in `<dir>/manifests/` (manifest-files.ts); not part of batches. */
  readonly manifests: ManifestFiles
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
  private migrated: number | null = null

  private constructor (readonly dir: string, private readonly db: Level<string, unknown>) {
    this.path = db.location
    const guard = async <R>(p: Promise<R>): Promise<R> => await this.guard(p)
    const json = <V>(name: string): Sublevel<V> => db.sublevel<string, V>(name, { valueEncoding: 'json' }) as unknown as Sublevel<V>
    this.manifests = new ManifestFiles(join(dir, 'manifests'))
    this.manifestPatches = new KV(db.sublevel<string, Uint8Array>('manifest-patches', { valueEncoding: 'view' }) as unknown as Sublevel<Uint8Array>, guard)
    this.heads = new KV(json('heads'), guard)
    this.releases = new KV(json<ReleaseRecord>('releases'), guard)
    this.peers = new KV(json('peers'), guard)
    this.kv = new KV(json('kv'), guard)
    this.fleetReports = new KV(json('fleet-reports'), guard)
    this.fleetInventory = new KV(json('fleet-inventory'), guard)
    this.blobIndex = new BlobIndex(db.sublevel<string, Buffer>('blob-sets', { valueEncoding: 'buffer' }) as unknown as Sublevel<Buffer>, this)
    this.counters = new Counters(json('counters'), guard)
  }

  /**
   * Opens (creating if needed) `<dir>/state.ldb`, migrating an older schema first (see
   * `migratedFrom`). `options` are test hooks.
   */
  static async open (dir: string, options: StateDbOpenOptions = {}): Promise<StateDb> {
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
      await state.checkSchema(options)
    } catch (err) {
      await db.close()
      throw err
    }
    return state
  }

  /** The schema version this open migrated the database from, or null (it was current or new). */
  get migratedFrom (): number | null {
    return this.migrated
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

  private async checkSchema (options: StateDbOpenOptions): Promise<void> {
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
    const from = rec.version < STATE_SCHEMA_VERSION ? rec.version : rec.migratingFrom
    if (from === undefined) return
    if (from !== 1) throw new StateCorruptError(this.path, `unreadable schema record ${JSON.stringify(rec)}`)
    const created = typeof rec.created === 'string' ? rec.created : new Date().toISOString()
    if (rec.version < STATE_SCHEMA_VERSION) {
      // Marked before the first change: a shoal that reads only schema 1 then refuses this
      // database (StateSchemaError) instead of reading a half-deleted index.
      options.beforeMigrationWrite?.('schema marker')
      await this.guard(meta.put('schema', { version: STATE_SCHEMA_VERSION, created, migratingFrom: from }))
    }
    await this.migrate1to2(options)
    options.beforeMigrationWrite?.('schema')
    await this.guard(meta.put('schema', { version: STATE_SCHEMA_VERSION, created }))
    this.migrated = from
  }

  /**
   * Schema 1 → 2: the blob index moves from two keys per cid and release (`blob-by-cid`
   * `<cid>!<release>`, `blob-by-release` `<release>!<cid>`) to one sorted set per release
   * (`blob-sets`), and manifests move from the `manifests` sublevel to files. Each release's old keys are unioned into its set (so a re-run after a crash
   * anywhere ends complete: every set is whole before the first old key is deleted), then the old
   * keys are deleted in slices; the caller writes schema 2 last.
   */
  private async migrate1to2 (options: StateDbOpenOptions): Promise<void> {
    const utf8 = (name: string): Sublevel<string> => this.db.sublevel<string, string>(name, { valueEncoding: 'utf8' }) as unknown as Sublevel<string>
    const byCid = utf8('blob-by-cid')
    const byRelease = utf8('blob-by-release')
    const slice = options.migrationSlice ?? MIGRATION_SLICE

    // `<release>!<cid>` keys come in release order, a release's cids in hex order = byte order.
    let release: string | null = null
    let records = Buffer.allocUnsafe(64 * 1024)
    let n = 0
    const flush = async (): Promise<void> => {
      if (release === null) return
      const ops = await this.blobIndex.unionOps(release, records.subarray(0, n * CID_BYTES))
      if (ops.length > 0) {
        options.beforeMigrationWrite?.(`set ${release}`)
        await this.writeBatch(ops)
      }
    }
    for await (const key of byRelease.keys({})) {
      const bang = key.indexOf(SEP)
      const cid = key.slice(bang + 1)
      if (bang <= 0 || !CID_HEX.test(cid)) {
        throw new StateCorruptError(this.path, `schema 1 blob-by-release key ${JSON.stringify(key)} is not <release>!<64 hex>`)
      }
      if (release === null || bang !== release.length || !key.startsWith(release)) {
        await flush()
        release = key.slice(0, bang)
        n = 0
      }
      if ((n + 1) * CID_BYTES > records.length) {
        const grown = Buffer.allocUnsafe(records.length * 2)
        records.copy(grown, 0, 0, n * CID_BYTES)
        records = grown
      }
      records.write(cid, n * CID_BYTES, CID_BYTES, 'hex')
      n++
    }
    await flush()

    // Manifests leave LevelDB for files (manifest-files.ts), each synced before its key goes.
    const manifests = this.db.sublevel<string, Uint8Array>('manifests', { valueEncoding: 'view' }) as unknown as Sublevel<Uint8Array>
    for await (const [id, bytes] of manifests.iterator({})) {
      if (!/^[0-9a-f]{64}$/.test(id)) throw new StateCorruptError(this.path, `schema 1 manifests key ${JSON.stringify(id)} is not a manifest id (64 hex)`)
      options.beforeMigrationWrite?.(`manifest ${id.slice(0, 8)}`)
      await this.manifests.put(id, bytes, { durable: true })
    }

    for (const [name, sub] of [['manifests', manifests], ['blob-by-release', byRelease], ['blob-by-cid', byCid]] as const) {
      let dels: StateOp[] = []
      const drop = async (): Promise<void> => {
        options.beforeMigrationWrite?.(`delete ${dels.length} ${name}`)
        await this.writeBatch(dels)
        dels = []
      }
      for await (const key of sub.keys({})) {
        dels.push({ type: 'del', sublevel: sub, key })
        if (dels.length >= slice) await drop()
      }
      if (dels.length > 0) await drop()
    }
  }
}
