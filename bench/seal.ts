// Sealing throughput: the primitives on node:crypto vs @noble (why the hot path is OpenSSL), then
// sealChunk on one thread and SealPool on two, over 16 KiB chunks of mixed data (half text-like,
// which brotli shrinks, half random, which it cannot). All figures are MB/s of input.
//   node dist/bench/seal.js --bytes 67108864
import '../src/polyfills.js'
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { sha256 } from '@noble/hashes/sha2.js'
import { gcm } from '@noble/ciphers/aes.js'
import { sealChunk } from '../src/core/seal.js'
import { SealPool } from '../src/core/seal-pool.js'

const CHUNK = 16 * 1024
const PIECE = 1024 * 1024
/** @noble is 5–60× slower: it gets at most this much, so the bench stays short. */
const NOBLE_CAP = 8 * 1024 * 1024

function mbps (bytes: number, ms: number): number {
  return Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10
}

function time (fn: () => void): number {
  const t = performance.now()
  fn()
  return performance.now() - t
}

/** Text-like bytes (a word salad with code punctuation): compresses like source files do. */
function textLike (n: number, seed: number): Uint8Array {
  const words = ['export', 'function', 'const', 'return', 'import', 'from', 'await', 'this', 'shoal', 'chunk', 'length',
    'if', 'else', '{', '}', '(', ')', ';', '=>', '\n  ', '\n', 'undefined', 'Uint8Array', 'options']
  const out = new Uint8Array(n)
  let x = seed >>> 0
  let o = 0
  const enc = new TextEncoder()
  const encoded = words.map((w) => enc.encode(w + ' '))
  while (o < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const w = encoded[(x >>> 8) % encoded.length] as Uint8Array
    out.set(w.subarray(0, Math.min(w.length, n - o)), o)
    o += w.length
  }
  return out
}

/** 16 KiB chunks alternating text-like and random, `bytes` in all (rounded up to a chunk). */
function mixedChunks (bytes: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i * CHUNK < bytes; i++) out.push(i % 2 === 0 ? textLike(CHUNK, i + 1) : new Uint8Array(randomBytes(CHUNK)))
  return out
}

export async function benchSeal (opts: { bytes: number }): Promise<Record<string, number>> {
  const bytes = Math.max(CHUNK, Math.floor(opts.bytes))
  const data = new Uint8Array(randomBytes(Math.min(bytes, 64 * PIECE)))
  const pieces = (total: number, fn: (p: Uint8Array) => void): void => {
    for (let done = 0; done < total; done += PIECE) {
      const at = done % data.length
      fn(data.subarray(at, at + Math.min(PIECE, total - done, data.length - at)))
    }
  }
  const key = new Uint8Array(randomBytes(32))
  const nonce = new Uint8Array(12)
  const nobleBytes = Math.min(bytes, NOBLE_CAP)
  const r: Record<string, number> = {}

  r.nodeSha256 = mbps(bytes, time(() => { const h = createHash('sha256'); pieces(bytes, (p) => h.update(p)); h.digest() }))
  r.nobleSha256 = mbps(nobleBytes, time(() => { const h = sha256.create(); pieces(nobleBytes, (p) => h.update(p)); h.digest() }))
  r.nodeAesGcm = mbps(bytes, time(() => {
    const c = createCipheriv('aes-256-gcm', key, nonce)
    pieces(bytes, (p) => c.update(p))
    c.final()
  }))
  r.nobleAesGcm = mbps(nobleBytes, time(() => { pieces(nobleBytes, (p) => gcm(key, nonce).encrypt(p)) }))

  const chunks = mixedChunks(bytes)
  const total = chunks.length * CHUNK
  const contentKey = new Uint8Array(randomBytes(32))
  for (const c of chunks.slice(0, 32)) sealChunk(contentKey, c) // warm up brotli and OpenSSL
  let blobBytes = 0
  r.sealChunk = mbps(total, time(() => { for (const c of chunks) blobBytes += sealChunk(contentKey, c).blob.length }))
  r.blobRatio = Math.round((blobBytes / total) * 1000) / 1000

  const pool = new SealPool({ contentKey, threads: 2 })
  try {
    await Promise.all(chunks.slice(0, 32).map(async (c) => await pool.seal(Uint8Array.from(c))))
    // Copies made up front: the pool takes ownership of what it is given.
    const copies = chunks.map((c) => Uint8Array.from(c))
    const t = performance.now()
    // Submit like the publisher does: a bounded window of chunks in flight.
    const window: Array<Promise<unknown>> = []
    for (const c of copies) {
      window.push(pool.seal(c))
      if (window.length >= 32) await window.shift()
    }
    await Promise.all(window)
    r.sealPool2 = mbps(total, performance.now() - t)
  } finally {
    await pool.close()
  }
  return r
}

const LABELS: Record<string, string> = {
  nodeSha256: 'SHA-256, node:crypto',
  nobleSha256: 'SHA-256, @noble/hashes',
  nodeAesGcm: 'AES-256-GCM, node:crypto',
  nobleAesGcm: 'AES-256-GCM, @noble/ciphers',
  sealChunk: 'sealChunk, 1 thread, 16 KiB mixed',
  sealPool2: 'SealPool, 2 threads, 16 KiB mixed',
  blobRatio: 'blob bytes / input bytes (mixed)'
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--bytes')
  const bytes = i >= 0 ? Number(process.argv[i + 1]) : 32 * 1024 * 1024
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    console.error('usage: node dist/bench/seal.js [--bytes N]   (N > 0, default 33554432)')
    process.exit(2)
  }
  const r = await benchSeal({ bytes })
  console.log(`seal bench, ${bytes} bytes (@noble on ${Math.min(bytes, NOBLE_CAP)}), Node ${process.version}`)
  for (const [k, v] of Object.entries(r)) {
    console.log(`${(LABELS[k] ?? k).padEnd(38)} ${String(v).padStart(9)}${k === 'blobRatio' ? '' : ' MB/s'}`)
  }
}
