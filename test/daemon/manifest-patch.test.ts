// Sealed payload patches between daemons (docs/protocol.md §6.5, "Payload patches"): the
// publisher uploads a patch with v2 through the real publish path, the seed serves v2 to an
// endpoint as a delta without the ciphertext plus that patch, the endpoint rebuilds the exact
// bytes, keeps the patch and serves the same small form to a site member; a member that holds v2
// without a patch makes one itself.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { writeSwarmShapedRelease } from '../../bench/manifest-patch.js'
import { manifestId } from '../../src/core/manifest.js'
import { encodeManifestDelta } from '../../src/core/manifest-delta.js'
import { Announce, patchKey } from '../../src/daemon/announce.js'
import type { Daemon } from '../../src/daemon/daemon.js'
import { ANNOUNCE_PROTOCOL } from '../../src/net/constants.js'
import type { StateDb } from '../../src/store/state-db.js'
import { snapshot } from '../helpers/tree.js'
import { Fleet, installedVersion, until } from './helpers.js'

let fleet: Fleet | undefined
afterEach(async () => { await fleet?.cleanup(); fleet = undefined })

async function manifests (e: Daemon): Promise<{ seed: number, lan: number, deltas: number, patches: number, refused: number }> {
  const m = (await e.status()).manifests
  return { seed: m.seed, lan: m.lan, deltas: m.deltas, patches: m.patches, refused: m.refused }
}

