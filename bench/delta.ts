// Delta codec on real consecutive releases (issue 5, docs/delta.md): each file of the new release
// is chunked with FastCDC as the publisher does; each chunk absent from the old release is sent
// either whole (brotli-5, as sealed today) or as a delta against old chunks of the same file
// (src/core/delta.ts: planDeltaBases picks the base, zstd with the base as dictionary encodes,
// the delta is kept only when clearly smaller). Reports the bytes an endpoint holding the old
// release fetches, beside `zstd -19 --long=27 --patch-from=old.tar new.tar` when zstd is installed,
// encode and decode speed, and the delta encode time ÷ the brotli time for the same chunks.
// Blob headers, sealing and manifest entries are not counted here (bench/releases.ts counts them).
//   node dist/bench/delta.js     (uses `npm pack`; tarballs cached in bench/.cache/)
import '../src/polyfills.js'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { brotliCompressSync, constants as zc } from 'node:zlib'
import { x as untar } from 'tar'
import { chunkLengths } from '../src/core/chunker.js'
import {
  chooseBaseFile, DeltaDecoder, DEFAULT_DELTA_OPTIONS, DELTA_HEADER_BYTES, zstdFrameOutputBound, DEFAULT_DELTA_PLAN_OPTIONS, DeltaEncoder, planDeltaBases, type DeltaChunkRef
} from '../src/core/delta.js'
import { RELEASE_PAIRS } from './chunk-params.js'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const CACHE = join(HERE, HERE.includes(`${sep}dist${sep}`) ? '../..' : '..', 'bench', '.cache', 'chunk-params')

/** The JS pairs of bench/releases.ts plus a native binary (esbuild's Go executable, ~9.6 MB). */
export const DELTA_PAIRS: ReadonlyArray<readonly [string, string, string]> = [
  ...RELEASE_PAIRS,
  ['@esbuild/linux-x64', '0.20.1', '0.20.2']
]

export interface DeltaBenchOptions {
  level?: number
  maxBaseBytes?: number
  pairs?: ReadonlyArray<readonly [string, string, string]>
}

function unpacked (pkg: string, ver: string): { tgz: string, root: string } {
  mkdirSync(CACHE, { recursive: true })
  const base = `${pkg.replace(/^@/, '').replace('/', '-')}-${ver}`
  const tgz = join(CACHE, `${base}.tgz`)
  if (!existsSync(tgz)) execFileSync('npm', ['pack', `${pkg}@${ver}`, '--pack-destination', CACHE], { stdio: 'ignore' })
  const root = join(CACHE, base)
  if (!existsSync(root)) {
    mkdirSync(root)
    untar({ file: tgz, cwd: root, sync: true })
  }
  return { tgz, root }
}

function listFiles (dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) out.push(relative(dir, p))
    }
  }
  walk(dir)
  return out.sort()
}

interface Chunk extends DeltaChunkRef { off: number }

function chunksOf (data: Uint8Array): Chunk[] {
  const out: Chunk[] = []
  let off = 0
  for (const length of chunkLengths(data)) {
    out.push({ key: createHash('sha256').update(data.subarray(off, off + length)).digest('hex'), length, off })
    off += length
  }
  return out
}

function brotli5 (c: Uint8Array): number {
  return Math.min(c.length, brotliCompressSync(c, { params: { [zc.BROTLI_PARAM_QUALITY]: 5, [zc.BROTLI_PARAM_SIZE_HINT]: c.length } }).length)
}

