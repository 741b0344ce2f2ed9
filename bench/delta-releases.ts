// Delta blobs through the real publisher on real consecutive npm releases (issue 5): publish the
// old .tgz then the new one into one repo with delta blobs, and report fetchBytesFromPrevious (the
// blob bytes an endpoint holding the old release fetches for the new one) ÷ the size of
// `zstd -19 --long=27 --patch-from=old.tar new.tar` (target ≤ 1.5), beside chunk dedup alone
// (the same publish with deltas off), the manifest growth, and the publish time of the new release
// with deltas ÷ without. Every delta blob is then opened and rebuilt against its base from the
// repo (rebuildChunks checks each chunk's key), so the figures are for deltas that work.
//   node dist/bench/delta-releases.js      (uses `npm pack`; tarballs cached in bench/.cache/)
import '../src/polyfills.js'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { publishRelease, type PublishResult } from '../src/publish/publisher.js'
import { generateKeyPair } from '../src/core/keys.js'
import { decodeManifest, openPayload, type FileChunk } from '../src/core/manifest.js'
import { cidFromHex, openBlob } from '../src/core/seal.js'
import { rebuildChunks, resolveDeltaBase, type HeldRelease } from '../src/core/delta-apply.js'
import { BlobStore } from '../src/store/blob-store.js'
import { DELTA_PAIRS } from './delta.js'

const HERE = fileURLToPath(new URL('.', import.meta.url))
// The cache bench/releases.ts and bench/delta.ts fill (same names: scoped packages as npm packs them).
const CACHE = join(HERE, HERE.includes(`${sep}dist${sep}`) ? '../..' : '..', 'bench', '.cache', 'chunk-params')

function tgzOf (pkg: string, ver: string): string {
  mkdirSync(CACHE, { recursive: true })
  const tgz = join(CACHE, `${pkg.replace(/^@/, '').replace('/', '-')}-${ver}.tgz`)
  if (!existsSync(tgz)) execFileSync('npm', ['pack', `${pkg}@${ver}`, '--pack-destination', CACHE], { stdio: 'ignore' })
  return tgz
}

async function loadRelease (repoDir: string, pkg: string, version: string, contentKey: Uint8Array): Promise<HeldRelease> {
  const m = decodeManifest(await readFile(join(repoDir, 'manifests', pkg, `${version}.json`)))
  return { version, chunks: m.signed.chunks, payload: openPayload(m, contentKey) }
}

async function open (blobs: BlobStore, cid: string, key: string, size: number): Promise<Uint8Array> {
  const c = cidFromHex(cid)
  const blob = await blobs.get(c)
  if (blob === null) throw new Error(`blob ${cid} missing from the repo`)
  return openBlob(blob, Buffer.from(key, 'hex'), { cid: c, plainSize: size })
}

/** Rebuilds every delta of `rel` against `old` from the repo's blobs; throws on the first failure. */
async function verifyDeltas (repoDir: string, rel: HeldRelease, old: HeldRelease, contentKey: Uint8Array): Promise<number> {
  const blobs = await BlobStore.open(repoDir)
  const chunkOf = new Map<number, FileChunk>()
  for (const f of rel.payload.files) for (const c of f.chunks ?? []) chunkOf.set(c.index, c)
  let n = 0
  try {
    for (const d of rel.payload.deltas ?? []) {
      const base = resolveDeltaBase(d.base, [old])
      if (base === undefined) throw new Error(`delta ${d.index}: base ${d.base.path} not found in ${old.version}`)
      const parts = await Promise.all(base.map(async b => await open(blobs, b.cid, b.key, b.size)))
      const plain = await open(blobs, (rel.chunks[d.index] as { cid: string }).cid, d.key, d.size)
      rebuildChunks(contentKey, plain, parts, d.targets.map(t => chunkOf.get(t) as FileChunk))
      n++
    }
  } finally {
    await blobs.close()
  }
  return n
}

async function publishPair (dir: string, pkg: string, a: string, b: string, deltaReleases: number): Promise<{ r: PublishResult, peakRssMB: number, old: HeldRelease, rel: HeldRelease, contentKey: Uint8Array, repoDir: string }> {
  const repoDir = join(dir, `repo-${deltaReleases}`)
  const contentKey = randomBytes(32)
  const common = { package: pkg.replace(/^@/, '').replace('/', '-'), channel: 'stable', repoDir, signers: [generateKeyPair()], contentKey, expires: new Date(Date.now() + 86400e3), deltaReleases }
  await publishRelease({ ...common, input: tgzOf(pkg, a), version: a })
  let peak = process.memoryUsage().rss
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 50)
  let r: PublishResult
  try {
    r = await publishRelease({ ...common, input: tgzOf(pkg, b), version: b })
  } finally {
    clearInterval(timer)
  }
  return { r, peakRssMB: Math.round(peak / 1e6), old: await loadRelease(repoDir, common.package, a, contentKey), rel: await loadRelease(repoDir, common.package, b, contentKey), contentKey, repoDir }
}

export async function benchDeltaReleases (opts: { pairs?: ReadonlyArray<readonly [string, string, string]> } = {}): Promise<Array<Record<string, string | number>>> {
  const rows: Array<Record<string, string | number>> = []
  for (const [pkg, a, b] of opts.pairs ?? DELTA_PAIRS) {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-delta-rel-'))
    try {
      const off = await publishPair(dir, pkg, a, b, 0)
      const on = await publishPair(dir, pkg, a, b, 2)
      const verified = await verifyDeltas(on.repoDir, on.rel, on.old, on.contentKey)
      const oldTgz = tgzOf(pkg, a)
      const newTgz = tgzOf(pkg, b)
      execFileSync('sh', ['-c', `gzip -dc '${oldTgz}' > '${dir}/old.tar' && gzip -dc '${newTgz}' > '${dir}/new.tar'`])
      execFileSync('zstd', ['-q', '-19', '--long=27', `--patch-from=${dir}/old.tar`, `${dir}/new.tar`, '-o', `${dir}/patch.zst`])
      const patch = (await stat(`${dir}/patch.zst`)).size
      const kb = (n: number): number => Math.round(n / 10) / 100
      rows.push({
        release: `${pkg} ${a}→${b}`,
        zstdPatchKB: kb(patch),
        dedupFetchKB: kb(off.r.fetchBytesFromPrevious),
        deltaFetchKB: kb(on.r.fetchBytesFromPrevious),
        dedupVsPatch: Math.round(off.r.fetchBytesFromPrevious / patch * 100) / 100,
        deltaVsPatch: Math.round(on.r.fetchBytesFromPrevious / patch * 100) / 100,
        deltaBlobs: on.r.deltaBlobs,
        deltasVerified: verified,
        manifestKB: kb(on.r.manifestBytes),
        manifestGrowthKB: kb(on.r.manifestBytes - off.r.manifestBytes),
        // Base chunks the deltas name by (release, path, range): listing each one's cid instead
        // would add ~68 B of JSON (~91 B once sealed in base64) per reference.
        baseChunkRefs: (on.rel.payload.deltas ?? []).reduce((n, d) => n + d.base.count, 0),
        publishSecs: Math.round(on.r.seconds * 100) / 100,
        publishSecsNoDelta: Math.round(off.r.seconds * 100) / 100,
        publishTimeRatio: Math.round(on.r.seconds / off.r.seconds * 10) / 10,
        peakRssMB: on.peakRssMB,
        peakRssMBNoDelta: off.peakRssMB
      })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  return rows
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.table(await benchDeltaReleases())
}
