// A real kill -9: a child node process runs the compiled installer in a loop and is SIGKILLed at
// seeded random moments. After each kill, recover() must leave `current` exactly the old tree or
// the new one, byte for byte, and nothing else on disk but complete versions.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Installer } from '../../src/install/installer.js'
import type { InstallFile } from '../../src/install/stage.js'
import { expectedSnapshot, snapshot, tempDir } from './helpers.js'
import { prng as mulberry32 } from '../../bench/scale.js'
// @ts-expect-error plain JS fixture shared with the child process, no type declarations
import { crashFiles, CRASH_PKG } from './fixtures/crash-tree.mjs'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const DIST_INSTALLER = join(REPO, 'dist/src/install/installer.js')
const CHILD = fileURLToPath(new URL('./fixtures/crash-child.mjs', import.meta.url))
const KILLS = 10
const SEED = Number(process.env.SHOAL_CRASH_SEED ?? 20240611)

async function newestMtime (dir: string, ext: string): Promise<number> {
  let newest = 0
  for (const n of await readdir(dir)) if (n.endsWith(ext)) newest = Math.max(newest, (await stat(join(dir, n))).mtimeMs)
  return newest
}

/** Build dist/ when the compiled installer is missing or older than its sources. */
async function ensureBuilt (): Promise<void> {
  const src = Math.max(await newestMtime(join(REPO, 'src/install'), '.ts'), (await stat(join(REPO, 'src/core/errors.ts'))).mtimeMs)
  const built = await newestMtime(join(REPO, 'dist/src/install'), '.js').catch(() => 0)
  if (built >= src) return
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'ignore' })
  } catch {
    // Type errors elsewhere in the tree (others are mid-edit) do not stop tsc from emitting.
  }
  if (await newestMtime(join(REPO, 'dist/src/install'), '.js').catch(() => 0) < src) throw new Error('tsc did not emit dist/src/install')
}

function expectedFor (n: number): Record<string, unknown> {
  return expectedSnapshot((crashFiles(n) as { files: InstallFile[] }).files)
}

describe('kill -9 during installs', () => {
  let root = ''
  let cleanup: (() => Promise<void>) | undefined
  let child: ChildProcess | undefined
  beforeAll(async () => {
    await ensureBuilt()
    const t = await tempDir()
    root = join(t.dir, 'apps')
    cleanup = t.cleanup
  })
  afterAll(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await cleanup?.()
  })

  it(`leaves the old or the new tree after each of ${KILLS} SIGKILLs (seed ${SEED})`, async () => {
    const rand = mulberry32(SEED)
    const inst = new Installer(root)
    let version = 0 // what `current` holds before each child starts (0: nothing)
    const outcomes: string[] = []
    for (let k = 0; k < KILLS; k++) {
      const c = spawn(process.execPath, [CHILD, pathToFileURL(DIST_INSTALLER).href, root], { stdio: ['ignore', 'pipe', 'pipe'] })
      child = c
      let out = ''
      let err = ''
      c.stdout.on('data', (b: Buffer) => { out += b.toString() })
      c.stderr.on('data', (b: Buffer) => { err += b.toString() })
      const exited = new Promise<NodeJS.Signals | null>(resolve => c.once('exit', (_code, sig) => resolve(sig)))
      while (!out.includes('ready\n')) {
        if (c.exitCode !== null) throw new Error(`child exited early: ${err}`)
        await sleep(5)
      }
      await sleep(Math.floor(rand() * 900))
      c.kill('SIGKILL')
      const sig = await exited
      expect(sig, `the child died on its own: ${err}`).toBe('SIGKILL')

      const confirmed = [...out.matchAll(/^installed (\d+)$/gm)].map(m => Number(m[1])).at(-1) ?? version
      const r = await inst.recover(CRASH_PKG)
      const cur = await inst.current(CRASH_PKG)
      const n = cur === null ? 0 : Number(cur.split('.')[0])
      // "installed n" is printed after install() returns, so a kill in between leaves n+1 current.
      expect([confirmed, confirmed + 1]).toContain(n)
      const pdir = join(root, CRASH_PKG)
      if (n === 0) {
        expect(cur).toBe(null)
      } else {
        expect(await snapshot(join(pdir, 'current') + '/'), `current = ${cur}`).toEqual(expectedFor(n))
      }
      // Only complete versions remain, each byte-identical to what was published.
      expect((await readdir(pdir).catch(() => [] as string[])).filter(x => x !== 'versions' && x !== 'current')).toEqual([])
      for (const v of await inst.versions(CRASH_PKG)) {
        expect(await snapshot(join(pdir, 'versions', v)), `versions/${v}`).toEqual(expectedFor(Number(v.split('.')[0])))
      }
      const vnames = await readdir(join(pdir, 'versions')).catch(() => [] as string[])
      expect(vnames.filter(x => !x.startsWith('.')).sort()).toEqual((await inst.versions(CRASH_PKG)).sort())
      outcomes.push(`${confirmed}→${n}${r.interrupted !== undefined ? ' (postinstall interrupted)' : ''}${r.removed.length > 0 ? ` removed ${r.removed.join(',')}` : ''}`)
      version = n
    }
    // What each kill hit varies with machine speed; printed so a run can be inspected.
    console.log(`kill -9 outcomes (seed ${SEED}):\n  ${outcomes.join('\n  ')}`)
  }, 120_000)
})
