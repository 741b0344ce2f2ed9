// A really full disk: a 1 MiB tmpfs (needs root to mount; skipped with the reason otherwise).
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlobStore, StorageFullError } from '../../src/store/blob-store.js'
import { StateDb } from '../../src/store/state-db.js'
import { PackStore } from '../../src/store/pack-store.js'
import { cidToHex } from '../../src/core/seal.js'

/** Byte equality without vitest's slow element-wise deep diff of large buffers. */
function sameBytes (a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && Buffer.compare(a, b) === 0
}

let mountPoint: string | undefined
let mounted = false
let skipReason: string | undefined

beforeAll(async () => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    skipReason = 'not running as root on Linux: cannot mount a small tmpfs'
    return
  }
  mountPoint = await mkdtemp(join(tmpdir(), 'shoal-full-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], { stdio: 'pipe' })
    mounted = true
  } catch (err) {
    skipReason = `mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?): ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`
  }
})

afterAll(async () => {
  if (mounted) execFileSync('umount', [mountPoint!], { stdio: 'pipe' })
  if (mountPoint !== undefined) await rm(mountPoint, { recursive: true, force: true })
})

function blobOf (n: number): { blob: Buffer, cid: Uint8Array } {
  const blob = randomBytes(n)
  return { blob, cid: new Uint8Array(createHash('sha256').update(blob).digest()) }
}

async function allFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const prefix of await readdir(dir)) {
    for (const name of await readdir(join(dir, prefix))) out.push(name)
  }
  return out
}

describe('full disk', () => {
  it('put throws StorageFullError, leaves no partial file, keeps earlier blobs readable', async (ctx) => {
    if (skipReason !== undefined) {
      console.log(`disk-full test skipped: ${skipReason}`)
      ctx.skip()
      return
    }
    const dir = join(mountPoint!, 'store')
    const store = await BlobStore.open(dir)
    const stored: Array<{ blob: Buffer, cid: Uint8Array }> = []
    let failed: { blob: Buffer, cid: Uint8Array } | undefined
    let error: unknown
    for (let i = 0; i < 40 && failed === undefined; i++) {
      const b = blobOf(100 * 1024)
      try {
        await store.put(b.cid, b.blob)
        stored.push(b)
      } catch (err) {
        failed = b
        error = err
      }
    }
    expect(failed).toBeDefined()
    expect(error).toBeInstanceOf(StorageFullError)
    expect((error as StorageFullError).code).toBe('ERR_DISK_FULL')
    expect((error as Error).message).toContain(dir)
    expect(stored.length).toBeGreaterThan(3)

    // Nothing partial: only the complete blobs, no temp file, the failed cid absent.
    expect(await store.has(failed!.cid)).toBe(false)
    const files = await allFiles(store.blobsDir)
    expect(files.sort()).toEqual(stored.map(b => cidToHex(b.cid).slice(2)).sort())
    for (const b of stored) expect(sameBytes(await store.get(b.cid, { verify: true }), b.blob)).toBe(true)

    // The streaming path fails the same way.
    const big = blobOf(300 * 1024)
    async function * chunks (): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < big.blob.length; o += 32 * 1024) yield big.blob.subarray(o, o + 32 * 1024)
    }
    await expect(store.putStream(big.cid, big.blob.length, chunks())).rejects.toBeInstanceOf(StorageFullError)
    expect((await allFiles(store.blobsDir)).length).toBe(stored.length)

    // No space leaked: freeing two blobs makes room for the one that failed.
    await store.delete(stored[0]!.cid)
    await store.delete(stored[1]!.cid)
    expect(await store.put(failed!.cid, failed!.blob)).toBe(true)
    expect(await store.verifyAll()).toEqual({ ok: stored.length - 1, removed: 0 })
    await rm(dir, { recursive: true })
  })

  it('a batch of appends that does not fit stores the blobs there is room for, and only those', async (ctx) => {
    if (skipReason !== undefined) {
      console.log(`disk-full test skipped: ${skipReason}`)
      ctx.skip()
      return
    }
    // its own 1 MiB disk: the other tests leave theirs in an unknown state
    const own = await mkdtemp(join(mountPoint!, '..', 'shoal-full-pack-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', own], { stdio: 'pipe' })
    try {
      const store = await PackStore.open(join(own, 'packs'))
      // 24 × 60 KiB put in one turn: one write of ~1.4 MiB that cannot fit
      const blobs = Array.from({ length: 24 }, () => blobOf(60 * 1024))
      const results = await Promise.allSettled(blobs.map(b => store.put(b.cid, b.blob)))
      const stored = blobs.filter((_, i) => results[i]!.status === 'fulfilled')
      const refused = results.filter(r => r.status === 'rejected').map(r => (r as PromiseRejectedResult).reason as unknown)
      expect(refused.length).toBeGreaterThan(0)
      for (const err of refused) expect(err).toBeInstanceOf(StorageFullError)
      expect(stored.length, 'blobs stored from the batch that did not fit').toBeGreaterThan(10)
      for (const b of stored) expect(sameBytes(await store.get(b.cid), b.blob)).toBe(true)
      await store.close()
      // and after a restart exactly those are there, none of the refused ones half-written
      const again = await PackStore.open(join(own, 'packs'))
      for (let i = 0; i < blobs.length; i++) expect(await again.has(blobs[i]!.cid), `blob ${i}`).toBe(results[i]!.status === 'fulfilled')
      for (const b of stored) expect(sameBytes(await again.get(b.cid), b.blob)).toBe(true)
      await again.close()
    } finally {
      execFileSync('umount', [own], { stdio: 'pipe' })
      await rm(own, { recursive: true, force: true })
    }
  })

  it('state DB writes on a full disk throw StorageFullError', async (ctx) => {
    if (skipReason !== undefined) {
      console.log(`disk-full test skipped: ${skipReason}`)
      ctx.skip()
      return
    }
    const dir = join(mountPoint!, 'db')
    const db = await StateDb.open(dir)
    try {
      let error: unknown
      for (let i = 0; i < 40 && error === undefined; i++) {
        try {
          await db.kv.put(`filler-${i}`, randomBytes(64 * 1024).toString('base64'))
        } catch (err) {
          error = err
        }
      }
      expect(error).toBeInstanceOf(StorageFullError)
      expect((error as StorageFullError).code).toBe('ERR_DISK_FULL')
    } finally {
      await db.close().catch(() => {})
    }
  })
})
