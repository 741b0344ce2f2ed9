// `shoal keys rotate` and `shoal keys push-root`: the next root.json signed the way every daemon
// checks it, the replaced keys retired, the enrollment bundles renewed, and the root carried to
// a real seed and on to an endpoint.
import { mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeEndpointEnrollment, decodeSeedEnrollment } from '../../src/core/enroll.js'
import { decodePrivateKeyFile } from '../../src/core/keys.js'
import { decodeRoot, verifyRootUpdate } from '../../src/core/root.js'
import { Fleet, until } from '../daemon/helpers.js'
import { assertBuilt, shoal } from '../helpers/cli.js'

let dir = ''
let fleet: Fleet | undefined

beforeAll(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'shoal-rotate-'))
})

afterAll(async () => {
  await fleet?.cleanup()
  await rm(dir, { recursive: true, force: true })
})

async function rootOf (keys: string): Promise<ReturnType<typeof decodeRoot>> {
  return decodeRoot(await readFile(join(keys, 'root.json')))
}

describe('shoal keys rotate / push-root', () => {
  it('signs root v2 with a new online key by the held root keys; v1 retired; enrollments renewed', async () => {
    const keys = join(dir, 'keys')
    expect((await shoal(['keys', 'init', '--dir', keys, '--publisher-keys', '2', '--publisher-threshold', '2'])).code).toBe(0)
    const v1 = await rootOf(keys)
    const oldOnline = decodePrivateKeyFile(await readFile(join(keys, 'online.key'))).key.keyid

    const r = await shoal(['keys', 'rotate', '--dir', keys, '--online', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ version: 2, previousVersion: 1, rotated: ['online'] })
    const v2 = await rootOf(keys)
    expect(() => { verifyRootUpdate(v1, v2, new Date()) }).not.toThrow()
    const newOnline = decodePrivateKeyFile(await readFile(join(keys, 'online.key'))).key.keyid
    expect(newOnline).not.toBe(oldOnline)
    expect(v2.signed.roles.online.keyids).toEqual([newOnline])
    expect(v2.signed.roles.publisher).toEqual(v1.signed.roles.publisher) // not asked: kept
    expect(decodePrivateKeyFile(await readFile(join(keys, 'retired-v1', 'online.key'))).key.keyid).toBe(oldOnline)
    expect((await rootOf(join(keys, 'retired-v1'))).signed.version).toBe(1)
    expect(decodeEndpointEnrollment(await readFile(join(keys, 'enroll.json'))).root.signed.version).toBe(2)
    expect(decodeSeedEnrollment(await readFile(join(keys, 'seed-enroll.json'))).onlineKey.keyid).toBe(newOnline)
    expect((await stat(join(keys, 'online.key'))).mode & 0o777).toBe(0o600)

    // renewal without new keys, then a rotation of the root keys themselves: each step verifies
    expect((await shoal(['keys', 'rotate', '--dir', keys])).code).toBe(0)
    expect((await shoal(['keys', 'rotate', '--dir', keys, '--root', '--publisher'])).code).toBe(0)
    const v4 = await rootOf(keys)
    expect(v4.signed.version).toBe(4)
    const v3 = decodeRoot(await readFile(join(keys, 'retired-v3', 'root.json')))
    expect(() => { verifyRootUpdate(v3, v4, new Date()) }).not.toThrow()
    expect(v4.signed.roles.root.keyids).not.toEqual(v2.signed.roles.root.keyids)
    expect(v4.signed.roles.publisher.threshold).toBe(2)
  })

  it('refuses without enough root keys, and says what to bring back; nothing is written', async () => {
    const keys = join(dir, 'keys-offline')
    expect((await shoal(['keys', 'init', '--dir', keys])).code).toBe(0)
    await rename(join(keys, 'root-1.key'), join(dir, 'root-1.key.offline'))
    const r = await shoal(['keys', 'rotate', '--dir', keys, '--online'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/holds 0 of root\.json v1's root keys; signing v2 needs 1/)
    expect((await rootOf(keys)).signed.version).toBe(1)
    await expect(stat(join(keys, 'retired-v1'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('push-root: the seed checks and keeps the new root, an endpoint takes it from the seed', async () => {
    fleet = await Fleet.create('rotate-push')
    const seed = await fleet.startSeed()
    const ep = await fleet.startEndpoint('ep', { pollInterval: 300 })
    await until(async () => (await ep.status()).root.version === 1, 10_000, 'endpoint up')
    expect((await shoal(['keys', 'rotate', '--dir', fleet.keysDir, '--online'])).code).toBe(0)
    const r = await shoal(['keys', 'push-root', '--keys', fleet.keysDir, '--seed', fleet.seedAddr, '--json'])
    expect(r.code, r.stderr).toBe(0)
    // the running seed still has the old online key: it says so, and the CLI passes that on
    expect(JSON.parse(r.stdout)).toEqual({ sent: 2, version: 2, onlineChanged: true, signsHeads: false })
    expect((await seed.status()).root.version).toBe(2)
    await until(async () => (await ep.status()).root.version === 2, 20_000, 'endpoint took root v2')
    // a second push of the same root is refused as not newer
    const again = await shoal(['keys', 'push-root', '--keys', fleet.keysDir, '--seed', fleet.seedAddr])
    expect(again.code).not.toBe(0)
    expect(again.stderr).toMatch(/not newer|ERR_ROLLBACK/)
  })
})
