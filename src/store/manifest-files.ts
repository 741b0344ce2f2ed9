// Manifests as files: `<stateDir>/manifests/<id>` (docs/protocol.md §5.3), beside the state
// database rather than in it.
//
// A manifest is one large value (12.3 MB for a 1 GiB release) written once and read rarely.
// Stored in LevelDB it went through the write-ahead log, a memtable and then a flush and
// compaction on LevelDB's own thread: measured, 25–40 MB of the endpoint's RSS at the top of the
// manifest phase came from that, left in malloc's arenas after the values were gone
// (docs/bench-daemon.md, "Manifests out of LevelDB"). As a file it is one write and one rename.
//
// Same durability as the database it left: a write survives the process being killed (temp file,
// rename), not necessarily a power cut — the caller checks a manifest's bytes against its id
// before trusting them, and a missing or torn one is fetched again. Nothing is verified here: the
// store gives back what it was given, as LevelDB did (tests use that to play a lying seed).
import { mkdir, readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidArgumentError, OversizeError } from '../core/errors.js'
import { MAX_MANIFEST_BYTES } from '../core/manifest.js'
import { isNotFound, mapDiskFull, processAlive, readFileCapped, tempWriterPid, unlinkQuiet, writeFileAtomic } from './fs-util.js'

const ID = /^[0-9a-f]{64}$/

function checkId (id: string): void {
  if (typeof id !== 'string' || !ID.test(id)) throw new InvalidArgumentError(`a manifest id is 64 lowercase hex characters (its SHA-256), got ${JSON.stringify(id)}`)
}

export class ManifestFiles {
  private ready: Promise<void> | undefined

  constructor (readonly dir: string) {}

  private async made (): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true }).then(() => {})
    await this.ready
  }

  /** Manifest `id`'s bytes, or null when not held — or when the file is larger than any manifest (damage: fetched again). */
  async get (id: string): Promise<Uint8Array | null> {
    checkId(id)
    try {
      return await readFileCapped(join(this.dir, id), MAX_MANIFEST_BYTES, 'manifest')
    } catch (err) {
      if (isNotFound(err) || err instanceof OversizeError) return null
      throw err
    }
  }

  /** Stores `bytes` as manifest `id`, replacing any; `durable` also fsyncs it and the folder. */
  async put (id: string, bytes: Uint8Array, opts: { durable?: boolean } = {}): Promise<void> {
    checkId(id)
    await this.made().catch(err => mapDiskFull(err, this.dir, 'the manifests folder'))
    await writeFileAtomic(join(this.dir, id), bytes, { durable: opts.durable ?? false })
  }

  async del (id: string): Promise<void> {
    checkId(id)
    try {
      await unlink(join(this.dir, id))
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  async has (id: string): Promise<boolean> {
    checkId(id)
    try {
      await stat(join(this.dir, id))
      return true
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }

  /** Every manifest held, in id order; removes temp files that crashed writers left. */
  async * entries (): AsyncGenerator<[string, Uint8Array]> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch (err) {
      if (isNotFound(err)) return
      throw err
    }
    for (const name of names.sort()) {
      if (!ID.test(name)) {
        const pid = tempWriterPid(name)
        if (pid !== null && !processAlive(pid)) await unlinkQuiet(join(this.dir, name))
        continue
      }
      const bytes = await this.get(name)
      if (bytes !== null) yield [name, bytes]
    }
  }
}
