// Known answers and attacks for chunk sealing and fleet key derivation. Every bulk primitive shoal
// runs on node:crypto is cross-checked against @noble on the same inputs, and the blob format is
// re-implemented here from docs/protocol.md §4 with @noble only, so the code and the spec cannot drift.
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { sha256 } from '@noble/hashes/sha2.js'
import { hmac } from '@noble/hashes/hmac.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { gcm } from '@noble/ciphers/aes.js'
import { DecodeError, InvalidArgumentError, OversizeError, ShoalError } from '../../src/core/errors.js'
import { deriveFleetKeys, generateFleetSecret, FLEET_SECRET_BYTES } from '../../src/core/fleet-keys.js'
import {
  blobCid, BlobAuthError, BlobCidMismatchError, BlobFormatError, BlobSizeError, chunkKey, cidFromHex, cidToHex,
  MAX_CHUNK_PLAINTEXT, openBlob, sealChunk, sealWithKey, type SealedChunk
} from '../../src/core/seal.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
const rand = (n: number): Uint8Array => new Uint8Array(randomBytes(n))

/** Text-like bytes that brotli shrinks well, different per seed. */
function textLike (n: number, seed = 1): Uint8Array {
  const words = ['export', 'function', 'const', 'return', 'import', 'shoal', 'chunk', 'release', '{', '}', '(', ')', ';', '\n  ']
  let x = seed
  let s = ''
  while (s.length < n) {
    x = (x * 1103515245 + 12345) >>> 0
    s += words[x % words.length] + ' '
  }
  return utf8(s.slice(0, n))
}

// The fixed example of docs/protocol.md §4: fleet secret 00 01 … 1f.
const DOC_SECRET = Uint8Array.from({ length: 32 }, (_, i) => i)
const DOC_CONTENT_KEY = '6d47c7b73606dd0708573051a7352c0213ef64beb2dfccff2058fe02f31e7631'
const DOC_NETWORK_KEY = 'e6cccf4a9544c3138cd3ce0560e170d295d56ed04b2f9e25b66599b813b816b4'
const DOC_EX1 = {
  plaintext: 'hello, shoal\n',
  key: 'a3accbe58a575a7a73612a80615c87dff245e6b7ee80546dd1dc387bf5ab1df6',
  blob: 'b1001f12afd0054ea29b3c53bc07d822d0b6ebc568f12acf784ed44ff9e91a3d82ec8cc47662e40e70eff7',
  cid: 'bac5a97742cbea4896ab5009718da874f5360d090db036dae3358565b326b824'
}
const DOC_EX2 = {
  plaintext: 'shoal '.repeat(32),
  key: '0ce142095e7277e3256014d0fc653b98448b617c5f3f7c392e87622ffb3637a3',
  blob: 'b1014ff291d76b2bee544193390b159b8adfd458e66a98a1d3351a1053615c2872ae4fea8cc703eec1a1b73a983c4f5c50f6',
  cid: '3bf9591b28844da1e5eff8471896f6d150b9c183127ba434a28eab4fccb3e9a2'
}

// ---- an independent implementation of docs/protocol.md §4 with @noble only (zlib for brotli) ----
const nobleAesKey = (key: Uint8Array): Uint8Array => hmac(sha256, key, utf8('shoal/v1/blob/aes-key'))
const nobleNonce = (key: Uint8Array, fmtCodec: Uint8Array, msg: Uint8Array): Uint8Array =>
  hmac(sha256, key, concat(utf8('shoal/v1/blob/nonce'), fmtCodec, msg)).subarray(0, 12)

/** Builds a blob from a chunk key, a codec byte and the encoded message, exactly as specified. */
function nobleBlob (key: Uint8Array, codecByte: number, msg: Uint8Array, formatByte = 0xb1): Uint8Array {
  const fc2 = Uint8Array.of(formatByte, codecByte)
  const nonce = nobleNonce(key, fc2, msg)
  const header = concat(fc2, nonce)
  return concat(header, gcm(nobleAesKey(key), nonce, header).encrypt(msg))
}

