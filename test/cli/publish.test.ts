// The offline publisher's whole path through the real CLI: keys init → publish v1 → publish v2
// (only changed bytes are new) → verify → extract byte-identical; tampering is refused.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, mkdir, writeFile, rm, symlink, chmod, readFile, stat, cp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import * as tar from 'tar'
import { shoal } from '../helpers/cli.js'
import { prng, snapshot, textLike } from '../helpers/tree.js'
import { decodeManifest } from '../../src/core/manifest.js'

let dir: string
const keys = (): string => join(dir, 'keys')
const repo = (): string => join(dir, 'repo')

async function makeV1 (root: string): Promise<void> {
  await mkdir(join(root, 'bin'), { recursive: true })
  await mkdir(join(root, 'lib', 'deep', 'er'), { recursive: true })
  await mkdir(join(root, 'empty'))
  await writeFile(join(root, 'bin', 'tool'), '#!/bin/sh\necho hello\n')
  await chmod(join(root, 'bin', 'tool'), 0o755)
  await writeFile(join(root, 'lib', 'bundle.js'), textLike(1, 3_000_000))
  await writeFile(join(root, 'lib', 'native.bin'), prng(2)(1_500_000))
  await writeFile(join(root, 'lib', 'deep', 'er', 'small.txt'), 'small file\n')
  await writeFile(join(root, 'lib', 'empty.txt'), '')
  await writeFile(join(root, 'README'), 'v1 readme\n')
  await chmod(join(root, 'README'), 0o600)
  await symlink('lib/bundle.js', join(root, 'main.js'))
}

