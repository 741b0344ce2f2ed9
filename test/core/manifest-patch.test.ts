// Sealed payload patches (src/core/manifest-patch.ts, docs/protocol.md §6.5): the patched form
// rebuilds the target manifest byte for byte, or is refused with a typed error — another key,
// base or target, a tampered patch or delta, an oversize claim — and the caller falls back.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DeltaEncoder } from '../../src/core/delta.js'
import { keyPairFromSecret } from '../../src/core/keys.js'
import { buildManifest, contentSubkey, decodeManifest, openPayloadBytes, MAX_MANIFEST_BYTES, PAYLOAD_KEY_INFO, type ChunkRef, type ManifestPayload } from '../../src/core/manifest.js'
import { encodeManifestDelta } from '../../src/core/manifest-delta.js'
import {
  applyPayloadPatch, buildPayloadPatch, checkPayloadPatch, encodeStrippedDelta, ManifestPatchError, sealPayloadPatch, stripPayload,
  MAX_PAYLOAD_PATCH_BYTES, PATCH_FORMAT, PATCH_KEY_INFO
} from '../../src/core/manifest-patch.js'
import { decodeAnnounceRequest, decodeManifestReply } from '../../src/daemon/announce.js'
import { decodePublishRequest } from '../../src/daemon/seed.js'
import { encodeControl } from '../../src/net/control.js'

const signer = keyPairFromSecret(new Uint8Array(32).fill(2))
const contentKey = new Uint8Array(32).fill(7)
const hex = (): string => randomBytes(32).toString('hex')

interface Table { chunks: ChunkRef[], keys: string[] }
function table (n: number): Table {
  return { chunks: Array.from({ length: n }, () => ({ cid: hex(), size: 16_000 + (randomBytes(2).readUInt16BE() % 4000) })), keys: Array.from({ length: n }, hex) }
}
/** v2: every tenth chunk replaced (new cid and key), the rest shared, as a small update. */
function update (t: Table): Table {
  return { chunks: t.chunks.map((c, i) => i % 10 === 3 ? { cid: hex(), size: 17_000 } : c), keys: t.keys.map((k, i) => i % 10 === 3 ? hex() : k) }
}
function manifest (t: Table, version: string, seq: number, o: { channel?: string, key?: Uint8Array } = {}): { bytes: Uint8Array, id: string } {
  const perFile = 100
  const files: ManifestPayload['files'] = []
  for (let f = 0; f * perFile < t.chunks.length; f++) {
    const chunks = t.chunks.slice(f * perFile, (f + 1) * perFile).map((_, j) => ({ index: f * perFile + j, key: t.keys[f * perFile + j]!, size: 16_384 }))
    files.push({ path: `file-${String(f).padStart(3, '0')}`, type: 'file', mode: 0o644, size: chunks.length * 16_384, sha256: hex(), chunks })
  }
  const { bytes, id } = buildManifest({
    package: 'app', version, seq, channel: o.channel ?? 'stable', created: new Date('2026-06-01T00:00:00Z'), expires: new Date('2027-06-01T00:00:00Z'),
    chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, chunks: t.chunks, payload: { files }, contentKey: o.key ?? contentKey, signers: [signer]
  })
  return { bytes, id }
}

const t1 = table(2000)
const v1 = manifest(t1, '1.0.0', 1)
const v2 = manifest(update(t1), '2.0.0', 2)

