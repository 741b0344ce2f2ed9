// The root a daemon trusts, and the chain it walked to get there (DESIGN §2, docs/protocol.md §1.4).
// Pinned at enrollment; replaced only by the next version signed by a threshold of the current
// root keys and of its own (core/root.ts). Every root held is kept by version, so a daemon can hand
// the chain to peers that are behind (announce op "root"). Components read `current` each time
// they verify, so a rotation takes effect at once without restarting the daemon.
import { encodeEnvelope } from '../core/signed.js'
import { decodeRoot, roleChanged, verifyRoot, verifyRootUpdate, type SignedRoot } from '../core/root.js'
import type { StateDb } from '../store/state-db.js'

interface StoredRoot { bytes: string /* base64 */ }

const CURRENT = 'root'
const byVersion = (v: number): string => `root/${v}`

export interface RootAdvance { root: SignedRoot, onlineChanged: boolean, publisherChanged: boolean }

export class TrustedRoot {
  private constructor (private readonly db: StateDb, private root: SignedRoot) {}

  /**
   * The pinned root in the state DB, or the enrollment's when it is newer (an operator who
   * re-enrolls a daemon with a newer root file trusts that file: it is local configuration, like
   * the first enrollment).
   */
  static async open (db: StateDb, enrolled: SignedRoot, now: Date, graceSeconds: number): Promise<TrustedRoot> {
    const stored = await db.kv.get(CURRENT) as StoredRoot | null
    let root = enrolled
    if (stored !== null) {
      const pinned = decodeRoot(Buffer.from(stored.bytes, 'base64'))
      if (pinned.signed.version >= enrolled.signed.version) root = pinned
    }
    verifyRoot(root, now, { graceSeconds })
    const t = new TrustedRoot(db, root)
    // (a state from before roots were kept by version has only the current one)
    if (root === enrolled || await t.bytesOf(root.signed.version) === null) await t.persist(root)
    return t
  }

  get current (): SignedRoot {
    return this.root
  }

  /** The root of `version` as held here (for peers walking the chain), or null. */
  async bytesOf (version: number): Promise<Uint8Array | null> {
    const rec = await this.db.kv.get(byVersion(version)) as StoredRoot | null
    return rec === null ? null : Buffer.from(rec.bytes, 'base64')
  }

  /**
   * One step of the chain: `bytes` must be version + 1, signed by a threshold of the current root
   * keys and of its own, unexpired. Persisted before it is used. Throws the typed error of the
   * check that failed (RollbackError, RootChainError, SignatureThresholdError, expiry, DecodeError).
   */
  async advance (bytes: Uint8Array, now: Date, graceSeconds: number): Promise<RootAdvance> {
    const next = decodeRoot(bytes)
    const old = this.root
    verifyRootUpdate(old, next, now, { graceSeconds })
    await this.persist(next)
    this.root = next
    return { root: next, onlineChanged: roleChanged(old, next, 'online'), publisherChanged: roleChanged(old, next, 'publisher') }
  }

  private async persist (root: SignedRoot): Promise<void> {
    const rec = { bytes: Buffer.from(encodeEnvelope(root)).toString('base64') } satisfies StoredRoot
    await this.db.batch([this.db.kv.putOp(byVersion(root.signed.version), rec), this.db.kv.putOp(CURRENT, rec)])
  }
}
