// Evidence for the chunk-size default: for real consecutive npm releases, how many bytes an
// endpoint holding the old version must fetch for the new one under chunk dedup alone, at
// average chunk sizes 8, 16 and 32 KiB (min = avg / 4, max = avg × 4, as in the default).
// Each file of the unpacked package is chunked on its own, as the publisher does. "New" chunks
// are the distinct chunks of the new version absent from the old one; each is counted once,
// as plaintext and as brotli-5 (per chunk, kept raw when brotli does not shrink it).
// The manifest column estimates the chunk table every endpoint fetches whole: 72 bytes a chunk
// (32-byte cid, 32-byte chunk key, ~8 bytes of size and framing), before compression.
// A last row per package chunks the .tgz files as bytes, to show why shoal unpacks first.
//   node dist/bench/chunk-params.js     (uses `npm pack`; tarballs cached in bench/.cache/)
import '../src/polyfills.js'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { brotliCompressSync, constants as zc } from 'node:zlib'
import { x as untar } from 'tar'
import { FastCdc, type ChunkerOptions } from '../src/core/chunker.js'

// bench/ in the source tree, dist/bench/ once built: the cache is the source tree's bench/.cache.
const HERE = fileURLToPath(new URL('.', import.meta.url))
const CACHE = join(HERE, HERE.includes(`${sep}dist${sep}`) ? '../..' : '..', 'bench', '.cache', 'chunk-params')
const MANIFEST_BYTES_PER_CHUNK = 72

export const RELEASE_PAIRS: ReadonlyArray<readonly [string, string, string]> = [
  ['typescript', '5.4.4', '5.4.5'],
  ['three', '0.162.0', '0.163.0'],
  ['lodash', '4.17.20', '4.17.21']
]
export const AVG_SIZES = [8192, 16384, 32768] as const

interface Version { tgz: string, tgzBytes: number, root: string }

export interface ParamRow {
  pkg: string
  from: string
  to: string
  /** Average chunk size, or 'tgz' for the .tgz chunked as bytes (16 KiB average). */
  avg: number | 'tgz'
  unpackedBytes: number
  tgzBytes: number
  chunks: number
  newChunks: number
  newBytes: number
  newBrotliBytes: number
  manifestBytes: number
}

/** `npm pack` into the cache once, then unpack next to it. */
function fetchVersion (pkg: string, ver: string): Version {
  mkdirSync(CACHE, { recursive: true })
  const tgz = join(CACHE, `${pkg}-${ver}.tgz`)
  if (!existsSync(tgz)) execFileSync('npm', ['pack', `${pkg}@${ver}`, '--pack-destination', CACHE], { stdio: 'ignore' })
  const root = join(CACHE, `${pkg}-${ver}`)
  if (!existsSync(root)) {
    mkdirSync(root)
    untar({ file: tgz, cwd: root, sync: true })
  }
  return { tgz, tgzBytes: statSync(tgz).size, root }
}

/** Every regular file under `dir`, in a fixed order (sorted relative paths). */
function listFiles (dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) out.push(p)
    }
  }
  walk(dir)
  return out.sort((a, b) => (relative(dir, a) < relative(dir, b) ? -1 : 1))
}

function chunksOf (data: Uint8Array, opts: ChunkerOptions): Uint8Array[] {
  const cdc = new FastCdc(opts)
  const out = cdc.push(data)
  const tail = cdc.finish()
  if (tail !== null) out.push(tail)
  return out
}

/** Chunks of each file on its own, keyed by SHA-256 (distinct chunks only). */
function chunkSet (files: Uint8Array[], opts: ChunkerOptions): { all: number, byDigest: Map<string, Uint8Array> } {
  const byDigest = new Map<string, Uint8Array>()
  let all = 0
  for (const f of files) {
    for (const c of chunksOf(f, opts)) {
      all++
      byDigest.set(createHash('sha256').update(c).digest('hex'), c)
    }
  }
  return { all, byDigest }
}

