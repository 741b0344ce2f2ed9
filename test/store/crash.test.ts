// Crash safety with a real kill -9: a child node process runs the compiled store (dist/) writing
// blobs and state in a loop and is SIGKILLed at random moments; after each kill the store must
// reopen clean. Also: the state lock holds against another process.
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlobStore } from '../../src/store/blob-store.js'
import { PackStore } from '../../src/store/pack-store.js'
import { StateDb, StateLockedError } from '../../src/store/state-db.js'
import { cidFromHex } from '../../src/core/seal.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const MODULES = ['src/store/blob-store', 'src/store/pack-store', 'src/store/pack-io', 'src/store/state-db', 'src/store/fs-util', 'src/core/errors', 'src/core/seal']

/** True when some compiled module is missing or older than its source. */
async function distStale (): Promise<boolean> {
  for (const m of MODULES) {
    const src = await stat(join(root, `${m}.ts`))
    try {
      if ((await stat(join(root, 'dist', `${m}.js`))).mtimeMs < src.mtimeMs) return true
    } catch {
      return true
    }
  }
  return false
}

const CHILD = `
import { createHash, randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
const [dist, dir, mode] = process.argv.slice(2)
const { BlobStore } = await import(pathToFileURL(dist + '/src/store/blob-store.js').href)
const { StateDb } = await import(pathToFileURL(dist + '/src/store/state-db.js').href)
const db = await StateDb.open(dir)
if (mode === 'packs') {
  const { PackStore } = await import(pathToFileURL(dist + '/src/store/pack-store.js').href)
  const blobs = await PackStore.open(dir, { packMaxBytes: 256 * 1024 })
  process.stdout.write('ready\\n')
  async function worker () {
    for (let i = 0; ; i++) {
      const blob = randomBytes(1 + Math.floor(Math.random() * 64 * 1024))
      const cid = createHash('sha256').update(blob).digest()
      await blobs.put(cid, blob, { durable: Math.random() < 0.2 })
      await db.kv.put('blob:' + cid.toString('hex'), blob.length)
      await db.counters.add('written', 1)
      if (i % 3 === 2) {
        // forget first, then delete: a kill in between leaves an unrecorded blob, never a recorded hole
        await db.kv.del('blob:' + cid.toString('hex'))
        await blobs.delete(cid)
      }
    }
  }
  await Promise.all([worker(), worker(), worker()])
} else if (mode === 'hold') {
  process.stdout.write('ready\\n')
  setInterval(() => {}, 1000)
} else {
  const blobs = await BlobStore.open(dir)
  process.stdout.write('ready\\n')
  async function * chunks (blob) { for (let o = 0; o < blob.length; o += 16384) yield blob.subarray(o, o + 16384) }
  async function worker (streaming) {
    for (;;) {
      const blob = randomBytes(1 + Math.floor(Math.random() * 256 * 1024))
      const cid = createHash('sha256').update(blob).digest()
      if (streaming) await blobs.putStream(cid, blob.length, chunks(blob))
      else await blobs.put(cid, blob)
      await db.kv.put('blob:' + cid.toString('hex'), blob.length)
      await db.counters.add('written', 1)
    }
  }
  await Promise.all([worker(false), worker(false), worker(true)])
}
`

const WORKERS = 3
let work: string
let script: string
const children = new Set<ChildProcess>()

async function startChild (dir: string, mode: 'write' | 'packs' | 'hold'): Promise<ChildProcess> {
  const child = spawn(process.execPath, [script, join(root, 'dist'), dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let out = ''
  let err = ''
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`child not ready after 15 s: ${err}`)) }, 15_000)
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('ready\n')) { clearTimeout(timer); resolve() }
    })
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`child exited early (${code ?? signal}): ${err}`)) })
  })
  return child
}

async function kill9 (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) throw new Error('child died on its own before the kill')
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

async function tempFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  const blobs = join(dir, 'blobs')
  for (const prefix of await readdir(blobs)) {
    for (const name of await readdir(join(blobs, prefix))) if (name.includes('.tmp-')) out.push(`${prefix}/${name}`)
  }
  return out
}