/** Opens a blob without any shoal code: returns the codec byte and the decrypted message. */
function nobleOpen (blob: Uint8Array, key: Uint8Array): { codec: number; msg: Uint8Array } {
  const header = blob.subarray(0, 14)
  return { codec: blob[1]!, msg: gcm(nobleAesKey(key), header.subarray(2), header).decrypt(blob.subarray(14)) }
}

function expectSealedEqual (a: SealedChunk, b: SealedChunk): void {
  expect(hex(a.key)).toBe(hex(b.key))
  expect(hex(a.cid)).toBe(hex(b.cid))
  expect(hex(a.blob)).toBe(hex(b.blob))
  expect(a.codec).toBe(b.codec)
  expect(a.plainSize).toBe(b.plainSize)
}

/** Runs fn and returns what it threw (failing the test when it did not throw). */
function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected an error, none was thrown')
}

const contentKey = deriveFleetKeys(DOC_SECRET).contentKey

describe('node:crypto agrees with @noble', () => {
  const sizes = [0, 1, 31, 55, 56, 63, 64, 65, 1000, 16384, 100_003]

  it('SHA-256 and blobCid', () => {
    for (const n of sizes) {
      const data = rand(n)
      expect(hex(createHash('sha256').update(data).digest())).toBe(hex(sha256(data)))
      expect(hex(blobCid(data))).toBe(hex(sha256(data)))
    }
    expect(hex(blobCid(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  })

  it('HMAC-SHA256 and chunkKey', () => {
    for (const n of sizes) {
      const key = rand(32)
      const data = rand(n)
      expect(hex(createHmac('sha256', key).update(data).digest())).toBe(hex(hmac(sha256, key, data)))
      expect(hex(chunkKey(key, data))).toBe(hex(hmac(sha256, key, data)))
    }
    // RFC 4231 test case 2.
    expect(hex(hmac(sha256, utf8('Jefe'), utf8('what do ya want for nothing?'))))
      .toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')
  })

  it('AES-256-GCM with AAD, both directions', () => {
    for (const n of sizes) {
      const key = rand(32)
      const nonce = rand(12)
      const aad = rand(n % 40)
      const data = rand(n)
      const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 })
      c.setAAD(aad)
      const node = concat(c.update(data), c.final(), c.getAuthTag())
      const noble = gcm(key, nonce, aad).encrypt(data)
      expect(hex(node)).toBe(hex(noble))
      expect(hex(gcm(key, nonce, aad).decrypt(node))).toBe(hex(data))
    }
  })
})

describe('fleet keys', () => {
  it('@noble and node HKDF give RFC 5869 test case 1', () => {
    const ikm = new Uint8Array(22).fill(0x0b)
    const salt = unhex('000102030405060708090a0b0c')
    const info = unhex('f0f1f2f3f4f5f6f7f8f9')
    const okm = '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865'
    expect(hex(hkdf(sha256, ikm, salt, info, 42))).toBe(okm)
    expect(hex(new Uint8Array(hkdfSync('sha256', ikm, salt, info, 42)))).toBe(okm)
  })

  it('derives the pinned keys from the documented info strings', () => {
    const k = deriveFleetKeys(DOC_SECRET)
    expect(hex(k.contentKey)).toBe(DOC_CONTENT_KEY)
    expect(hex(k.networkKey)).toBe(DOC_NETWORK_KEY)
    // The same values from node's HKDF with an empty salt: the derivation is exactly what the doc says.
    const node = (info: string): string => hex(new Uint8Array(hkdfSync('sha256', DOC_SECRET, new Uint8Array(0), utf8(info), 32)))
    expect(node('shoal/v1/content-key')).toBe(DOC_CONTENT_KEY)
    expect(node('shoal/v1/network-key')).toBe(DOC_NETWORK_KEY)
    expect(Object.keys(k).sort()).toEqual(['contentKey', 'networkKey'])
  })

  it('refuses a secret that is not 32 bytes', () => {
    for (const n of [0, 16, 31, 33, 64]) {
      expect(() => deriveFleetKeys(new Uint8Array(n))).toThrow(InvalidArgumentError)
    }
    expect(() => deriveFleetKeys('00'.repeat(32) as unknown as Uint8Array)).toThrow(InvalidArgumentError)
  })

  it('generates fresh 32-byte secrets', () => {
    const a = generateFleetSecret()
    const b = generateFleetSecret()
    expect(a).toBeInstanceOf(Uint8Array)
    expect(a.length).toBe(FLEET_SECRET_BYTES)
    expect(hex(a)).not.toBe(hex(b))
    expect(hex(deriveFleetKeys(a).contentKey)).not.toBe(hex(deriveFleetKeys(b).contentKey))
  })
})

describe('sealChunk: the documented examples', () => {
  it('example 1 (codec none) is reproduced byte for byte, by shoal and by the @noble re-implementation', () => {
    const pt = utf8(DOC_EX1.plaintext)
    const s = sealChunk(contentKey, pt)
    expect(s.codec).toBe('none')
    expect(hex(s.key)).toBe(DOC_EX1.key)
    expect(hex(s.blob)).toBe(DOC_EX1.blob)
    expect(hex(s.cid)).toBe(DOC_EX1.cid)
    const key = hmac(sha256, unhex(DOC_CONTENT_KEY), pt)
    expect(hex(nobleBlob(key, 0x00, pt))).toBe(DOC_EX1.blob)
    expect(hex(sha256(unhex(DOC_EX1.blob)))).toBe(DOC_EX1.cid)
  })

  it('example 2 (codec brotli) opens to its plaintext, with shoal and with @noble', () => {
    // Another brotli build may encode differently, so the pinned blob is checked by opening it.
    const blob = unhex(DOC_EX2.blob)
    const key = unhex(DOC_EX2.key)
    expect(hex(chunkKey(contentKey, utf8(DOC_EX2.plaintext)))).toBe(DOC_EX2.key)
    expect(hex(sha256(blob))).toBe(DOC_EX2.cid)
    const plain = openBlob(blob, key, { cid: unhex(DOC_EX2.cid), plainSize: 192 })
    expect(Buffer.from(plain).toString('utf8')).toBe(DOC_EX2.plaintext)
    const { codec, msg } = nobleOpen(blob, key)
    expect(codec).toBe(0x01)
    expect(Buffer.from(brotliDecompressSync(msg)).toString('utf8')).toBe(DOC_EX2.plaintext)
    expect(hex(nobleBlob(key, 0x01, msg))).toBe(DOC_EX2.blob)
  })
})

describe('sealChunk agrees with the @noble re-implementation', () => {
  it('on every kind of chunk, in both directions', () => {
    const inputs = [new Uint8Array(0), Uint8Array.of(0x42), textLike(100), textLike(16384, 7), rand(16384), rand(70_000), new Uint8Array(65536)]
    for (const pt of inputs) {
      for (const opts of [undefined, { compress: false }, { brotliQuality: 11 }]) {
        const s = sealChunk(contentKey, pt, opts)
        const key = hmac(sha256, contentKey, pt)
        expect(hex(s.key)).toBe(hex(key))
        // Decrypt with @noble, then rebuild the same blob from the message with @noble.
        const { codec, msg } = nobleOpen(s.blob, key)
        expect(codec).toBe(s.codec === 'brotli' ? 1 : 0)
        expect(hex(s.codec === 'brotli' ? brotliDecompressSync(msg) : msg)).toBe(hex(pt))
        expect(hex(nobleBlob(key, codec, msg))).toBe(hex(s.blob))
        expect(hex(s.cid)).toBe(hex(sha256(s.blob)))
        if (s.codec === 'none') expect(hex(nobleBlob(key, 0, pt))).toBe(hex(s.blob))
      }
    }
  })

  it('round-trips arbitrary bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), fc.boolean(), (pt, compress) => {
      const s = sealChunk(contentKey, pt, { compress })
      expect(s.plainSize).toBe(pt.length)
      expect(hex(openBlob(s.blob, s.key, { cid: s.cid, plainSize: pt.length }))).toBe(hex(pt))
      expect(hex(openBlob(s.blob, s.key))).toBe(hex(pt))
    }), { numRuns: 150 })
  })
})