describe('payload patches between daemons', () => {
  it('an endpoint forgets the manifest of a release it no longer keeps, and the patches to and from it', async () => {
    fleet = await Fleet.create('mforget')
    await fleet.startSeed()
    const e = await fleet.startEndpoint('e', { pollInterval: 300 })
    const ids: string[] = []
    let src: string | undefined
    for (const v of ['1.0.0', '2.0.0', '3.0.0']) {
      src = await writeSwarmShapedRelease(join(fleet.dir, `src-${v}`), 1024 * 1024, src)
      const p = await fleet.publish(src, v)
      ids.push(manifestId(await readFile(p.manifestPath)))
      await fleet.push(p.manifestPath)
      await until(async () => await installedVersion(e) === v, 30_000, `${v} installed`)
      if (v === '2.0.0') expect(await e.db.manifestPatches.get(patchKey(ids[1]!, ids[0]!)), 'the patch 1.0.0 → 2.0.0, kept').not.toBeNull()
    }
    const [v1, v2, v3] = ids as [string, string, string]
    // the update to 2.0.0 came with a patch from 1.0.0, the one to 3.0.0 with one from 2.0.0
    expect(await e.db.manifestPatches.get(patchKey(v3, v2))).not.toBeNull()
    // 3.0.0 installed, 2.0.0 kept as the previous version: 1.0.0 is superseded and forgotten
    await until(async () => await e.db.manifests.get(v1) === null, 10_000, "1.0.0's manifest dropped")
    expect(await e.db.manifests.get(v2)).not.toBeNull()
    expect(await e.db.manifests.get(v3)).not.toBeNull()
    const keys: string[] = []
    for await (const [k] of e.db.manifestPatches.entries()) keys.push(k)
    expect(keys.some(k => k.includes(v1))).toBe(false)
    expect(keys).toContain(patchKey(v3, v2))
    expect((await e.db.releases.get('app@1.0.0'))?.state).toBe('superseded')
  })


  it("v2's manifest crosses from the seed and on the LAN as a stripped delta plus a sealed patch, far below the plain delta", async () => {
    fleet = await Fleet.create('mpatch')
    await fleet.startSeed()
    const owner = await fleet.startEndpoint('owner', { site: 'x', pollInterval: 300 })
    const member = await fleet.startEndpoint('member', { site: 'x', pollInterval: 300 })
    await until(async () => owner.endpoint!.site.members.size === 1 && member.endpoint!.site.members.size === 1, 15_000, 'site members introduced')
    const src1 = await writeSwarmShapedRelease(join(fleet.dir, 'src-1'), 4 * 1024 * 1024)
    const p1 = await fleet.publish(src1, '1.0.0')
    await fleet.push(p1.manifestPath)
    for (const e of [owner, member]) await until(async () => await installedVersion(e) === '1.0.0', 30_000, '1.0.0 installed')
    const v1 = await readFile(p1.manifestPath)
    const v1id = manifestId(v1)

    const src2 = await writeSwarmShapedRelease(join(fleet.dir, 'src-2'), 4 * 1024 * 1024, src1)
    const p2 = await fleet.publish(src2, '2.0.0')
    const v2 = await readFile(p2.manifestPath)
    const v2id = manifestId(v2)
    const plain = (await encodeManifestDelta(v1, v2))!.length
    member.endpoint!.paused = true
    const o0 = await manifests(owner)
    await fleet.push(p2.manifestPath)
    // the publisher uploaded the patch with the release, and the seed kept it beside the manifest
    const seedPatch = await fleet.seed.db.manifestPatches.get(patchKey(v2id, v1id))
    expect(seedPatch).not.toBeNull()
    await until(async () => await installedVersion(owner) === '2.0.0', 30_000, 'owner installed 2.0.0')
    const o1 = await manifests(owner)
    const fromSeed = o1.seed - o0.seed
    process.stdout.write(`v2 manifest: full ${v2.length} B, plain delta ${plain} B, patched form from the seed ${fromSeed} B (reply, with control header)\n`)
    expect(o1.patches - o0.patches).toBe(1)
    expect(o1.refused - o0.refused).toBe(0)
    expect(fromSeed).toBeLessThan(0.3 * plain)
    expect(Buffer.from((await owner.db.manifests.get(v2id))!).equals(v2)).toBe(true)
    expect(await snapshot(join(owner.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))
    // kept, to serve the pair onward
    expect(Buffer.from((await owner.db.manifestPatches.get(patchKey(v2id, v1id)))!).equals(seedPatch!)).toBe(true)

    // The member asks the owner, which serves the small form with the patch it kept (same bytes: not remade).
    await until(async () => [...member.endpoint!.site.members.values()].some(m => m.haves.has(v2id)), 15_000, 'the owner announces 2.0.0')
    const m0 = await manifests(member)
    member.endpoint!.paused = false
    await until(async () => await installedVersion(member) === '2.0.0', 30_000, 'member installed 2.0.0')
    const m1 = await manifests(member)
    expect(m1.patches - m0.patches).toBe(1)
    expect(m1.seed - m0.seed).toBe(0)
    expect(m1.lan - m0.lan).toBeLessThan(0.3 * plain)
    expect(Buffer.from((await member.db.manifestPatches.get(patchKey(v2id, v1id)))!).equals(seedPatch!)).toBe(true)
    expect(await snapshot(join(member.cfg.installRoot, 'app', 'current'))).toEqual(await snapshot(src2))

    // A member holding v2 without a patch for the pair makes one (fresh nonce, so other bytes) and keeps it.
    await member.db.manifestPatches.del(patchKey(v2id, v1id))
    const asker = new Announce(owner.node, owner.db, { contentKey: fleet.keys.fleet.contentKey })
    const got = await asker.fetchManifest(member.node.peerId, v2id, AbortSignal.timeout(20_000), { id: v1id, bytes: v1 })
    expect(got.via).toBe('patch')
    expect(got.wireBytes).toBeLessThan(0.3 * plain)
    expect(Buffer.from(got.bytes).equals(v2)).toBe(true)
    const made = await member.db.manifestPatches.get(patchKey(v2id, v1id))
    expect(made).not.toBeNull()
    expect(Buffer.from(made!).equals(seedPatch!)).toBe(false)
    // A tampered patch (the member's kept one, a byte flipped) is refused; the plain delta follows from the same peer.
    const bad = Uint8Array.from(made!); bad[bad.length - 30]! ^= 0x01
    const lyingDb = new Proxy(member.db, {
      get: (t, k) => k === 'manifestPatches' ? { get: async () => bad, put: async () => {} } : Reflect.get(t, k) as unknown
    }) as StateDb
    await member.node.unhandle(ANNOUNCE_PROTOCOL)
    const lying = new Announce(member.node, lyingDb, { contentKey: fleet.keys.fleet.contentKey })
    await lying.start()
    const fallback = await new Announce(owner.node, owner.db, { contentKey: fleet.keys.fleet.contentKey }).fetchManifest(member.node.peerId, v2id, AbortSignal.timeout(20_000), { id: v1id, bytes: v1 })
    expect(fallback.via).toBe('refused')
    expect(fallback.refusal?.code).toBe('ERR_MANIFEST_PATCH')
    expect(Buffer.from(fallback.bytes).equals(v2)).toBe(true)
    expect(fallback.wireBytes).toBeGreaterThan(plain)
    // A seed has no content key: asking it as a seed does, the plain delta comes.
    const seedLike = new Announce(owner.node, owner.db)
    const plainGot = await seedLike.fetchManifest(fleet.seed.node.peerId, v2id, AbortSignal.timeout(20_000), { id: v1id, bytes: v1 })
    expect(plainGot.via).toBe('delta')
    expect(plainGot.wireBytes).toBeGreaterThan(0.9 * plain)
    await lying.stop()
  }, 60_000)
})
