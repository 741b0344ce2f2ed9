// Manifests as files: what is put comes back byte for byte, ids are checked, a crashed writer's
// temp file is swept, and nothing partial is ever returned as a manifest.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InvalidArgumentError } from '../../src/core/errors.js'
import { MAX_MANIFEST_BYTES } from '../../src/core/manifest.js'
import { ManifestFiles } from '../../src/store/manifest-files.js'

const id = (s: string): string => createHash('sha256').update(s).digest('hex')
let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-manifests-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('ManifestFiles', () => {
  it('gives back what was put, replaces, deletes, and lists in id order', async () => {
    const m = new ManifestFiles(join(dir, 'manifests'))
    expect(await m.get(id('a'))).toBeNull()
    expect([...await collect(m)]).toEqual([]) // no folder yet
    await m.put(id('a'), Buffer.from('first'))
    await m.put(id('b'), Buffer.from('bee'), { durable: true })
    await m.put(id('a'), Buffer.from('second'))
    expect(Buffer.from((await m.get(id('a')))!).toString()).toBe('second')
    expect(await m.has(id('b'))).toBe(true)
    expect((await collect(m)).map(([k, v]) => [k, Buffer.from(v).toString()])).toEqual([[id('a'), 'second'], [id('b'), 'bee']].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)))
    await m.del(id('a'))
    await m.del(id('a')) // absent: no error
    expect(await m.get(id('a'))).toBeNull()
    expect(await m.has(id('a'))).toBe(false)
    expect(await readdir(join(dir, 'manifests'))).toEqual([id('b')]) // no temp file left
  })

  it('takes a file larger than any manifest for not held, without reading it whole', async () => {
    const m = new ManifestFiles(dir)
    await writeFile(join(dir, id('big')), '')
    await truncate(join(dir, id('big')), MAX_MANIFEST_BYTES + 1) // sparse: no 64 MiB written
    expect(await m.get(id('big'))).toBeNull()
    await truncate(join(dir, id('big')), 10)
    expect(await m.get(id('big'))).toEqual(Buffer.alloc(10))
  })

  it('refuses ids that are not 64 lowercase hex characters (no path can be named)', async () => {
    const m = new ManifestFiles(dir)
    for (const bad of ['../x', id('a').toUpperCase(), id('a').slice(1), '', `${id('a')}/x`]) {
      await expect(m.get(bad)).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(m.put(bad, Buffer.from('x'))).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(m.del(bad)).rejects.toBeInstanceOf(InvalidArgumentError)
    }
  })

  it('sweeps a dead writer\'s temp file when listing and never lists it', async () => {
    const m = new ManifestFiles(dir)
    await m.put(id('a'), Buffer.from('whole'))
    const dead = `${id('b')}.tmp-999999999-deadbeef` // no such pid
    const live = `${id('c')}.tmp-${process.pid}-cafebabe`
    await writeFile(join(dir, dead), 'torn')
    await writeFile(join(dir, live), 'being written')
    expect((await collect(m)).map(([k]) => k)).toEqual([id('a')])
    expect((await readdir(dir)).sort()).toEqual([id('a'), live].sort())
    expect(await m.get(id('b'))).toBeNull()
  })
})

async function collect (m: ManifestFiles): Promise<Array<[string, Uint8Array]>> {
  const out: Array<[string, Uint8Array]> = []
  for await (const e of m.entries()) out.push(e)
  return out
}