async function makeV2 (from: string, root: string): Promise<void> {
  await cp(from, root, { recursive: true, verbatimSymlinks: true })
  const bundle = await readFile(join(root, 'lib', 'bundle.js'))
  // A few edits in a big file: an insertion near the start, a replacement in the middle.
  const edited = Buffer.concat([bundle.subarray(0, 1000), Buffer.from('/* patched */'), bundle.subarray(1000, 1_500_000), Buffer.from('X'.repeat(40)), bundle.subarray(1_500_040)])
  await writeFile(join(root, 'lib', 'bundle.js'), edited)
  await writeFile(join(root, 'README'), 'v2 readme\n')
  await writeFile(join(root, 'lib', 'new.txt'), 'added in v2\n')
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-cli-'))
  await makeV1(join(dir, 'v1'))
  await makeV2(join(dir, 'v1'), join(dir, 'v2'))
  const r = await shoal(['keys', 'init', '--dir', keys(), '--json'])
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('shoal keys init', () => {
  it('writes the root, keys with mode 0600 and both enrollment bundles', async () => {
    for (const f of ['root.json', 'root-1.key', 'publisher-1.key', 'online.key', 'fleet.secret', 'enroll.json', 'seed-enroll.json']) {
      const st = await stat(join(keys(), f))
      expect(st.isFile()).toBe(true)
      if (f !== 'root.json') expect(st.mode & 0o777).toBe(0o600)
    }
    const seed = JSON.parse(await readFile(join(keys(), 'seed-enroll.json'), 'utf8')) as Record<string, unknown>
    expect(Object.keys(seed).sort()).toEqual(['networkKey', 'onlineKey', 'root', 'type', 'version'])
    expect(JSON.stringify(seed)).not.toContain(JSON.parse(await readFile(join(keys(), 'fleet.secret'), 'utf8')).secret)
  })

  it('refuses to overwrite an existing keys folder', async () => {
    const r = await shoal(['keys', 'init', '--dir', keys()])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/refusing to overwrite/)
  })

  it('refuses a threshold above the number of keys with a usage error', async () => {
    const r = await shoal(['keys', 'init', '--dir', join(dir, 'k2'), '--root-keys', '2', '--threshold', '3'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--threshold/)
  })
})

describe('shoal publish / verify / extract', () => {
  let v1: Record<string, number | string>
  let v2: Record<string, number | string>

  it('publishes v1 then v2, where v2 adds only a small share of new blob bytes', async () => {
    const r1 = await shoal(['publish', join(dir, 'v1'), '--name', 'hello', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--json'])
    expect(r1.stderr).toBe('')
    expect(r1.code).toBe(0)
    v1 = JSON.parse(r1.stdout)
    for (const k of ['manifestId', 'manifestPath', 'chunks', 'newChunks', 'inputBytes', 'blobBytes', 'newBlobBytes']) expect(v1).toHaveProperty(k)
    expect(v1.inputBytes).toBe(3_000_000 + 1_500_000 + '#!/bin/sh\necho hello\n'.length + 'small file\n'.length + 'v1 readme\n'.length)
    expect(v1.newBlobBytes).toBe(v1.blobBytes)
    expect(v1.blobBytes as number).toBeLessThan(v1.inputBytes as number) // text compresses

    const r2 = await shoal(['publish', join(dir, 'v2'), '--name', 'hello', '--version', '1.1.0', '--keys', keys(), '--repo', repo(), '--json'])
    expect(r2.code).toBe(0)
    v2 = JSON.parse(r2.stdout)
    expect(v2.newBlobBytes as number).toBeGreaterThan(0)
    expect(v2.newBlobBytes as number).toBeLessThan((v2.blobBytes as number) * 0.1)
    expect(v2.newChunks as number).toBeLessThan((v2.chunks as number) * 0.2)
  })

  it('refuses to publish the same version twice', async () => {
    const r = await shoal(['publish', join(dir, 'v1'), '--name', 'hello', '--version', '1.0.0', '--keys', keys(), '--repo', repo()])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/already published/)
  })

  it('verifies both manifests against the root', async () => {
    for (const v of [v1, v2]) {
      const r = await shoal(['verify', v.manifestPath as string, '--root', join(keys(), 'root.json'), '--json'])
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ valid: true, manifestId: v.manifestId })
    }
  })

  it('extracts byte-identical trees, modes and symlinks included', async () => {
    for (const [v, src] of [[v1, 'v1'], [v2, 'v2']] as const) {
      const out = join(dir, `out-${src}`)
      const r = await shoal(['extract', '--repo', repo(), '--manifest', v.manifestPath as string, '--enroll', join(keys(), 'enroll.json'), '--to', out])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      expect(await snapshot(out)).toEqual(await snapshot(join(dir, src)))
    }
  })

  it('refuses a tampered manifest in verify and extract with a clear reason', async () => {
    const text = await readFile(v1.manifestPath as string, 'utf8')
    const tampered = join(dir, 'tampered.json')
    await writeFile(tampered, text.replace('"1.0.0"', '"1.0.1"'))
    const rv = await shoal(['verify', tampered, '--root', join(keys(), 'root.json')])
    expect(rv.code).toBe(3)
    expect(rv.stderr).toMatch(/^invalid: .*signature/im)
    const re = await shoal(['extract', '--repo', repo(), '--manifest', tampered, '--enroll', join(keys(), 'enroll.json'), '--to', join(dir, 'out-t')])
    expect(re.code).toBe(3)
    expect(re.stderr).toMatch(/signature/i)
  })

  it('refuses a manifest signed under another root', async () => {
    const other = join(dir, 'other-keys')
    expect((await shoal(['keys', 'init', '--dir', other])).code).toBe(0)
    const r = await shoal(['verify', v1.manifestPath as string, '--root', join(other, 'root.json')])
    expect(r.code).toBe(3)
  })

  it('detects a corrupted blob during extract', async () => {
    const repo2 = join(dir, 'repo-corrupt')
    await cp(repo(), repo2, { recursive: true })
    // a blob of this manifest (the repo holds other releases' and delta blobs too, which extract never reads)
    const cid = decodeManifest(await readFile(join(repo2, 'manifests', 'hello', '1.0.0.json'))).signed.chunks[0]!.cid
    const victim = join(repo2, 'blobs', cid.slice(0, 2), cid.slice(2))
    const b = await readFile(victim)
    b[b.length - 1] = (b[b.length - 1] as number) ^ 1
    await writeFile(victim, b)
    const r = await shoal(['extract', '--repo', repo2, '--manifest', join(repo2, 'manifests', 'hello', '1.0.0.json'), '--enroll', join(keys(), 'enroll.json'), '--to', join(dir, 'out-c')])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/blob/i)
  })

  it('publishes a .tgz and a .zip by unpacking them first: same tree, no new blobs', async () => {
    const tgz = join(dir, 'v1.tgz')
    await tar.c({ gzip: true, file: tgz, cwd: join(dir, 'v1'), portable: true }, ['.'])
    const rt = await shoal(['publish', tgz, '--name', 'hello-tgz', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--json'])
    expect(rt.stderr).toBe('')
    expect(rt.code).toBe(0)
    const t = JSON.parse(rt.stdout)
    expect(t.newBlobBytes).toBe(0)
    expect(t.inputBytes).toBe(v1.inputBytes)

    const zip = join(dir, 'v2.zip')
    execFileSync('python3', ['-c', `
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
    for base, dirs, files in os.walk(src):
        for n in sorted(dirs + files):
            p = os.path.join(base, n)
            rel = os.path.relpath(p, src)
            st = os.lstat(p)
            if os.path.islink(p):
                zi = zipfile.ZipInfo(rel); zi.external_attr = (0o120777 << 16); z.writestr(zi, os.readlink(p))
            elif os.path.isdir(p):
                zi = zipfile.ZipInfo(rel + '/'); zi.external_attr = ((0o40000 | (st.st_mode & 0o777)) << 16); z.writestr(zi, b'')
            else:
                z.write(p, rel)
`, join(dir, 'v2'), zip])
    const rz = await shoal(['publish', zip, '--name', 'hello-zip', '--version', '1.1.0', '--keys', keys(), '--repo', repo(), '--json'])
    expect(rz.stderr).toBe('')
    expect(rz.code).toBe(0)
    const z = JSON.parse(rz.stdout)
    expect(z.newBlobBytes).toBe(0)
    const out = join(dir, 'out-zip')
    const re = await shoal(['extract', '--repo', repo(), '--manifest', z.manifestPath, '--enroll', join(keys(), 'enroll.json'), '--to', out])
    expect(re.code).toBe(0)
    const a = await snapshot(out)
    const b = await snapshot(join(dir, 'v2'))
    // zip keeps file modes; folder modes depend on the zip writer, so compare files and links.
    const filesOnly = (s: typeof a): typeof a => Object.fromEntries(Object.entries(s).filter(([, e]) => e.type !== 'dir'))
    expect(filesOnly(a)).toEqual(filesOnly(b))
  })

  it('gives usage errors for bad arguments', async () => {
    const cases: string[][] = [
      ['publish', join(dir, 'v1'), '--name', 'Bad Name', '--version', '1.0.0', '--keys', keys(), '--repo', repo()],
      ['publish', join(dir, 'v1'), '--name', 'ok', '--version', 'not-semver', '--keys', keys(), '--repo', repo()],
      ['publish', join(dir, 'v1'), '--name', 'ok', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--avg-chunk', 'lots'],
      ['publish', join(dir, 'v1'), '--name', 'ok', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--expires', '-5d'],
      ['publish', join(dir, 'v1'), '--name', 'ok', '--version', '1.0.0', '--keys', keys(), '--repo', repo(), '--min-chunk', '1']
    ]
    for (const args of cases) {
      const r = await shoal(args)
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2)
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(2)
    }
    const missing = await shoal(['publish', join(dir, 'nope'), '--name', 'ok', '--version', '1.0.0', '--keys', keys(), '--repo', repo()])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/cannot read input/)
  })
})