function brotli5 (c: Uint8Array): number {
  const z = brotliCompressSync(c, {
    params: { [zc.BROTLI_PARAM_QUALITY]: 5, [zc.BROTLI_PARAM_SIZE_HINT]: c.length }
  })
  return Math.min(z.length, c.length)
}

function compare (pkg: string, from: string, to: string, avg: ParamRow['avg'], oldFiles: Uint8Array[], newFiles: Uint8Array[],
  unpackedBytes: number, tgzBytes: number): ParamRow {
  const a = avg === 'tgz' ? 16384 : avg
  const opts = { minSize: a / 4, avgSize: a, maxSize: a * 4 }
  const old = chunkSet(oldFiles, opts)
  const cur = chunkSet(newFiles, opts)
  let newChunks = 0
  let newBytes = 0
  let newBrotliBytes = 0
  for (const [d, c] of cur.byDigest) {
    if (old.byDigest.has(d)) continue
    newChunks++
    newBytes += c.length
    newBrotliBytes += brotli5(c)
  }
  return {
    pkg, from, to, avg, unpackedBytes, tgzBytes, chunks: cur.all, newChunks, newBytes, newBrotliBytes,
    manifestBytes: cur.all * MANIFEST_BYTES_PER_CHUNK
  }
}

export function measureChunkParams (): ParamRow[] {
  const rows: ParamRow[] = []
  for (const [pkg, from, to] of RELEASE_PAIRS) {
    const a = fetchVersion(pkg, from)
    const b = fetchVersion(pkg, to)
    const oldFiles = listFiles(a.root).map((p) => new Uint8Array(readFileSync(p)))
    const newFiles = listFiles(b.root).map((p) => new Uint8Array(readFileSync(p)))
    const unpacked = newFiles.reduce((n, f) => n + f.length, 0)
    for (const avg of AVG_SIZES) rows.push(compare(pkg, from, to, avg, oldFiles, newFiles, unpacked, b.tgzBytes))
    const tgzOld = [new Uint8Array(readFileSync(a.tgz))]
    const tgzNew = [new Uint8Array(readFileSync(b.tgz))]
    rows.push(compare(pkg, from, to, 'tgz', tgzOld, tgzNew, unpacked, b.tgzBytes))
  }
  return rows
}

function pct (n: number, of: number): string {
  return `${((n / of) * 100).toFixed(1)} %`
}

export function formatRows (rows: ParamRow[]): string {
  const head = '| release | avg | chunks | new chunks | new plain, % unpacked | new plain, % .tgz | new brotli-5, % unpacked | new brotli-5, % .tgz | brotli-5 + manifest est., % .tgz |'
  const lines = [head, '|---|---|--:|--:|--:|--:|--:|--:|--:|']
  for (const r of rows) {
    const avg = r.avg === 'tgz' ? '.tgz as bytes (16 KiB)' : `${r.avg / 1024} KiB`
    const release = `${r.pkg} ${r.from} → ${r.to}`
    lines.push(`| ${release} | ${avg} | ${r.chunks} | ${r.newChunks} | ${pct(r.newBytes, r.unpackedBytes)} | ${pct(r.newBytes, r.tgzBytes)} | ` +
      `${pct(r.newBrotliBytes, r.unpackedBytes)} | ${pct(r.newBrotliBytes, r.tgzBytes)} | ${pct(r.newBrotliBytes + r.manifestBytes, r.tgzBytes)} |`)
  }
  const sizes = [...new Map(rows.map((r) => [`${r.pkg} ${r.to}`, r])).values()]
    .map((r) => `${r.pkg} ${r.to}: ${(r.unpackedBytes / 1e6).toFixed(2)} MB unpacked, ${(r.tgzBytes / 1e6).toFixed(2)} MB .tgz`)
  lines.push('', ...sizes)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(formatRows(measureChunkParams()))
}
