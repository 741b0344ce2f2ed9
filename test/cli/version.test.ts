import { describe, it, expect } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SHOAL_VERSION } from '../../src/version.js'
import { REPO_ROOT, shoal } from '../helpers/cli.js'

describe('shoal --version / --help', () => {
  it('matches package.json', async () => {
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(SHOAL_VERSION).toBe(pkg.version)
    const r = await shoal(['--version'])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(pkg.version)
  })

  it('prints help with examples for every command and exits 0', async () => {
    for (const cmd of [['keys', 'init'], ['publish'], ['verify'], ['extract']]) {
      const r = await shoal([...cmd, '--help'])
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/Example/)
    }
  })

  it('exits 2 on an unknown command or option', async () => {
    expect((await shoal(['frobnicate'])).code).toBe(2)
    expect((await shoal(['verify', 'x', '--root', 'y', '--bogus'])).code).toBe(2)
  })
})