function zstdPatchBytes (oldTgz: string, newTgz: string): number | undefined {
  try { execFileSync('zstd', ['--version'], { stdio: 'ignore' }) } catch { return undefined }
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-delta-'))
  try {
    execFileSync('sh', ['-c', `gzip -dc '${oldTgz}' > '${dir}/old.tar' && gzip -dc '${newTgz}' > '${dir}/new.tar'`])
    execFileSync('zstd', ['-q', '-19', '--long=27', `--patch-from=${dir}/old.tar`, `${dir}/new.tar`, '-o', `${dir}/patch.zst`], { stdio: 'ignore' })
    return statSync(`${dir}/patch.zst`).size
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const kb = (n: number): number => Math.round(n / 10) / 100
const r2 = (n: number): number => Math.round(n * 100) / 100

export async function benchDelta (opts: DeltaBenchOptions = {}): Promise<Array<Record<string, string | number>>> {
  const level = opts.level ?? DEFAULT_DELTA_OPTIONS.level
  const maxBaseBytes = opts.maxBaseBytes ?? DEFAULT_DELTA_PLAN_OPTIONS.maxBaseBytes
  const rows: Array<Record<string, string | number>> = []
  for (const [pkg, a, b] of opts.pairs ?? DELTA_PAIRS) {
    const A = unpacked(pkg, a)
    const B = unpacked(pkg, b)
    const oldFiles = new Map<string, Uint8Array>()
    const oldChunks = new Map<string, Chunk[]>()
    const oldKeys = new Set<string>()
    for (const f of listFiles(A.root)) {
      const bytes = new Uint8Array(readFileSync(join(A.root, f)))
      const c = chunksOf(bytes)
      oldFiles.set(f, bytes)
      oldChunks.set(f, c)
      for (const x of c) oldKeys.add(x.key)
    }
    const oldSizes = new Map([...oldFiles].map(([f, v]) => [f, v.length]))
    const seen = new Set<string>()
    let newChunks = 0; let newBytes = 0; let fullBytes = 0; let sentBytes = 0; let deltas = 0
    let groupedBytes = 0; let groupedBlobs = 0
    let maxBound = 0; let deltaIn = 0; let decIn = 0; let encMs = 0; let decMs = 0; let brotliMs = 0; let maxBase = 0
    for (const f of listFiles(B.root)) {
      const bytes = new Uint8Array(readFileSync(join(B.root, f)))
      const nc = chunksOf(bytes)
      const basePath = chooseBaseFile(f, bytes.length, oldSizes)
      const oc = basePath !== undefined ? oldChunks.get(basePath)! : []
      const oldBytes = basePath !== undefined ? oldFiles.get(basePath)! : new Uint8Array(0)
      // Which chunks must be sent (absent from the old release, first occurrence) and their full size.
      const needed = new Map<number, number>()
      for (let i = 0; i < nc.length; i++) {
        const c = nc[i]!
        if (oldKeys.has(c.key) || seen.has(c.key)) continue
        seen.add(c.key)
        const t0 = performance.now()
        const full = brotli5(bytes.subarray(c.off, c.off + c.length))
        brotliMs += performance.now() - t0
        needed.set(i, full)
        newChunks++
        newBytes += c.length
        fullBytes += full
      }
      const inPlan = new Set<number>()
      // One plan at a time, so one encoder (tens of MiB of native tables at level 19) is live at once.
      for (const p of planDeltaBases(oc, nc, { maxBaseBytes })) {
        const ts = p.targets.filter(i => needed.has(i))
        if (ts.length === 0 || p.baseEnd === p.baseStart) continue
        for (const i of ts) inPlan.add(i)
        const base = oldBytes.subarray(oc[p.baseStart]!.off, oc[p.baseEnd - 1]!.off + oc[p.baseEnd - 1]!.length)
        maxBase = Math.max(maxBase, base.length)
        let t0 = performance.now()
        const enc = new DeltaEncoder(base, { level })
        encMs += performance.now() - t0
        const dec = new DeltaDecoder(base)
        for (const i of ts) {
          const t = bytes.subarray(nc[i]!.off, nc[i]!.off + nc[i]!.length)
          const full = needed.get(i)!
          t0 = performance.now()
          const d = enc.encode(t, { fullBytes: full })
          encMs += performance.now() - t0
          deltaIn += t.length
          if (d === null) { sentBytes += full; continue }
          t0 = performance.now()
          const back = dec.decode(d, t.length)
          decMs += performance.now() - t0
          decIn += t.length
          if (Buffer.compare(back, t) !== 0) throw new Error(`delta round trip failed: ${pkg} ${f} chunk ${i}`)
          deltas++
          maxBound = Math.max(maxBound, zstdFrameOutputBound(d.subarray(DELTA_HEADER_BYTES)))
          sentBytes += d.length
        }
        // The same plan as one delta: its needed chunks concatenated as one target.
        const full = ts.reduce((n, i) => n + needed.get(i)!, 0)
        const t = Buffer.concat(ts.map(i => bytes.subarray(nc[i]!.off, nc[i]!.off + nc[i]!.length)))
        const d = enc.encode(t, { fullBytes: full })
        if (d === null) { groupedBytes += full; await new Promise(resolve => setImmediate(resolve)); continue }
        if (Buffer.compare(dec.decode(d, t.length), t) !== 0) throw new Error(`grouped delta round trip failed: ${pkg} ${f}`)
        groupedBytes += d.length
        groupedBlobs++
        // Let the event loop turn, as the publisher does between chunks: libzstd's tables are freed
        // by finalizers that run only then (src/core/delta.ts, gcBallast).
        await new Promise(resolve => setImmediate(resolve))
      }
      for (const [i, full] of needed) if (!inPlan.has(i)) { sentBytes += full; groupedBytes += full }
    }
    const patch = zstdPatchBytes(A.tgz, B.tgz)
    const row: Record<string, string | number> = {
      release: `${pkg} ${a}→${b}`,
      node: process.version,
      level,
      maxBaseKiB: maxBaseBytes / 1024,
      newChunks,
      newKB: kb(newBytes),
      fullKB: kb(fullBytes),
      deltasUsed: deltas,
      withDeltaKB: kb(sentBytes),
      groupedDeltas: groupedBlobs,
      groupedKB: kb(groupedBytes)
    }
    if (patch !== undefined) {
      row.zstdPatchKB = kb(patch)
      row.fullVsZstd = r2(fullBytes / patch)
      row.deltaVsZstd = r2(sentBytes / patch)
      row.groupedVsZstd = r2(groupedBytes / patch)
    }
    row.encodeMBs = r2(deltaIn / 1e3 / Math.max(encMs, 1e-3))
    row.decodeMBs = r2(decIn / 1e3 / Math.max(decMs, 1e-3))
    row.encodeVsBrotli = r2((encMs + brotliMs) / Math.max(brotliMs, 1e-3))
    row.maxBaseKB = kb(maxBase)
    row.maxFrameBoundKB = kb(maxBound)
    row.peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024)
    rows.push(row)
  }
  return rows
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string): string | undefined => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined }
  const level = arg('--level')
  const maxBase = arg('--max-base-kib')
  console.table(await benchDelta({
    ...(level !== undefined ? { level: Number(level) } : {}),
    ...(maxBase !== undefined ? { maxBaseBytes: Number(maxBase) * 1024 } : {})
  }))
}
