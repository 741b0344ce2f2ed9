// Chunker throughput against `sha256sum` over the same bytes (the ceiling the chunker must clear
// by 1.5×, since every chunk is hashed after it is cut). Half the data is text-like (as source
// trees are), half random; the chunker reads it from memory, FastCdc in 1 MiB pieces as the
// publisher streams a file, and chunkLengths over the whole buffer (the cut search alone).
//   node dist/bench/chunker.js [--bytes N]      (default 1 GiB)
import '../src/polyfills.js'
import { spawnSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { DEFAULT_CHUNKER_OPTIONS, FastCdc, chunkLengths } from '../src/core/chunker.js'

const MiB = 1024 * 1024
const PIECE = MiB
const RUNS = 3

export interface ChunkerBenchResult {
  name: string
  /** FastCdc.push over 1 MiB pieces, chunks copied out: what the publisher gets. */
  mbPerSec: number
  /** chunkLengths over the whole buffer: the cut search alone. */
  cutOnlyMbPerSec: number
  sha256sumMbPerSec: number
  /** mbPerSec / sha256sumMbPerSec. */
  ratio: number
  chunks: number
  avgChunk: number
}

/** Text-like bytes: words and code punctuation from a small vocabulary, picked by an LCG. */
function fillTextLike (out: Uint8Array, seed: number): void {
  const enc = new TextEncoder()
  const words = ['export', 'function', 'const', 'return', 'import', 'from', 'await', 'this', 'shoal', 'chunk', 'length',
    'if', 'else', '{', '}', '(', ')', ';', '=>', '\n  ', '\n', 'undefined', 'Uint8Array', 'options', 'value', 'index']
    .map((w) => enc.encode(w + ' '))
  let x = seed >>> 0
  let o = 0
  while (o < out.length) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const w = words[(x >>> 8) % words.length] as Uint8Array
    const n = Math.min(w.length, out.length - o)
    for (let k = 0; k < n; k++) out[o + k] = w[k] as number
    o += n
  }
}

/** `bytes` of data in 8 MiB stretches, alternately text-like and random. */
function makeData (bytes: number): Uint8Array {
  const data = new Uint8Array(bytes)
  const stretch = 8 * MiB
  for (let o = 0, i = 0; o < bytes; o += stretch, i++) {
    const part = data.subarray(o, Math.min(bytes, o + stretch))
    if (i % 2 === 0) fillTextLike(part, i + 1)
    else randomFillSync(part)
  }
  return data
}

function mbps (bytes: number, ms: number): number {
  return Math.round(bytes / 1e3 / ms)
}

function best (fn: () => void): number {
  let ms = Infinity
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now()
    fn()
    ms = Math.min(ms, performance.now() - t)
  }
  return ms
}

export async function benchChunker (opts: { bytes: number }): Promise<ChunkerBenchResult> {
  const bytes = Math.max(MiB, Math.floor(opts.bytes))
  const data = makeData(bytes)
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-chunker-'))
  try {
    const file = join(dir, 'data.bin')
    writeFileSync(file, data)
    const shaMs = best(() => {
      const r = spawnSync('sha256sum', [file], { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`sha256sum failed: ${r.error?.message ?? r.stderr}`)
    })

    let chunks = 0
    const cutMs = best(() => { chunks = chunkLengths(data, DEFAULT_CHUNKER_OPTIONS).length })
    const pushMs = best(() => {
      const cdc = new FastCdc(DEFAULT_CHUNKER_OPTIONS)
      let n = 0
      for (let o = 0; o < bytes; o += PIECE) n += cdc.push(data.subarray(o, o + PIECE)).length
      if (cdc.finish() !== null) n++
      if (n !== chunks) throw new Error(`FastCdc cut ${n} chunks, chunkLengths ${chunks}`)
    })

    const mbPerSec = mbps(bytes, pushMs)
    const sha256sumMbPerSec = mbps(bytes, shaMs)
    return {
      name: `FastCDC 2020, ${DEFAULT_CHUNKER_OPTIONS.minSize}/${DEFAULT_CHUNKER_OPTIONS.avgSize}/${DEFAULT_CHUNKER_OPTIONS.maxSize}`,
      mbPerSec,
      cutOnlyMbPerSec: mbps(bytes, cutMs),
      sha256sumMbPerSec,
      ratio: Math.round((mbPerSec / sha256sumMbPerSec) * 100) / 100,
      chunks,
      avgChunk: Math.round(bytes / chunks)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--bytes')
  const bytes = i >= 0 ? Number(process.argv[i + 1]) : 1024 * MiB
  if (!Number.isSafeInteger(bytes) || bytes < MiB) {
    console.error('usage: node dist/bench/chunker.js [--bytes N]   (N ≥ 1048576, default 1073741824)')
    process.exit(2)
  }
  const r = await benchChunker({ bytes })
  console.log(`chunker bench, ${bytes} bytes (half text-like, half random), best of ${RUNS}, Node ${process.version}`)
  console.log(`${r.name}: FastCdc.push ${r.mbPerSec} MB/s, cut search alone ${r.cutOnlyMbPerSec} MB/s`)
  console.log(`sha256sum: ${r.sha256sumMbPerSec} MB/s   ratio ${r.ratio}   chunks ${r.chunks}, average ${r.avgChunk} bytes`)
}