describe('sealChunk', () => {
  it('round-trips empty, 1-byte, compressible, random and maximum-size chunks', () => {
    const cases: Array<[Uint8Array, string]> = [
      [new Uint8Array(0), 'none'], [Uint8Array.of(7), 'none'], [textLike(20_000), 'brotli'], [rand(20_000), 'none']
    ]
    for (const [pt, codec] of cases) {
      const s = sealChunk(contentKey, pt)
      expect(s.codec).toBe(codec)
      expect(s.plainSize).toBe(pt.length)
      expect(hex(openBlob(s.blob, s.key, { cid: s.cid, plainSize: pt.length }))).toBe(hex(pt))
    }
    const big = new Uint8Array(MAX_CHUNK_PLAINTEXT).fill(0x61)
    const s = sealChunk(contentKey, big)
    expect(s.codec).toBe('brotli')
    expect(openBlob(s.blob, s.key, { cid: s.cid, plainSize: big.length }).length).toBe(big.length)
    expect(openBlob(s.blob, s.key).length).toBe(big.length)
  })

  it('keeps brotli only when it is smaller', () => {
    const text = textLike(16384)
    const packed = sealChunk(contentKey, text)
    expect(packed.codec).toBe('brotli')
    expect(packed.blob.length).toBeLessThan(text.length / 2)
    expect(sealChunk(contentKey, rand(16384)).codec).toBe('none')
    expect(sealChunk(contentKey, rand(16384)).blob.length).toBe(16384 + 30)
    const plain = sealChunk(contentKey, text, { compress: false })
    expect(plain.codec).toBe('none')
    expect(plain.blob.length).toBe(text.length + 30)
    expect(hex(plain.key)).toBe(hex(packed.key))
  })

  it('is deterministic: same input, same blob and cid; other key or content, other blob', () => {
    const pt = textLike(5000, 3)
    const a = sealChunk(contentKey, pt)
    const b = sealChunk(contentKey, Uint8Array.from(pt))
    expectSealedEqual(a, b)
    const other = sealChunk(deriveFleetKeys(generateFleetSecret()).contentKey, pt)
    expect(hex(other.key)).not.toBe(hex(a.key))
    expect(hex(other.cid)).not.toBe(hex(a.cid))
    const pt2 = Uint8Array.from(pt)
    pt2[2500] = (pt2[2500] as number) ^ 1
    expect(hex(sealChunk(contentKey, pt2).cid)).not.toBe(hex(a.cid))
  })

  it('gives two encodings of one plaintext two different nonces (no GCM nonce reuse)', () => {
    const pt = textLike(16384, 5)
    const fast = sealChunk(contentKey, pt, { brotliQuality: 0 })
    const best = sealChunk(contentKey, pt, { brotliQuality: 11 })
    const raw = sealChunk(contentKey, pt, { compress: false })
    expect(hex(fast.key)).toBe(hex(best.key))
    expect(hex(fast.blob)).not.toBe(hex(best.blob))
    const nonces = new Set([fast, best, raw].map((s) => hex(s.blob.subarray(2, 14))))
    expect(nonces.size).toBe(3)
    for (const s of [fast, best, raw]) expect(hex(openBlob(s.blob, s.key, { plainSize: pt.length }))).toBe(hex(pt))
  })

  it('sealWithKey seals under the given key, and equals sealChunk under the chunk key', () => {
    const pt = textLike(3000, 9)
    expectSealedEqual(sealWithKey(chunkKey(contentKey, pt), pt), sealChunk(contentKey, pt))
    const k = rand(32)
    const s = sealWithKey(k, pt)
    expect(hex(s.key)).toBe(hex(k))
    expect(hex(openBlob(s.blob, k))).toBe(hex(pt))
  })

  it('refuses bad arguments with typed errors', () => {
    expect(() => sealChunk(new Uint8Array(31), Uint8Array.of(1))).toThrow(InvalidArgumentError)
    expect(() => sealWithKey(new Uint8Array(33), Uint8Array.of(1))).toThrow(InvalidArgumentError)
    expect(() => chunkKey(new Uint8Array(0), Uint8Array.of(1))).toThrow(InvalidArgumentError)
    for (const q of [-1, 12, 2.5, Number.NaN]) {
      expect(() => sealChunk(contentKey, Uint8Array.of(1), { brotliQuality: q })).toThrow(InvalidArgumentError)
    }
    expect(() => sealChunk(contentKey, new Uint8Array(MAX_CHUNK_PLAINTEXT + 1))).toThrow(OversizeError)
    expect(() => openBlob(unhex(DOC_EX1.blob), new Uint8Array(16))).toThrow(InvalidArgumentError)
  })
})