beforeAll(async () => {
  if (await distStale()) {
    // Type errors elsewhere in the tree (others mid-edit) do not stop tsc from emitting.
    const r = await promisify(execFile)('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root }).catch((e: { stdout?: string }) => e)
    if (await distStale()) throw new Error(`could not build dist/ for the crash test: ${String(r.stdout ?? '').slice(0, 2000)}`)
  }
  work = await mkdtemp(join(tmpdir(), 'shoal-crash-'))
  script = join(work, 'child.mjs')
  await writeFile(script, CHILD)
})

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL')
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

describe('kill -9 while writing', () => {
  it('leaves only verified blobs, no temp files, and an intact state DB', async () => {
    const dir = join(work, 'state')
    let lastWritten = 0
    let tempsSeen = 0
    const rounds = 5
    for (let round = 1; round <= rounds; round++) {
      const child = await startChild(dir, 'write')
      await new Promise(resolve => setTimeout(resolve, 20 + Math.random() * 400))
      await kill9(child)
      tempsSeen += (await tempFiles(dir)).length

      const store = await BlobStore.open(dir)
      expect(await tempFiles(dir)).toEqual([])
      const { ok, removed } = await store.verifyAll()
      expect(removed).toBe(0)

      const db = await StateDb.open(dir)
      try {
        const written = await db.counters.get('written')
        let recorded = 0
        for await (const [key, size] of db.kv.entries({ gte: 'blob:', lt: 'blob;' })) {
          // Recorded in the DB only after put returned: the blob must be there, whole.
          expect(await store.size(cidFromHex(key.slice(5)))).toBe(size)
          recorded++
        }
        expect(written).toBeGreaterThanOrEqual(lastWritten)
        expect(written).toBeLessThanOrEqual(recorded)
        expect(recorded).toBeLessThanOrEqual(ok)
        // Each kill can strand at most one blob per worker between put and the DB writes.
        expect(ok - written).toBeLessThanOrEqual(WORKERS * round)
        lastWritten = written
      } finally {
        await db.close()
      }
    }
    expect(lastWritten).toBeGreaterThan(0)
    console.log(`crash test: ${rounds} kills, ${lastWritten} blobs recorded, ${tempsSeen} temp files left by the kills and removed at reopen`)
  })
})

describe('kill -9 while appending to packs', () => {
  it('every blob recorded before the kill is whole after it; the scan keeps verified entries only', async () => {
    const dir = join(work, 'packs')
    let recordedLast = 0
    let scanned = 0
    const rounds = 6
    for (let round = 1; round <= rounds; round++) {
      const child = await startChild(dir, 'packs')
      await new Promise(resolve => setTimeout(resolve, 50 + Math.random() * 500))
      await kill9(child)
      const store = await PackStore.open(dir, { packMaxBytes: 256 * 1024 })
      try {
        scanned += store.report.scanned
        expect(store.report.damaged).toEqual([])
        const db = await StateDb.open(dir)
        try {
          let recorded = 0
          for await (const [key, size] of db.kv.entries({ gte: 'blob:', lt: 'blob;' })) {
            expect(await store.size(cidFromHex(key.slice(5)))).toBe(size)
            expect((await store.get(cidFromHex(key.slice(5)), { verify: true }))?.byteLength).toBe(size)
            recorded++
          }
          expect(recorded).toBeLessThanOrEqual((await store.stats()).blobs)
          recordedLast = recorded
        } finally {
          await db.close()
        }
        expect((await store.verifyAll()).removed).toBe(0)
      } finally {
        await store.close()
      }
    }
    expect(recordedLast).toBeGreaterThan(0)
    expect(scanned).toBeGreaterThan(0)
    console.log(`pack crash test: ${rounds} kills, ${recordedLast} blobs recorded at the end, ${scanned} unsealed packs scanned at reopen`)
  })
})

describe('state lock across processes', () => {
  it('refuses to open a state DB another process holds, and opens it once that one is killed', async () => {
    const dir = join(work, 'locked')
    const holder = await startChild(dir, 'hold')
    const err = await StateDb.open(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StateLockedError)
    expect((err as Error).message).toContain(`another shoal daemon is using ${dir}`)
    await kill9(holder)
    const db = await StateDb.open(dir)
    await db.close()
  })
})
