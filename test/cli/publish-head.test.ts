// `shoal publish --repo` signs the channel head into the repository (the origin layout,
// docs/protocol.md §3); `--refresh-head` re-signs it; a damaged head is refused, not overwritten.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile, cp, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeHead, verifyHead } from '../../src/core/head.js'
import { decodeRoot } from '../../src/core/root.js'
import { manifestId } from '../../src/core/manifest.js'
import { shoal } from '../helpers/cli.js'

let dir: string
const keys = (): string => join(dir, 'keys')
const repo = (): string => join(dir, 'repo')
const headFile = (): string => join(repo(), 'heads', 'stable.json')

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-cli-head-'))
  for (const v of [1, 2]) {
    await mkdir(join(dir, `v${v}`))
    await writeFile(join(dir, `v${v}`, 'VERSION'), `${v}\n`)
  }
  expect((await shoal(['keys', 'init', '--dir', keys()])).code).toBe(0)
})

afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

async function head (): Promise<ReturnType<typeof decodeHead>> {
  const h = decodeHead(await readFile(headFile()))
  verifyHead(h, decodeRoot(await readFile(join(keys(), 'root.json'))), new Date(), { expectChannel: 'stable' })
  return h
}

describe('shoal publish --repo: the channel head of an origin', () => {
  it('signs heads/<channel>.json naming each new release, with the given lifetime', async () => {
    const r1 = await shoal(['publish', join(dir, 'v1'), '--name', 'app', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--head-lifetime', '2d', '--json'])
    expect(r1.code, r1.stderr).toBe(0)
    const out1 = JSON.parse(r1.stdout) as { head: { seq: number, path: string }, manifestPath: string }
    expect(out1.head.seq).toBe(1)
    expect(out1.head.path).toBe(headFile())
    const h1 = await head()
    expect(h1.signed.packages.app).toEqual({ manifest: manifestId(await readFile(out1.manifestPath)), seq: 1, version: '1.0.0' })
    const life = Date.parse(h1.signed.expires) - Date.parse(h1.signed.issued)
    expect(life).toBe(2 * 86400_000)

    const r2 = await shoal(['publish', join(dir, 'v2'), '--name', 'app', '--version', '2.0.0', '--keys', keys(), '--repo', repo()])
    expect(r2.code, r2.stderr).toBe(0)
    expect(r2.stdout).toMatch(/channel stable head seq 2/)
    const h2 = await head()
    expect(h2.signed.seq).toBe(2)
    expect(h2.signed.packages.app?.version).toBe('2.0.0')
  })

  it('--refresh-head re-signs the same packages with a new seq and lifetime', async () => {
    const before = await head()
    const r = await shoal(['publish', '--refresh-head', '--repo', repo(), '--keys', keys(), '--head-lifetime', '12h', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const after = await head()
    expect(after.signed.seq).toBe(before.signed.seq + 1)
    expect(after.signed.packages).toEqual(before.signed.packages)
    expect(Date.parse(after.signed.expires) - Date.parse(after.signed.issued)).toBe(12 * 3600_000)
  })

  it('refuses to overwrite a head that does not verify (exit 3), and usage errors exit 2', async () => {
    const good = await readFile(headFile(), 'utf8')
    const at = good.indexOf('"sig":"') + 20
    await writeFile(headFile(), good.slice(0, at) + (good[at] === 'A' ? 'B' : 'A') + good.slice(at + 1))
    const r = await shoal(['publish', '--refresh-head', '--repo', repo(), '--keys', keys()])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/ERR_SIGNATURE_THRESHOLD/)
    await writeFile(headFile(), good)

    expect((await shoal(['publish', join(dir, 'v1'), '--refresh-head', '--repo', repo(), '--keys', keys()])).code).toBe(2)
    expect((await shoal(['publish', '--refresh-head', '--keys', keys()])).code).toBe(2)
    expect((await shoal(['publish', join(dir, 'v1'), '--keys', keys(), '--repo', repo()])).code).toBe(2) // no --name/--version
  })

  it('--no-head, or a keys folder without online.key, writes no head', async () => {
    const repo2 = join(dir, 'repo2')
    const r = await shoal(['publish', join(dir, 'v1'), '--name', 'app', '--version', '1.0.0', '--keys', keys(), '--repo', repo2, '--no-head'])
    expect(r.code, r.stderr).toBe(0)
    await expect(stat(join(repo2, 'heads', 'stable.json'))).rejects.toThrow()
    const keys2 = join(dir, 'keys-offline')
    await cp(keys(), keys2, { recursive: true })
    await unlink(join(keys2, 'online.key'))
    const repo3 = join(dir, 'repo3')
    const r3 = await shoal(['publish', join(dir, 'v1'), '--name', 'app', '--version', '1.0.0', '--keys', keys2, '--repo', repo3])
    expect(r3.code, r3.stderr).toBe(0)
    expect(r3.stdout).toMatch(/no channel head written/)
    await expect(stat(join(repo3, 'heads', 'stable.json'))).rejects.toThrow()
  })
})