describe('sealed payload patches', () => {
  it('rebuild the target byte for byte, at a fraction of the plain delta', async () => {
    const patch = (await buildPayloadPatch(v1, v2, contentKey))!
    const delta = (await encodeStrippedDelta(v1.bytes, v2.bytes))!
    const plain = (await encodeManifestDelta(v1.bytes, v2.bytes))!
    expect(Buffer.from(applyPayloadPatch(v1, delta, patch, v2.id, contentKey)).equals(v2.bytes)).toBe(true)
    // the plain delta is mostly the new ciphertext; the patch carries only the changed plaintext
    expect(delta.length + patch.length).toBeLessThan(0.35 * plain.length)
    expect(patch[0]).toBe(PATCH_FORMAT)
    checkPayloadPatch(patch)
  })

  it('stripping removes exactly the ciphertext text, once', () => {
    const s = stripPayload(v2.bytes)
    const ct = decodeManifest(v2.bytes).signed.payload.ciphertext
    expect(v2.bytes.length - s.length).toBe(ct.length)
    expect(Buffer.from(s).includes('"ciphertext":"","nonce"')).toBe(true)
    expect(() => stripPayload(Buffer.from('{"signed":{}}'))).toThrow(ManifestPatchError)
    const twice = Buffer.concat([Buffer.from(v1.bytes), Buffer.from(v2.bytes)])
    expect(() => stripPayload(twice)).toThrow(ManifestPatchError)
  })

  it('are refused for another key, base or target, and when tampered', async () => {
    const patch = (await buildPayloadPatch(v1, v2, contentKey))!
    const delta = (await encodeStrippedDelta(v1.bytes, v2.bytes))!
    const other = new Uint8Array(32).fill(8)
    expect(() => applyPayloadPatch(v1, delta, patch, v2.id, other)).toThrow(ManifestPatchError)
    // another base of the same package: the patch is bound to v1's id (AAD), the delta to its bytes
    const v1b = manifest(t1, '1.0.1', 1)
    expect(() => applyPayloadPatch(v1b, delta, patch, v2.id, contentKey)).toThrow(ManifestPatchError)
    // bound to the target id too
    expect(() => applyPayloadPatch(v1, delta, patch, hex(), contentKey)).toThrow(ManifestPatchError)
    for (const at of [0, 1, 5, 20, patch.length - 20, patch.length - 1]) {
      const bad = Uint8Array.from(patch); bad[at]! ^= 0x01
      expect(() => applyPayloadPatch(v1, delta, bad, v2.id, contentKey), `patch byte ${at} flipped`).toThrow(ManifestPatchError)
    }
    for (const at of [0, 10, 30, delta.length - 5]) {
      const bad = Uint8Array.from(delta); bad[at]! ^= 0x01
      expect(() => applyPayloadPatch(v1, bad, patch, v2.id, contentKey), `delta byte ${at} flipped`).toThrow(ManifestPatchError)
    }
    expect(() => applyPayloadPatch(v1, delta, patch.subarray(0, patch.length - 3), v2.id, contentKey)).toThrow(ManifestPatchError)
    // a base whose payload another fleet sealed: it does not open here
    const foreign = manifest(t1, '1.0.0', 1, { key: other })
    expect(() => applyPayloadPatch(foreign, delta, patch, v2.id, contentKey)).toThrow(ManifestPatchError)
  })

  it('are keyed apart from payloads, and are none across packages or channels', async () => {
    expect(Buffer.from(contentSubkey(contentKey, PATCH_KEY_INFO)).equals(Buffer.from(contentSubkey(contentKey, PAYLOAD_KEY_INFO)))).toBe(false)
    expect(await buildPayloadPatch(v1, manifest(update(t1), '2.0.0', 2, { channel: 'beta' }), contentKey)).toBeNull()
    expect(await buildPayloadPatch(v1, v1, contentKey)).toBeNull()
  })

  it('refuse an oversize claim before decoding, and oversize or malformed patches on the wire', async () => {
    // A key holder's patch whose delta claims a target above the manifest limit: refused from its header.
    const plain = openPayloadBytes(decodeManifest(v1.bytes), contentKey)
    const huge = (new DeltaEncoder(plain, { level: 1 }, MAX_MANIFEST_BYTES).encode(Buffer.concat([plain, Buffer.alloc(1000)])))!
    new DataView(huge.buffer, huge.byteOffset).setUint32(6, MAX_MANIFEST_BYTES + 1)
    const lying = sealPayloadPatch(huge, { baseId: v1.id, targetId: v2.id, package: 'app', channel: 'stable', contentKey })
    const delta = (await encodeStrippedDelta(v1.bytes, v2.bytes))!
    expect(() => applyPayloadPatch(v1, delta, lying, v2.id, contentKey)).toThrow(/exceeds/)
    expect(() => checkPayloadPatch(new Uint8Array(MAX_PAYLOAD_PATCH_BYTES + 1).fill(PATCH_FORMAT))).toThrow(ManifestPatchError)
    expect(() => checkPayloadPatch(new Uint8Array(10))).toThrow(ManifestPatchError)
    const patch = (await buildPayloadPatch(v1, v2, contentKey))!
    const id = v2.id
    expect(decodeManifestReply(encodeControl({ delta: v1.id, patch: true }, [delta, patch]), id).patch).toEqual(patch)
    expect(() => decodeManifestReply(encodeControl({ delta: v1.id, patch: true }, [delta]), id)).toThrow(/exactly a delta and a patch/)
    expect(() => decodeManifestReply(encodeControl({ patch: true }, [delta, patch]), id)).toThrow(/without a delta/)
    expect(() => decodeManifestReply(encodeControl({ delta: v1.id, patch: true }, [delta, new Uint8Array(60)]), id)).toThrow(/patch format/)
    expect(decodeAnnounceRequest(encodeControl({ op: 'manifest', id, base: v1.id, patch: true }))).toEqual({ op: 'manifest', id, base: v1.id, patch: true })
    expect(decodeAnnounceRequest(encodeControl({ op: 'manifest', id, base: v1.id, patch: 1 }))).toEqual({ op: 'manifest', id, base: v1.id })
  })

  it('ride a publish commit beside the manifest, framing checked by the seed', async () => {
    const patch = (await buildPayloadPatch(v1, v2, contentKey))!
    expect(decodePublishRequest(encodeControl({ op: 'commit', patches: [v1.id] }, [v2.bytes, patch]))).toMatchObject({ op: 'commit', patches: [{ base: v1.id, bytes: patch }] })
    expect(decodePublishRequest(encodeControl({ op: 'commit' }, [v2.bytes]))).toMatchObject({ op: 'commit', patches: [] })
    expect(() => decodePublishRequest(encodeControl({ op: 'commit', patches: [v1.id] }, [v2.bytes]))).toThrow(/one per part/)
    expect(() => decodePublishRequest(encodeControl({ op: 'commit', patches: [v1.id, v1.id] }, [v2.bytes, patch, patch]))).toThrow(/distinct/)
    expect(() => decodePublishRequest(encodeControl({ op: 'commit', patches: ['nothex'] }, [v2.bytes, patch]))).toThrow(/patches/)
    expect(() => decodePublishRequest(encodeControl({ op: 'commit', patches: [v1.id] }, [v2.bytes, new Uint8Array(80)]))).toThrow(/patch 1/)
  })
})
