// releaseSpec: a published release installed from a daemon's pack store, as the endpoint does it;
// an update reads unchanged chunks from the installed tree (InstallSpec.reuse) and must still give
// exactly the new release whatever happened to that tree: a file changed locally, a file turned
// into a FIFO or a symlink, the whole tree gone. A blob altered in the store fails the install.
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { cp, mkdir, open, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateKeyPair } from '../../src/core/keys.js'
import { decodeManifest, openPayload, type ManifestPayload, type SignedManifest } from '../../src/core/manifest.js'
import { cidFromHex, cidToHex } from '../../src/core/seal.js'
import { Installer } from '../../src/install/installer.js'
import { releaseSpec } from '../../src/install/release-source.js'
import { publishRelease } from '../../src/publish/publisher.js'
import { BlobStore, getEach, type BlobStorage, type BlobWant } from '../../src/store/blob-store.js'
import { PackStore } from '../../src/store/pack-store.js'
import { seededBytes, snapshot, tempDir } from './helpers.js'

interface Rel { manifest: SignedManifest, payload: ManifestPayload, input: string }
interface World { dir: string, packs: PackStore, installer: Installer, v1: Rel, v2: Rel }

const BIG = 640 * 1024
const SMALL = 24 * 1024

/** v1 and v2 published (v2: two regions of big.bin and one small file rewritten), every blob in a pack store. */
async function world (dir: string): Promise<World> {
  const in1 = join(dir, 'in1')
  const in2 = join(dir, 'in2')
  await mkdir(join(in1, 'small'), { recursive: true })
  await writeFile(join(in1, 'big.bin'), seededBytes('big', BIG))
  for (let i = 0; i < 5; i++) await writeFile(join(in1, 'small', `s${i}.bin`), seededBytes(`s${i}`, SMALL))
  await writeFile(join(in1, 'run.sh'), '#!/bin/sh\necho v\n', { mode: 0o755 })
  await symlink('small/s0.bin', join(in1, 'first'))
  await cp(in1, in2, { recursive: true, verbatimSymlinks: true })
  const f = await open(join(in2, 'big.bin'), 'r+')
  try {
    await f.write(randomBytes(40_000), 0, 40_000, 100_000)
    await f.write(randomBytes(30_000), 0, 30_000, 500_000)
  } finally { await f.close() }
  await writeFile(join(in2, 'small', 's3.bin'), randomBytes(SMALL))
  const contentKey = randomBytes(32)
  const common = { package: 'app', channel: 'stable', repoDir: join(dir, 'repo'), signers: [generateKeyPair()], contentKey, expires: new Date(Date.now() + 86400e3), deltaReleases: 0 }
  const repo = await BlobStore.open(common.repoDir)
  const packs = await PackStore.open(join(dir, 'state'))
  const rels: Rel[] = []
  try {
    for (const [version, input] of [['1.0.0', in1], ['2.0.0', in2]] as const) {
      const pub = await publishRelease({ ...common, input, version })
      const manifest = decodeManifest(await readFile(pub.manifestPath))
      for (const c of manifest.signed.chunks) {
        const blob = await repo.get(cidFromHex(c.cid))
        await packs.put(cidFromHex(c.cid), blob as Uint8Array, { durable: false })
      }
      rels.push({ manifest, payload: openPayload(manifest, contentKey), input })
    }
  } finally { await repo.close() }
  return { dir, packs, installer: new Installer(join(dir, 'state', 'apps')), v1: rels[0] as Rel, v2: rels[1] as Rel }
}

/** A blob store that counts the blobs read and can hand back one of them altered. */
function watched (inner: BlobStorage, alter?: string): BlobStorage & { reads: number } {
  const w = Object.create(inner) as BlobStorage & { reads: number }
  w.reads = 0
  w.getMany = async (wants: readonly BlobWant[]) => {
    w.reads += wants.length
    const got = await getEach(inner, wants)
    return got.map((b, i) => {
      if (b === null || cidToHex((wants[i] as BlobWant).cid) !== alter) return b
      const bad = Uint8Array.from(b)
      bad[bad.length >> 1]! ^= 0x01
      return bad
    })
  }
  return w
}

const fileChunks = (r: Rel): number => r.payload.files.reduce((n, f) => n + (f.chunks?.length ?? 0), 0)

