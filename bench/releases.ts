// Real consecutive releases nobody here wrote (npm packages, cached under bench/.cache): publish
// the old .tgz then the new one into one repo through the real publisher, and report the new blob
// bytes as % of the new .tgz, beside `zstd -19 --long=27 --patch-from=old.tar new.tar` when zstd
// is installed (chunk dedup alone is expected to trail it; delta blobs are issue 5).
import '../src/polyfills.js'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { publishRelease } from '../src/publish/publisher.js'
import { generateKeyPair } from '../src/core/keys.js'
import { RELEASE_PAIRS } from './chunk-params.js'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const CACHE = join(HERE, HERE.includes(`${sep}dist${sep}`) ? '../..' : '..', 'bench', '.cache', 'chunk-params')

function tgzOf (pkg: string, ver: string): string {
  mkdirSync(CACHE, { recursive: true })
  const tgz = join(CACHE, `${pkg}-${ver}.tgz`)
  if (!existsSync(tgz)) execFileSync('npm', ['pack', `${pkg}@${ver}`, '--pack-destination', CACHE], { stdio: 'ignore' })
  return tgz
}

function hasZstd (): boolean {
  try { execFileSync('zstd', ['--version'], { stdio: 'ignore' }); return true } catch { return false }
}

export async function benchReleases (): Promise<Array<Record<string, string | number>>> {
  const rows: Array<Record<string, string | number>> = []
  const zstd = hasZstd()
  for (const [pkg, a, b] of RELEASE_PAIRS) {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-rel-'))
    try {
      const oldTgz = tgzOf(pkg, a)
      const newTgz = tgzOf(pkg, b)
      // chunk dedup alone (deltas are on by default; bench/delta-releases.ts measures them)
      const common = { package: pkg, channel: 'stable', repoDir: join(dir, 'repo'), signers: [generateKeyPair()], contentKey: randomBytes(32), expires: new Date(Date.now() + 86400e3), deltaReleases: 0 }
      await publishRelease({ ...common, input: oldTgz, version: a })
      const r = await publishRelease({ ...common, input: newTgz, version: b })
      const tgzBytes = (await stat(newTgz)).size
      const row: Record<string, string | number> = {
        release: `${pkg} ${a}→${b}`,
        newTgzKB: Math.round(tgzBytes / 1e3),
        newBlobKB: Math.round(r.newBlobBytes / 10) / 100,
        pctOfTgz: Math.round(r.newBlobBytes / tgzBytes * 1000) / 10
      }
      if (zstd) {
        execFileSync('sh', ['-c', `gzip -dc '${oldTgz}' > '${dir}/old.tar' && gzip -dc '${newTgz}' > '${dir}/new.tar'`])
        execFileSync('zstd', ['-q', '-19', '--long=27', `--patch-from=${dir}/old.tar`, `${dir}/new.tar`, '-o', `${dir}/patch.zst`])
        const patch = (await stat(`${dir}/patch.zst`)).size
        row.zstdPatchKB = Math.round(patch / 10) / 100
        row.vsZstd = Math.round(r.newBlobBytes / patch * 10) / 10
      }
      rows.push(row)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  return rows
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.table(await benchReleases())
}
