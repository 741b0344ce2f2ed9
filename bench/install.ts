// CPU of installing a downloaded release (docs/install.md, "Cost"), in one process: the swarm
// bench's shapes (bench/swarm.ts: 90 % of the bytes in 4 large random files, 10 % in 40 small
// ones; v2 rewrites two 5 % regions of each large file and every tenth small file) are published
// with the real publisher, their blobs put into a daemon's pack store, then v1 and v2 are
// installed by the real Installer from the spec the endpoint builds (src/install/release-source.ts).
// Reports wall and CPU time (process.cpuUsage: user + system, this process only) per install and
// per MiB. Nothing else runs in the process meanwhile, so CPU is the install's. v2 is installed
// twice over v1: from blobs only, then (after switching back to v1) reusing v1's tree.
//
//   npm run build && node dist/bench/install.js [--bytes N] [--in-order] [--cpu-prof DIR] [--keep]
// --cpu-prof profiles each install (node:inspector) into DIR/<v>.cpuprofile and prints the
// functions with the most self time.
import '../src/polyfills.js'
import { randomBytes } from 'node:crypto'
import { cp, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { generateKeyPair } from '../src/core/keys.js'
import { decodeManifest, openPayload } from '../src/core/manifest.js'
import { cidFromHex } from '../src/core/seal.js'
import { Installer } from '../src/install/installer.js'
import { releaseSpec } from '../src/install/release-source.js'
import { publishRelease } from '../src/publish/publisher.js'
import { BlobStore } from '../src/store/blob-store.js'
import { PackStore } from '../src/store/pack-store.js'
import { summarizeProfile } from './daemon.js'

const MiB = 1024 * 1024
const LARGE_FILES = 4
const SMALL_FILES = 40
const SMALL_SHARE = 0.10
const CHANGED = 0.10

export interface BenchInstallOptions { bytes: number, cpuProfDir?: string, keep?: boolean, inOrder?: boolean, log?: (l: string) => void }

async function writeRandom (path: string, bytes: number, at = 0, fh?: Awaited<ReturnType<typeof open>>): Promise<void> {
  const f = fh ?? await open(path, 'w')
  try {
    for (let off = 0; off < bytes; off += 4 * MiB) await f.write(randomBytes(Math.min(4 * MiB, bytes - off)), 0, Math.min(4 * MiB, bytes - off), at + off)
  } finally { if (fh === undefined) await f.close() }
}

async function makeTrees (dir: string, bytes: number): Promise<[string, string]> {
  const v1 = join(dir, 'in-v1')
  const v2 = join(dir, 'in-v2')
  await mkdir(join(v1, 'small'), { recursive: true })
  const small = Math.max(1, Math.floor(bytes * SMALL_SHARE / SMALL_FILES))
  const large = Math.ceil((bytes - small * SMALL_FILES) / LARGE_FILES)
  for (let i = 0; i < LARGE_FILES; i++) await writeRandom(join(v1, `large${i}.bin`), large)
  for (let i = 0; i < SMALL_FILES; i++) await writeRandom(join(v1, 'small', `s${String(i).padStart(2, '0')}.bin`), small)
  await cp(v1, v2, { recursive: true })
  for (let i = 0; i < LARGE_FILES; i++) {
    const region = Math.floor(large * CHANGED / 2)
    const f = await open(join(v2, `large${i}.bin`), 'r+')
    try {
      for (const half of [0, 1]) await writeRandom('', region, Math.floor(half * large / 2 + Math.random() * (large / 2 - region)), f)
    } finally { await f.close() }
  }
  for (let i = 0; i < SMALL_FILES; i += 10) await writeRandom(join(v2, 'small', `s${String(i).padStart(2, '0')}.bin`), small)
  return [v1, v2]
}

export async function benchInstall (opts: BenchInstallOptions): Promise<Array<Record<string, string | number>>> {
  const log = opts.log ?? (() => {})
  const work = await mkdtemp(join(tmpdir(), 'shoal-bench-install-'))
  try {
    const [in1, in2] = await makeTrees(work, opts.bytes)
    const contentKey = randomBytes(32)
    const common = { package: 'app', channel: 'stable', repoDir: join(work, 'repo'), signers: [generateKeyPair()], contentKey, expires: new Date(Date.now() + 86400e3), deltaReleases: 0 }
    const pubs = [
      await publishRelease({ ...common, input: in1, version: '1.0.0' }),
      await publishRelease({ ...common, input: in2, version: '2.0.0' })
    ]
    log(`published: ${pubs.map(p => `${p.version} ${p.chunks} chunks, ${(p.newBlobBytes / MiB).toFixed(1)} MiB new`).join('; ')}`)
    await rm(in1, { recursive: true })
    await rm(in2, { recursive: true })
    const repo = await BlobStore.open(common.repoDir)
    const packs = await PackStore.open(join(work, 'state'))
    const installer = new Installer(join(work, 'state', 'apps'))
    const rows: Array<Record<string, string | number>> = []
    try {
      let v1: { dir: string, payload: ReturnType<typeof openPayload> } | undefined
      const runs = [{ pub: pubs[0], label: 'v1' }, { pub: pubs[1], label: 'v2 from blobs' }, { pub: pubs[1], label: 'v2 reusing v1' }] as const
      for (const { pub: p, label } of runs) {
        if (p === undefined) continue
        const manifest = decodeManifest(await readFile(p.manifestPath))
        // what a download leaves: every blob of the release in the pack store, synced
        // in a shuffled order by default: a swarm's blobs land in no particular order, so a file's
        // chunks are spread over the packs (--in-order: as published, the best case for getMany)
        const table = [...manifest.signed.chunks]
        if (opts.inOrder !== true) for (let i = table.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [table[i], table[j]] = [table[j]!, table[i]!] }
        for (const c of table) {
          const cid = cidFromHex(c.cid)
          if (await packs.has(cid)) continue
          const blob = await repo.get(cid)
          if (blob === null) throw new Error(`blob ${c.cid} missing from the bench repo`)
          await packs.put(cid, blob, { durable: false, verified: true })
        }
        await packs.sync()
        const payload = openPayload(manifest, contentKey)
        if (label === 'v2 reusing v1') {
          // back to v1 as the installed version, v2 gone: the same update again, now with reuse
          await installer.activate('app', '1.0.0')
          await installer.prune('app', [])
        }
        const session = opts.cpuProfDir === undefined ? undefined : new Session()
        if (session !== undefined) {
          session.connect()
          await session.post('Profiler.enable')
          await session.post('Profiler.setSamplingInterval', { interval: 200 })
          await session.post('Profiler.start')
        }
        const spec = releaseSpec({ manifest, payload, blobs: packs, ...(label === 'v2 reusing v1' && v1 !== undefined ? { installed: v1 } : {}) })
        const cpu0 = process.cpuUsage()
        const t0 = performance.now()
        const res = await installer.install(spec, { hookTimeoutMs: 60_000 })
        const wall = performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        if (label === 'v1') v1 = { dir: res.dir, payload }
        const mib = res.bytes / MiB
        const row = {
          install: label,
          MiB: Math.round(mib * 10) / 10,
          files: res.files,
          chunks: manifest.signed.chunks.length,
          reused: res.reused,
          wall_s: Math.round(wall) / 1000,
          cpu_s: Math.round((cpu.user + cpu.system) / 1e3) / 1000,
          user_s: Math.round(cpu.user / 1e3) / 1000,
          sys_s: Math.round(cpu.system / 1e3) / 1000,
          cpu_ms_per_MiB: Math.round((cpu.user + cpu.system) / 1e3 / mib * 10) / 10
        }
        rows.push(row)
        log(`install ${label}: ${row.wall_s} s wall, ${row.cpu_s} s CPU (${row.user_s} user, ${row.sys_s} sys), ${row.cpu_ms_per_MiB} ms CPU per MiB; ${row.reused} files reused`)
        if (session !== undefined && opts.cpuProfDir !== undefined) {
          const { profile } = await session.post('Profiler.stop')
          session.disconnect()
          await mkdir(opts.cpuProfDir, { recursive: true })
          await writeFile(join(opts.cpuProfDir, `${label.replace(/ /g, '-')}.cpuprofile`), JSON.stringify(profile))
          const s = summarizeProfile(profile as unknown as Parameters<typeof summarizeProfile>[0], 0, 0, Infinity, 25)
          log(`profile ${label} (${(s.sampledMs / 1000).toFixed(2)} s sampled incl. idle):`)
          for (const r of s.top) log(`  ${r.ms.toFixed(0).padStart(6)} ms ${r.pct.toFixed(1).padStart(5)} %  ${r.fn}`)
        }
      }
      const st = await stat(installer.dirOf('app', '2.0.0'))
      if (!st.isDirectory()) throw new Error('v2 was not installed')
    } finally {
      await packs.close()
      await repo.close()
    }
    return rows
  } finally {
    if (opts.keep === true) log(`kept ${work}`)
    else await rm(work, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string): string | undefined => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined }
  const prof = arg('--cpu-prof')
  console.table(await benchInstall({
    bytes: Number(arg('--bytes') ?? 200 * MiB),
    ...(prof !== undefined ? { cpuProfDir: resolve(prof) } : {}),
    keep: process.argv.includes('--keep'),
    inOrder: process.argv.includes('--in-order'),
    log: (l) => { console.log(l) }
  }))
}
