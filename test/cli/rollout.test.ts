// The rollout commands through the real CLI, offline: publish --rollout puts the policy into the
// signed manifest; promote/halt/rollback --out write records that verify against the root; bad
// input is exit 2.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, mkdir, writeFile, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeManifest, verifyManifest } from '../../src/core/manifest.js'
import { decodeRoot } from '../../src/core/root.js'
import { decodeRecord, verifyRecord } from '../../src/rollout/records.js'
import { shoal } from '../helpers/cli.js'

let dir: string
const keys = (): string => join(dir, 'keys')

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-cli-rollout-'))
  await mkdir(join(dir, 'app'))
  await writeFile(join(dir, 'app', 'hello.txt'), 'hello\n')
  await writeFile(join(dir, 'notes.txt'), 'Fixes the frobnicator.\n')
  expect((await shoal(['keys', 'init', '--dir', keys()])).code).toBe(0)
})

afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('shoal publish --rollout', () => {
  it('signs the policy into the manifest, times resolved at publishing', async () => {
    const before = Date.now()
    const r = await shoal(['publish', join(dir, 'app'), '--name', 'app', '--version', '1.0.0', '--keys', keys(), '--repo', join(dir, 'repo'),
      '--rollout', 'canary:now,pilot:+1d/deadline=+3d,broad:approval,window=22:00-06:00', '--notes', join(dir, 'notes.txt'), '--threads', '1', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const m = decodeManifest(await readFile(JSON.parse(r.stdout).manifestPath as string))
    verifyManifest(m, decodeRoot(await readFile(join(keys(), 'root.json'))), new Date())
    const rings = m.signed.rollout!.rings
    expect(rings.map(x => x.ring)).toEqual(['canary', 'pilot', 'broad'])
    expect(Date.parse(rings[1]!.notBefore!) - Date.parse(rings[0]!.notBefore!)).toBe(86400_000)
    expect(Date.parse(rings[0]!.notBefore!)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
    expect(rings[1]!.deadline).toBeDefined()
    expect(rings[2]).toEqual({ ring: 'broad', approval: true, window: { start: '22:00', end: '06:00', tz: 'utc' } })
  })

  it('refuses a bad spec with exit 2 before sealing anything', async () => {
    const r = await shoal(['publish', join(dir, 'app'), '--name', 'app', '--version', '1.0.1', '--keys', keys(), '--repo', join(dir, 'repo2'), '--rollout', 'canary:now,canary:+1d'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--rollout ring "canary" is listed twice \[ERR_INVALID_ARGUMENT\]/)
  })
})

describe('shoal promote / halt / rollback --out', () => {
  it('write signed records that verify against the root', async () => {
    const root = decodeRoot(await readFile(join(keys(), 'root.json')))
    const cases: Array<[string[], Record<string, unknown>]> = [
      [['promote', 'app@1.0.0', '--ring', 'broad', '--seq', '1'], { action: 'promote', ring: 'broad', seq: 1 }],
      [['halt', 'app@1.0.0', '--seq', '2'], { action: 'halt', seq: 2 }],
      [['rollback', 'app@1.0.0', '--to', '0.9.0', '--seq', '3', '--expires', '30d'], { action: 'rollback', to: '0.9.0', seq: 3 }]
    ]
    for (const [args, want] of cases) {
      const out = join(dir, `${args[0]!}.json`)
      const r = await shoal([...args, '--keys', keys(), '--out', out, '--json'])
      expect(r.code, r.stderr).toBe(0)
      const rec = decodeRecord(await readFile(out))
      verifyRecord(rec, root, new Date(), { expectPackage: 'app', expectVersion: '1.0.0' })
      expect(rec.signed).toMatchObject({ package: 'app', version: '1.0.0', ...want })
      expect(JSON.parse(r.stdout).id).toMatch(/^[0-9a-f]{64}$/)
    }
  })

  it('are usage errors (exit 2) without a destination, a release, a ring or a version', async () => {
    for (const args of [
      ['halt', 'app@1.0.0', '--keys', keys()],
      ['halt', 'app', '--keys', keys(), '--out', join(dir, 'x.json'), '--seq', '1'],
      ['promote', 'app@1.0.0', '--ring', '-x', '--keys', keys(), '--out', join(dir, 'x.json'), '--seq', '1'],
      ['rollback', 'app@1.0.0', '--to', '1.0.0', '--keys', keys(), '--out', join(dir, 'x.json'), '--seq', '1']
    ]) {
      const r = await shoal(args)
      expect(r.code, args.join(' ')).toBe(2)
    }
  })
})
