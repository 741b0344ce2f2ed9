// Attacks of issue 7 mounted against real daemons on loopback (one process, real libp2p, LevelDB,
// installs). Only attacks whose code is on main live here; the rest are listed in docs/security.md.
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { Fleet, installedVersion, makeTree, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

/** Every regular file under `dir` (LevelDB tables and logs, blobs, keys…) whose bytes contain one of `needles`. */
async function filesContaining (dir: string, needles: readonly Buffer[]): Promise<string[]> {
  const hits: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    const bytes = await readFile(path)
    if (needles.some(n => bytes.includes(n))) hits.push(path)
  }
  return hits
}

describe('outsiders and fleet peers without the content key', () => {
  it('the seed holds no plaintext of a published file, nor its name: its whole state dir is searched', async () => {
    fleet = await Fleet.create('attack-seed-plaintext')
    const seed = await fleet.startSeed()
    const ep = await fleet.startEndpoint('e1')
    const tree = await makeTree(join(fleet.dir, 'src'), 1)
    // a marker unlikely anywhere by chance, in a file's contents and in a file's name
    const marker = `shoal-plaintext-marker-${randomBytes(16).toString('hex')}`
    const fileName = `secret-${randomBytes(8).toString('hex')}.txt`
    await writeFile(join(tree, 'lib', fileName), `config\n${marker}\nend\n`)
    await writeFile(join(tree, 'lib', 'plain.txt'), `${marker}\n`.repeat(3))
    const p = await fleet.publish(tree, '1.0.0')
    await fleet.push(p.manifestPath)
    await until(async () => await installedVersion(ep) === '1.0.0', 60_000, 'v1 installed')

    const needles = [Buffer.from(marker), Buffer.from(fileName)]
    // the search can find them: the endpoint, which holds the content key, has both on disk
    expect((await filesContaining(ep.cfg.stateDir, needles)).length).toBeGreaterThan(0)
    // the seed has every blob and the manifest, yet neither the marker nor the file name
    expect((await seed.status()).role).toBe('seed')
    const seedFiles = await readdir(seed.cfg.stateDir, { recursive: true })
    expect(seedFiles.some(f => f.includes('blobs'))).toBe(true)
    expect(await filesContaining(seed.cfg.stateDir, needles)).toEqual([])
  }, 120_000)
})
