// Manifest deltas (docs/protocol.md §6.5): the rebuilt bytes are the manifest asked for, byte for
// byte, or the delta is refused — corrupted, made against another base, or rebuilding other bytes.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DELTA_HEADER_BYTES, MAX_DELTA_BASE_BYTES } from '../../src/core/delta.js'
import { manifestId } from '../../src/core/manifest.js'
import { encodeManifestDelta, ManifestDeltaError, rebuildManifest } from '../../src/core/manifest-delta.js'
import { decodeAnnounceRequest, decodeManifestReply } from '../../src/daemon/announce.js'
import { encodeControl } from '../../src/net/control.js'

/** Manifest-like bytes: a JSON chunk table of `rows` rows and a random sealed part, as a release's manifest is. */
function tableOf (rows: string[], sealed: Buffer): Buffer {
  return Buffer.from(`{"chunks":[${rows.join(',')}],"payload":"${sealed.toString('base64')}"}`)
}

function releasePair (): { v1: Buffer, v2: Buffer } {
  const rows = Array.from({ length: 4000 }, () => `{"cid":"${randomBytes(32).toString('hex')}","size":${16000 + (randomBytes(2).readUInt16BE() % 4000)}}`)
  const rows2 = rows.map((r, i) => i % 10 === 3 ? `{"cid":"${randomBytes(32).toString('hex')}","size":17000}` : r)
  return { v1: tableOf(rows, randomBytes(20_000)), v2: tableOf(rows2, randomBytes(20_000)) }
}

describe('manifest deltas', () => {
  it('rebuild the target byte for byte, in far fewer bytes when the table is shared', async () => {
    const { v1, v2 } = releasePair()
    const delta = (await encodeManifestDelta(v1, v2))!
    expect(delta).not.toBeNull()
    // 10 % new rows (~90 bytes each, hex) plus the random sealed part; the shared 90 % cost ~nothing
    expect(delta.length).toBeLessThan(0.25 * v2.length)
    const rebuilt = rebuildManifest(v1, delta, manifestId(v2))
    expect(Buffer.from(rebuilt).equals(v2)).toBe(true)
  })

  it('refuse a corrupted delta, a wrong base and a delta rebuilding other bytes', async () => {
    const { v1, v2 } = releasePair()
    const id = manifestId(v2)
    const delta = (await encodeManifestDelta(v1, v2))!
    for (const at of [DELTA_HEADER_BYTES + 40, delta.length - 100, 7]) {
      const bad = Uint8Array.from(delta); bad[at]! ^= 0x10
      expect(() => rebuildManifest(v1, bad, id), `byte ${at} flipped`).toThrow(ManifestDeltaError)
    }
    expect(() => rebuildManifest(v1, delta.subarray(0, delta.length - 9), id)).toThrow(ManifestDeltaError)
    const otherBase = Buffer.from(v1); otherBase[100]! ^= 1
    expect(() => rebuildManifest(otherBase, delta, id)).toThrow(/base/)
    // well-formed, against the right base, CRC-32 intact — but not the manifest asked for
    const forged = Buffer.from(v2); forged[forged.length - 5] = forged[forged.length - 5] === 0x41 ? 0x42 : 0x41
    const lying = (await encodeManifestDelta(v1, forged))!
    expect(Buffer.from(rebuildManifest(v1, lying, manifestId(forged))).equals(forged)).toBe(true)
    expect(() => rebuildManifest(v1, lying, id)).toThrow(/not manifest/)
  })

  it('no delta against a base over the decode bound, nor when it would not be smaller', async () => {
    const { v2 } = releasePair()
    expect(await encodeManifestDelta(Buffer.alloc(MAX_DELTA_BASE_BYTES + 1, 0x20), v2)).toBeNull()
    expect(await encodeManifestDelta(randomBytes(10_000), randomBytes(10_000))).toBeNull()
  })

  it('the request field and the reply header are optional and strictly read', () => {
    const id = 'a'.repeat(64)
    expect(decodeAnnounceRequest(encodeControl({ op: 'manifest', id }))).toEqual({ op: 'manifest', id })
    expect(decodeAnnounceRequest(encodeControl({ op: 'manifest', id, base: 'b'.repeat(64) }))).toEqual({ op: 'manifest', id, base: 'b'.repeat(64) })
    expect(() => decodeAnnounceRequest(encodeControl({ op: 'manifest', id, base: 'xyz' }))).toThrow(/base/)
    expect(decodeManifestReply(encodeControl({}, [Buffer.from('m')]), id).delta).toBeUndefined()
    expect(decodeManifestReply(encodeControl({ delta: 'c'.repeat(64) }, [Buffer.from('d')]), id).delta).toBe('c'.repeat(64))
    expect(() => decodeManifestReply(encodeControl({ delta: 7 }, [Buffer.from('d')]), id)).toThrow(/delta/)
  })
})