describe('openBlob refuses what it must', () => {
  const small = sealChunk(contentKey, textLike(300, 11))
  const smallPlain = sealChunk(contentKey, rand(40))

  function expectTyped (err: unknown, allowed: Array<abstract new (...a: never[]) => ShoalError>): void {
    expect(err).toBeInstanceOf(ShoalError)
    expect(allowed.some((C) => err instanceof C)).toBe(true)
  }

  it('detects one flipped bit at every bit of a small blob, with and without the cid', () => {
    for (const s of [small, smallPlain]) {
      expect(s.blob.length).toBeGreaterThan(30)
      for (let i = 0; i < s.blob.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = Uint8Array.from(s.blob)
          bad[i] = (bad[i] as number) ^ (1 << bit)
          const err = thrown(() => openBlob(bad, s.key))
          // Header bytes 0–1 are checked before decryption; everything else is caught by GCM.
          expectTyped(err, i < 2 ? [BlobFormatError, BlobAuthError] : [BlobAuthError])
          expect(thrown(() => openBlob(bad, s.key, { cid: s.cid, plainSize: s.plainSize }))).toBeInstanceOf(BlobCidMismatchError)
        }
      }
    }
  })

  it('detects a flipped bit at sampled positions of large blobs', () => {
    for (const pt of [rand(1 << 20), textLike(1 << 20, 4)]) {
      const s = sealChunk(contentKey, pt)
      const positions = [0, 1, 2, 13, 14, 15, s.blob.length - 17, s.blob.length - 16, s.blob.length - 1]
      for (let k = 0; k < 60; k++) positions.push(Math.floor(Math.random() * s.blob.length))
      for (const i of positions) {
        const bad = Uint8Array.from(s.blob)
        bad[i] = (bad[i] as number) ^ (1 << (i % 8))
        expectTyped(thrown(() => openBlob(bad, s.key)), i < 2 ? [BlobFormatError, BlobAuthError] : [BlobAuthError])
        expect(thrown(() => openBlob(bad, s.key, { cid: s.cid }))).toBeInstanceOf(BlobCidMismatchError)
      }
    }
  })

  it('refuses the wrong key, the wrong cid and a wrong size', () => {
    expect(() => openBlob(small.blob, rand(32))).toThrow(BlobAuthError)
    expect(() => openBlob(small.blob, smallPlain.key)).toThrow(BlobAuthError)
    const err = thrown(() => openBlob(small.blob, small.key, { cid: smallPlain.cid }))
    expect(err).toBeInstanceOf(BlobCidMismatchError)
    expect((err as BlobCidMismatchError).code).toBe('ERR_BLOB_CID')
    expect((err as BlobCidMismatchError).actual).toBe(cidToHex(small.cid))
    expect(() => openBlob(small.blob, small.key, { plainSize: small.plainSize - 1 })).toThrow(BlobSizeError)
    expect(() => openBlob(small.blob, small.key, { plainSize: small.plainSize + 1 })).toThrow(BlobSizeError)
    expect(() => openBlob(smallPlain.blob, smallPlain.key, { plainSize: 39 })).toThrow(BlobSizeError)
    expect(() => openBlob(smallPlain.blob, smallPlain.key, { plainSize: 41 })).toThrow(BlobSizeError)
    expect(() => openBlob(small.blob, small.key, { plainSize: -1 })).toThrow(BlobSizeError)
    expect(() => openBlob(small.blob, small.key, { plainSize: MAX_CHUNK_PLAINTEXT + 1 })).toThrow(BlobSizeError)
  })

  it('refuses every truncation and an extension', () => {
    for (let n = 0; n < small.blob.length; n++) {
      const err = thrown(() => openBlob(small.blob.subarray(0, n), small.key))
      expect(err).toBeInstanceOf(n < 30 ? BlobFormatError : BlobAuthError)
    }
    expect(() => openBlob(concat(small.blob, Uint8Array.of(0)), small.key)).toThrow(BlobAuthError)
    expect(() => openBlob(small.blob.subarray(1), small.key)).toThrow(ShoalError)
  })

  it('refuses an unknown format or codec even when authentic', () => {
    const key = rand(32)
    const msg = utf8('authentic but unreadable')
    expect(hex(openBlob(nobleBlob(key, 0x00, msg), key))).toBe(hex(msg)) // the crafted blobs are well made
    expect(() => openBlob(nobleBlob(key, 0x02, msg), key)).toThrow(BlobFormatError)
    expect(() => openBlob(nobleBlob(key, 0xff, msg), key)).toThrow(BlobFormatError)
    expect(() => openBlob(nobleBlob(key, 0x00, msg, 0xb2), key)).toThrow(BlobFormatError)
    expect(() => openBlob(nobleBlob(key, 0x01, msg), key)).toThrow(BlobFormatError) // not a brotli stream
  })

  it('refuses a decompression bomb made by a key holder', () => {
    const key = rand(32)
    const brotli = (n: number): Uint8Array => brotliCompressSync(new Uint8Array(n), { params: { [zc.BROTLI_PARAM_QUALITY]: 1 } })
    const bomb = nobleBlob(key, 0x01, brotli(64 * 1024 * 1024))
    expect(bomb.length).toBeLessThan(100_000)
    const err = thrown(() => openBlob(bomb, key))
    expect(err).toBeInstanceOf(BlobSizeError)
    // Stopped by the decompressor's output cap, not after inflating the whole 64 MiB.
    expect(((err as Error).cause as { code?: string }).code).toBe('ERR_BUFFER_TOO_LARGE')
    expect(() => openBlob(bomb, key, { plainSize: 16384 })).toThrow(BlobSizeError)
    const justOver = nobleBlob(key, 0x01, brotli(16385))
    expect(() => openBlob(justOver, key, { plainSize: 16384 })).toThrow(BlobSizeError)
    expect(openBlob(justOver, key, { plainSize: 16385 }).length).toBe(16385)
  })
})

describe('cid hex', () => {
  it('round-trips and is strict', () => {
    const cid = blobCid(utf8('x'))
    expect(cidToHex(cid)).toMatch(/^[0-9a-f]{64}$/)
    expect(hex(cidFromHex(cidToHex(cid)))).toBe(hex(cid))
    expect(cidFromHex(DOC_EX1.cid)).toBeInstanceOf(Uint8Array)
    for (const bad of [DOC_EX1.cid.toUpperCase(), DOC_EX1.cid.slice(1), DOC_EX1.cid + '0', 'g'.repeat(64), '', ` ${DOC_EX1.cid.slice(1)}`]) {
      expect(() => cidFromHex(bad)).toThrow(DecodeError)
    }
    expect(() => cidFromHex(42 as unknown as string)).toThrow(DecodeError)
    expect(() => cidToHex(new Uint8Array(31))).toThrow(InvalidArgumentError)
  })
})
