// The control records a daemon has accepted, per package, in its state database (docs/rollout.md
// §3, docs/protocol.md §5.3 key `records/<package>`). The seed keeps them to serve and push; an
// endpoint keeps them to decide whether its ring may install. Every record is decoded, verified
// against the pinned root and replay-checked on the way in; what is stored is only the exact
// signed bytes, so a reader can always verify them again.
import type { SignedRoot } from '../core/root.js'
import { RollbackError } from '../core/signed.js'
import type { StateDb } from '../store/state-db.js'
import { applyRecords, checkRecordAdvance, decodeRecord, recordId, verifyRecord, type ReleaseControl, type SignedRecord } from './records.js'

/** Records kept per package; the oldest go first (a package's old releases are long superseded by then). */
export const MAX_RECORDS_PER_PACKAGE = 256

interface StoredRecords { records: string[] /* base64 of the canonical bytes, in seq order */ }

export interface AcceptedRecord { outcome: 'new' | 'same', record: SignedRecord, bytes: Uint8Array, id: string }

const keyOf = (pkg: string): string => `records/${pkg}`

export class RecordStore {
  /** Accepts run one at a time: read, check, append, write. */
  private tail: Promise<unknown> = Promise.resolve()

  /** `root`: the trusted root, or a getter of it when the daemon may rotate it while running. */
  constructor (private readonly db: StateDb, private readonly root: SignedRoot | (() => SignedRoot), private readonly graceSeconds: number) {}

  /**
   * Decodes, verifies (publisher threshold, root and record unexpired) and replay-checks `bytes`
   * against what this store holds for the package: a record already held is 'same'; a newer seq
   * is stored ('new'); anything else is RollbackError. Throws the typed error of the check that failed.
   */
  async accept (bytes: Uint8Array, now: Date): Promise<AcceptedRecord> {
    const record = decodeRecord(bytes)
    const id = recordId(bytes)
    const run = async (): Promise<AcceptedRecord> => {
      const held = await this.load(record.signed.package)
      if (held.some(b => Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(bytes))) return { outcome: 'same', record, bytes, id }
      // Only now the signatures: a record already held needs no second verification (it may have expired since).
      verifyRecord(record, typeof this.root === 'function' ? this.root() : this.root, now, { graceSeconds: this.graceSeconds })
      const last = held.at(-1)
      const outcome = checkRecordAdvance(last === undefined ? null : decodeRecord(last).signed, record.signed)
      if (outcome === 'same') throw new RollbackError(`control record seq ${record.signed.seq} is held in another spelling`)
      const next = [...held, bytes].slice(-MAX_RECORDS_PER_PACKAGE)
      await this.db.kv.put(keyOf(record.signed.package), { records: next.map(b => Buffer.from(b).toString('base64')) } satisfies StoredRecords)
      return { outcome, record, bytes, id }
    }
    const p = this.tail.then(run)
    this.tail = p.catch(() => {})
    return await p
  }

  /** The held records of `pkg`, as signed, in seq order. */
  async load (pkg: string): Promise<Uint8Array[]> {
    const stored = await this.db.kv.get(keyOf(pkg)) as StoredRecords | null
    return stored === null ? [] : stored.records.map(b => Buffer.from(b, 'base64'))
  }

  /** The highest seq held for `pkg` (0 when none): the publisher's next record takes one more. */
  async lastSeq (pkg: string): Promise<number> {
    const last = (await this.load(pkg)).at(-1)
    return last === undefined ? 0 : decodeRecord(last).signed.seq
  }

  /** What the held records say about one release: promoted rings, halted, rollback target. */
  async control (pkg: string, version: string): Promise<ReleaseControl> {
    return applyRecords((await this.load(pkg)).map(b => decodeRecord(b).signed), { package: pkg, version })
  }
}