describe('releaseSpec', () => {
  let w: World | undefined
  let cleanup: (() => Promise<void>) | undefined
  afterEach(async () => { await w?.packs.close(); w = undefined; await cleanup?.(); cleanup = undefined })

  async function installV1 (): Promise<World> {
    const t = await tempDir()
    cleanup = t.cleanup
    w = await world(t.dir)
    const r = await w.installer.install(releaseSpec({ manifest: w.v1.manifest, payload: w.v1.payload, blobs: w.packs }), { hookTimeoutMs: 10_000 })
    expect(r).toMatchObject({ status: 'installed', reused: 0, reuseFailed: 0 })
    expect(await snapshot(r.dir)).toEqual(await snapshot(w.v1.input))
    return w
  }

  async function installV2 (x: World, installedDir: string | null, blobs: BlobStorage = x.packs): Promise<Awaited<ReturnType<Installer['install']>>> {
    return await x.installer.install(releaseSpec({
      manifest: x.v2.manifest,
      payload: x.v2.payload,
      blobs,
      ...(installedDir !== null ? { installed: { dir: installedDir, payload: x.v1.payload } } : {})
    }), { hookTimeoutMs: 10_000 })
  }

  it('an update reads unchanged chunks from the installed tree: only the new chunks come from blobs', async () => {
    const x = await installV1()
    const blobs = watched(x.packs)
    const r = await installV2(x, x.installer.dirOf('app', '1.0.0'), blobs)
    // big.bin, run.sh and the four small files but s3.bin have chunks in v1
    expect(r).toMatchObject({ status: 'installed', previous: '1.0.0', reused: 6, reuseFailed: 0 })
    expect(await snapshot(r.dir)).toEqual(await snapshot(x.v2.input))
    const v1Keys = new Set(x.v1.payload.files.flatMap(f => (f.chunks ?? []).map(c => c.key)))
    const fresh = x.v2.payload.files.flatMap(f => f.chunks ?? []).filter(c => !v1Keys.has(c.key)).length
    expect(fresh).toBeGreaterThan(0)
    expect(blobs.reads).toBe(fresh)
    expect(blobs.reads).toBeLessThan(fileChunks(x.v2) / 2)
  })

  it('locally changed, truncated, FIFO and symlinked installed files: still exactly v2, from blobs where the guess failed', async () => {
    const x = await installV1()
    const old = x.installer.dirOf('app', '1.0.0')
    const big = await open(join(old, 'big.bin'), 'r+')
    try { await big.write(Buffer.from('local edit'), 0, 10, 300_000) } finally { await big.close() }
    await writeFile(join(old, 'small', 's1.bin'), 'short')
    await unlink(join(old, 'small', 's2.bin'))
    execFileSync('mkfifo', [join(old, 'small', 's2.bin')])
    await unlink(join(old, 'small', 's4.bin'))
    await symlink('/etc/passwd', join(old, 'small', 's4.bin'))
    const blobs = watched(x.packs)
    const r = await installV2(x, old, blobs)
    expect(r).toMatchObject({ status: 'installed', reused: 2, reuseFailed: 4 })
    expect(await snapshot(r.dir)).toEqual(await snapshot(x.v2.input))
    expect(blobs.reads).toBeGreaterThan(fileChunks(x.v2) / 2)
  })

  it('the installed tree gone: every file from blobs', async () => {
    const x = await installV1()
    const gone = join(x.dir, 'no-such-tree')
    const r = await installV2(x, gone)
    expect(r).toMatchObject({ status: 'installed', reused: 0, reuseFailed: 6 })
    expect(await snapshot(r.dir)).toEqual(await snapshot(x.v2.input))
    await rm(gone, { recursive: true, force: true })
  })

  it('a blob altered in the store fails its GCM tag: the install throws, v1 stays current and intact', async () => {
    const x = await installV1()
    const v1Keys = new Set(x.v1.payload.files.flatMap(f => (f.chunks ?? []).map(c => c.key)))
    const c = x.v2.payload.files.flatMap(f => f.chunks ?? []).find(c => !v1Keys.has(c.key))
    const cid = x.v2.manifest.signed.chunks[c?.index ?? -1]?.cid as string
    await expect(installV2(x, x.installer.dirOf('app', '1.0.0'), watched(x.packs, cid))).rejects.toMatchObject({ code: 'ERR_BLOB_AUTH' })
    expect(await x.installer.current('app')).toBe('1.0.0')
    expect(await x.installer.versions('app')).toEqual(['1.0.0'])
    expect(await snapshot(x.installer.dirOf('app', '1.0.0'))).toEqual(await snapshot(x.v1.input))
  })
})
