// Publish throughput and memory on generated data (half text-like, half random), beside
// `sha256sum` of the same files in the same run as the ceiling (targets: ≥ 0.4×, RSS ≤ 200 MB).
import '../src/polyfills.js'
import { mkdtemp, rm, mkdir } from 'node:fs/promises'
import { createWriteStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { publishRelease } from '../src/publish/publisher.js'
import { generateKeyPair } from '../src/core/keys.js'

const MiB = 1024 * 1024

async function writeData (path: string, bytes: number, seed: number): Promise<void> {
  const out = createWriteStream(path)
  const words = Buffer.from('function return const export import await chunk manifest peer blob seed shoal\n'.repeat(64))
  let written = 0
  let i = seed
  while (written < bytes) {
    const n = Math.min(MiB, bytes - written)
    // Alternate compressible and random megabytes: realistic mixed content.
    const piece = (i++ % 2 === 0) ? Buffer.concat([words, randomBytes(64)]).subarray(0, n) : randomBytes(n)
    const buf = piece.length >= n ? piece : Buffer.concat(Array(Math.ceil(n / piece.length)).fill(piece)).subarray(0, n)
    if (!out.write(buf)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
    written += n
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => { if (err != null) reject(err); else resolve() }))
}

export async function benchPublish (opts: { bytes: number }): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-publish-'))
  try {
    const input = join(dir, 'input')
    await mkdir(input)
    const files = Math.max(1, Math.round(opts.bytes / (64 * MiB)))
    for (let f = 0; f < files; f++) await writeData(join(input, `part-${f}.bin`), Math.floor(opts.bytes / files), f)
    const t0 = performance.now()
    execFileSync('sh', ['-c', `sha256sum ${input}/* > /dev/null`])
    const shaSecs = (performance.now() - t0) / 1000
    let peak = 0
    const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 50)
    const signer = generateKeyPair()
    const res = await publishRelease({
      input, package: 'bench', version: '1.0.0', channel: 'stable', repoDir: join(dir, 'repo'),
      signers: [signer], contentKey: randomBytes(32), expires: new Date(Date.now() + 86400e3)
    })
    clearInterval(timer)
    peak = Math.max(peak, process.memoryUsage().rss)
    const sha = opts.bytes / 1e6 / shaSecs
    return {
      inputMB: res.inputBytes / 1e6,
      publishMBps: res.mbPerSec,
      sha256sumMBps: sha,
      ratio: res.mbPerSec / sha,
      blobRatio: res.blobBytes / res.inputBytes,
      peakRssMB: peak / 1e6,
      chunks: res.chunks
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--bytes')
  const bytes = i >= 0 ? Number(process.argv[i + 1]) : 1024 * MiB
  console.table(await benchPublish({ bytes }))
}
