// Keys, signed envelopes, root.json (and its rotation chain) and channel heads. Every refusal is a
// typed ShoalError with a stable code.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { ed25519 } from '@noble/curves/ed25519.js'
import { canonicalize } from '../../src/core/canonical.js'
import { ShoalError } from '../../src/core/errors.js'
import {
  generateKeyPair, keyIdOf, keyPairFromSecret, sign, verifySignature, verifySignatureParts, encodePrivateKeyFile, decodePrivateKeyFile, publicKeyObject, type KeyPair, type PublicKey
} from '../../src/core/keys.js'
import {
  signEnvelope, appendSignatures, encodeEnvelope, verifyThreshold, signingBytes, decodeEnvelopeShape, SignatureThresholdError, MAX_SIGNATURES
} from '../../src/core/signed.js'
import {
  createRoot, decodeRoot, verifyRoot, verifyRootUpdate, verifyRootChain, roleChanged, RootExpiredError, MAX_ROOT_BYTES, type SignedRoot
} from '../../src/core/root.js'
import {
  signHead, decodeHead, verifyHead, checkHeadAdvance, checkManifestInHead, headId, HeadExpiredError, MAX_HEAD_BYTES, type HeadEntry
} from '../../src/core/head.js'
import type { SignedManifest } from '../../src/core/manifest.js'
import { code, thrown } from '../helpers/errors.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const now = new Date('2026-06-01T00:00:00Z')
const later = new Date('2027-06-01T00:00:00Z')
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex')


function fleet () {
  const rootKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()]
  const publisherKeys = [generateKeyPair(), generateKeyPair()]
  const onlineKeys = [generateKeyPair()]
  const root = createRoot({ rootKeys, rootThreshold: 2, publisherKeys, publisherThreshold: 2, onlineKeys, expires: later })
  return { rootKeys, publisherKeys, onlineKeys, root }
}

/** Re-encodes a JSON value canonically, like a forger who knows the format would. */
const reencode = (v: unknown): Uint8Array => enc.encode(canonicalize(v, { numbers: 'any' }))
const parse = (b: Uint8Array): any => JSON.parse(dec.decode(b)) // eslint-disable-line @typescript-eslint/no-explicit-any

describe('keys', () => {
  it('matches RFC 8032 §7.1 test vectors 1–3', () => {
    const vectors = [
      ['9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
      ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
        '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
      ['c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82',
        '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a']
    ]
    for (const [secret, pub, msg, sig] of vectors) {
      const kp = keyPairFromSecret(Buffer.from(secret!, 'hex'))
      expect(hexOf(kp.publicKey)).toBe(pub)
      expect(hexOf(sign(kp, Buffer.from(msg!, 'hex')))).toBe(sig)
      expect(verifySignature(kp.publicKey, Buffer.from(msg!, 'hex'), Buffer.from(sig!, 'hex'))).toBe(true)
    }
  })

  it('signs and verifies exactly like noble\'s own ed25519 (node:crypto SHA-512 inside)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 2000 }), (secret, msg) => {
      const kp = keyPairFromSecret(secret)
      expect(hexOf(kp.publicKey)).toBe(hexOf(ed25519.getPublicKey(secret)))
      const sig = sign(kp, msg)
      expect(hexOf(sig)).toBe(hexOf(ed25519.sign(msg, secret)))
      expect(verifySignature(kp.publicKey, msg, sig)).toBe(true)
      const bad = Uint8Array.from(sig); bad[msg.length % 64] = bad[msg.length % 64]! ^ 1
      expect(verifySignature(kp.publicKey, msg, bad)).toBe(false)
      expect(ed25519.verify(bad, msg, kp.publicKey)).toBe(false)
      return true
    }), { numRuns: 100 })
    // S + L (the same signature with a non-reduced scalar) is refused: no third-party malleability.
    const kp = generateKeyPair()
    const msg = enc.encode('m')
    const sig = sign(kp, msg)
    const L = 2n ** 252n + 27742317777372353535851937790883648493n
    let s = 0n
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]!)
    const big = s + L
    const forged = Uint8Array.from(sig)
    for (let i = 0; i < 32; i++) forged[32 + i] = Number((big >> BigInt(8 * i)) & 0xffn)
    if (big < 2n ** 256n) expect(verifySignature(kp.publicKey, msg, forged)).toBe(false)
  })

  it('verifies a message given in parts exactly as noble verifies it whole, damaged signatures and keys included', () => {
    const L = 2n ** 252n + 27742317777372353535851937790883648493n
    const le = (n: bigint): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn))
    const scalar = (b: Uint8Array): bigint => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n)
    // a small-order public key (the point of order 4), and one that is not on the curve's encoding range
    const smallOrder = Buffer.from('0000000000000000000000000000000000000000000000000000000000000080', 'hex')
    const outOfRange = Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex')
    const identity = Buffer.from('0100000000000000000000000000000000000000000000000000000000000000', 'hex')
    const damage = fc.constantFrom('none', 'bit', 'S+L', 'key', 'small-order key', 'small-order forgery', 'R out of range', 'message')
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 4 }), damage, fc.nat(), (secret, msg, cuts, how, at) => {
      const kp = keyPairFromSecret(secret)
      let pub = kp.publicKey
      let m = msg
      const sig = Uint8Array.from(sign(kp, msg))
      if (how === 'bit') sig[at % 64] = sig[at % 64]! ^ (1 << (at % 8))
      if (how === 'S+L') { const big = scalar(sig.subarray(32)) + L; if (big < 2n ** 256n) sig.set(le(big), 32) }
      if (how === 'key') pub = generateKeyPair().publicKey
      if (how === 'small-order key') pub = smallOrder
      // R = identity, S = 0 passes the cofactored equation for any message under a small-order key
      if (how === 'small-order forgery') { pub = smallOrder; sig.set(identity, 0); sig.fill(0, 32) }
      if (how === 'R out of range') sig.set(outOfRange, 0)
      if (how === 'message' && msg.length > 0) { m = Uint8Array.from(msg); m[at % m.length] = m[at % m.length]! ^ 1 }
      const points = [...new Set(cuts.map(c => c % (m.length + 1)))].sort((a, b) => a - b)
      const parts = [0, ...points, m.length].slice(1).map((end, i, ends) => m.subarray(i === 0 ? 0 : ends[i - 1], end))
      const want = ed25519.verify(sig, m, pub, { zip215: false })
      expect(verifySignatureParts(pub, parts, sig)).toBe(want)
      expect(verifySignature(pub, m, sig)).toBe(want)
      if (how === 'none') expect(want).toBe(true)
      return true
    }), { numRuns: 300 })
  })

  it('keyid = hex SHA-256 of {"keytype":"ed25519","public":"<hex>"}', () => {
    const kp = generateKeyPair()
    const text = `{"keytype":"ed25519","public":"${hexOf(kp.publicKey)}"}`
    expect(kp.keyid).toBe(createHash('sha256').update(text).digest('hex'))
    expect(keyIdOf(kp.publicKey)).toBe(kp.keyid)
    expect(code(() => keyIdOf(new Uint8Array(31)))).toBe('ERR_DECODE')
  })

  it('round-trips a private key file and refuses damaged, foreign or unknown ones', () => {
    const k = generateKeyPair()
    const file = encodePrivateKeyFile(k, 'publisher')
    const back = decodePrivateKeyFile(file)
    expect(back.role).toBe('publisher')
    expect(back.key.keyid).toBe(k.keyid)
    expect(hexOf(back.key.secretKey)).toBe(hexOf(k.secretKey))
    const o = parse(file)
    const variant = (edit: (x: any) => void): Uint8Array => { const c = structuredClone(o); edit(c); return enc.encode(JSON.stringify(c)) } // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(code(() => decodePrivateKeyFile(variant(x => { x.public = hexOf(generateKeyPair().publicKey) })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(variant(x => { x.keyid = 'a'.repeat(64) })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(variant(x => { x.keytype = 'rsa' })))).toBe('ERR_UNKNOWN_KEYTYPE')
    expect(code(() => decodePrivateKeyFile(variant(x => { x.version = 2 })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(variant(x => { x.extra = 1 })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(variant(x => { delete x.role })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(variant(x => { x.secret = x.secret.toUpperCase() })))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(file.subarray(0, file.length - 5)))).toBe('ERR_DECODE')
    expect(code(() => decodePrivateKeyFile(new Uint8Array(64 * 1024 + 1)))).toBe('ERR_OVERSIZE')
    expect(code(() => encodePrivateKeyFile(k, 'Bad Role'))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => encodePrivateKeyFile({ ...k, keyid: 'b'.repeat(64) }, 'root'))).toBe('ERR_INVALID_ARGUMENT')
  })
})

describe('signed envelopes', () => {
  const ks = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()]
  const keys: Record<string, PublicKey> = Object.fromEntries(ks.map(k => [k.keyid, publicKeyObject(k.publicKey)]))
  const role = { keyids: ks.slice(0, 3).map(k => k.keyid), threshold: 2 }
  const body = { hello: 'world', n: 1 }

  it('signs "shoal/v1/<type>\\n" ‖ canonical(signed) and verifies a threshold', () => {
    const msg = signingBytes('head', { b: 1, a: 'x' })
    expect(dec.decode(msg)).toBe('shoal/v1/head\n{"a":"x","b":1}')
    const env = signEnvelope('head', body, [ks[0]!, ks[1]!])
    expect(ed25519.verify(Buffer.from(env.signatures[0]!.sig, 'base64'), signingBytes('head', body), ks[0]!.publicKey)).toBe(true)
    expect(verifyThreshold('head', env, role, keys).sort()).toEqual([ks[0]!.keyid, ks[1]!.keyid].sort())
    expect(dec.decode(encodeEnvelope(env))).toBe(canonicalize({ signed: body, signatures: env.signatures }))
  })

  it('refuses below threshold, saying how many of how many', () => {
    const err = thrown(() => verifyThreshold('head', signEnvelope('head', body, [ks[0]!]), role, keys))
    expect(err).toBeInstanceOf(SignatureThresholdError)
    expect((err as SignatureThresholdError).valid).toBe(1)
    expect((err as SignatureThresholdError).needed).toBe(2)
    expect(err.message).toMatch(/1 valid .* 2 needed/)
  })

  it('does not count keys outside the role, nor the same key twice', () => {
    // ks[3] is a known key but not in the role.
    expect(code(() => verifyThreshold('head', signEnvelope('head', body, [ks[0]!, ks[3]!]), role, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
    const one = signEnvelope('head', body, [ks[0]!])
    const dup = { signed: body, signatures: [one.signatures[0]!, one.signatures[0]!, one.signatures[0]!] }
    expect(code(() => verifyThreshold('head', dup, role, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
    // A role listing one keyid twice is still one vote.
    expect(code(() => verifyThreshold('head', one, { keyids: [ks[0]!.keyid, ks[0]!.keyid], threshold: 2 }, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
    // The same public key under a second, made-up id never counts.
    const fake = 'f'.repeat(64)
    const twice = { signed: body, signatures: [one.signatures[0]!, { keyid: fake, sig: one.signatures[0]!.sig }] }
    expect(code(() => verifyThreshold('head', twice, { keyids: [ks[0]!.keyid, fake], threshold: 2 }, { ...keys, [fake]: keys[ks[0]!.keyid]! }))).toBe('ERR_SIGNATURE_THRESHOLD')
  })

  it('ignores one bad signature beside enough good ones', () => {
    const env = signEnvelope('head', body, [ks[0]!, ks[1]!])
    const bad = signEnvelope('head', { other: true }, [ks[2]!]).signatures[0]!
    const mangled = { keyid: ks[0]!.keyid, sig: Buffer.alloc(64, 7).toString('base64') }
    for (const extra of [bad, mangled, { keyid: ks[2]!.keyid, sig: 'not base64!' }]) {
      expect(verifyThreshold('head', { signed: body, signatures: [extra, ...env.signatures] }, role, keys)).toHaveLength(2)
    }
  })

  it('separates domains: a signature for one type never verifies as another', () => {
    const env = signEnvelope('manifest', body, [ks[0]!, ks[1]!])
    for (const t of ['root', 'head', 'record'] as const) expect(code(() => verifyThreshold(t, env, role, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => signingBytes('bogus' as 'root', body))).toBe('ERR_INVALID_ARGUMENT')
  })

  it('refuses a role of an unknown key type and a threshold below 1', () => {
    const env = signEnvelope('head', body, [ks[0]!, ks[1]!])
    const odd = { ...keys, [ks[2]!.keyid]: { keytype: 'rsa', public: 'ab' } as unknown as PublicKey }
    expect(code(() => verifyThreshold('head', env, role, odd))).toBe('ERR_UNKNOWN_KEYTYPE')
    expect(code(() => verifyThreshold('head', env, { ...role, threshold: 0 }, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyThreshold('head', env, { ...role, threshold: 1.5 }, keys))).toBe('ERR_SIGNATURE_THRESHOLD')
  })

  it('adds signatures one holder at a time, skipping keys that already signed', () => {
    let env = signEnvelope('root', body, [ks[0]!])
    env = appendSignatures('root', env, [ks[0]!, ks[1]!])
    expect(env.signatures.map(s => s.keyid)).toEqual([ks[0]!.keyid, ks[1]!.keyid])
    expect(signEnvelope('root', body, [ks[0]!, ks[0]!]).signatures).toHaveLength(1)
  })

  it('decodes only well-formed signature lists', () => {
    const env = signEnvelope('head', body, [ks[0]!])
    const sig = env.signatures[0]!.sig
    // The last base64 character of 64 bytes carries 4 spare bits; a non-zero spelling is refused.
    const spare = sig.slice(0, 85) + String.fromCharCode(sig.charCodeAt(85) + 1) + '=='
    expect(Buffer.from(spare, 'base64').equals(Buffer.from(sig, 'base64'))).toBe(true)
    expect(code(() => decodeEnvelopeShape({ signed: body, signatures: [{ keyid: ks[0]!.keyid, sig: spare }] }, 'x'))).toBe('ERR_DECODE')
    expect(code(() => decodeEnvelopeShape({ signed: body, signatures: Array(MAX_SIGNATURES + 1).fill(env.signatures[0]) }, 'x'))).toBe('ERR_DECODE')
    expect(code(() => decodeEnvelopeShape({ signed: body, signatures: [{ keyid: ks[0]!.keyid.toUpperCase(), sig }] }, 'x'))).toBe('ERR_DECODE')
    expect(code(() => decodeEnvelopeShape({ signed: body, signatures: [{ keyid: ks[0]!.keyid, sig, extra: 1 }] }, 'x'))).toBe('ERR_DECODE')
    expect(code(() => decodeEnvelopeShape({ signed: body }, 'x'))).toBe('ERR_DECODE')
    expect(code(() => decodeEnvelopeShape({ signed: body, signatures: [], more: 1 }, 'x'))).toBe('ERR_DECODE')
  })
})

describe('root.json', () => {
  it('round-trips, verifies, and checks expiry with grace', () => {
    const { root } = fleet()
    const bytes = encodeEnvelope(root)
    const back = decodeRoot(bytes)
    expect(back).toEqual(root)
    verifyRoot(back, now)
    // Also any other JSON spelling (roots travel pretty-printed inside enrollment bundles).
    verifyRoot(decodeRoot(enc.encode(JSON.stringify(root, null, 2))), now)
    const err = thrown(() => verifyRoot(root, later))
    expect(err).toBeInstanceOf(RootExpiredError)
    expect(err.code).toBe('ERR_EXPIRED')
    verifyRoot(root, new Date(later.getTime() + 59_000), { graceSeconds: 60 })
    expect(code(() => verifyRoot(root, new Date(later.getTime() + 60_000), { graceSeconds: 60 }))).toBe('ERR_EXPIRED')
    expect(code(() => verifyRoot(root, now, { graceSeconds: -1 }))).toBe('ERR_INVALID_ARGUMENT')
  })

  it('refuses a root below its own threshold or signed by other keys', () => {
    const { root, rootKeys, publisherKeys } = fleet()
    expect(code(() => verifyRoot(signEnvelope('root', root.signed, [rootKeys[0]!]), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyRoot(signEnvelope('root', root.signed, publisherKeys), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    verifyRoot(signEnvelope('root', root.signed, [rootKeys[2]!, rootKeys[0]!]), now)
  })

  it('refuses every tampered field of the signed body', () => {
    const { root } = fleet()
    const stranger = generateKeyPair()
    const edits: Array<(s: any) => void> = [ // eslint-disable-line @typescript-eslint/no-explicit-any
      s => { s.version = 2 },
      s => { s.expires = '2099-01-01T00:00:00Z' },
      s => { s.keys[stranger.keyid] = publicKeyObject(stranger.publicKey) },
      s => { s.roles.root.threshold = 1 },
      s => { s.roles.publisher.keyids.push(s.roles.root.keyids[0]); s.roles.publisher.threshold = 1 },
      s => { s.keys[stranger.keyid] = publicKeyObject(stranger.publicKey); s.roles.online.keyids = [stranger.keyid] }
    ]
    for (const edit of edits) {
      const copy = structuredClone(root) as any // eslint-disable-line @typescript-eslint/no-explicit-any
      edit(copy.signed)
      expect(code(() => verifyRoot(decodeRoot(reencode(copy)), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    }
  })

  it('refuses malformed roots with typed errors, and oversize input before parsing', () => {
    const { root } = fleet()
    const base = parse(encodeEnvelope(root))
    const variant = (edit: (x: any) => void): Uint8Array => { const c = structuredClone(base); edit(c); return reencode(c) } // eslint-disable-line @typescript-eslint/no-explicit-any
    const firstKey = Object.keys(base.signed.keys)[0] as string
    const cases: Array<[string, Uint8Array, string]> = [
      ['unknown field', variant(x => { x.signed.extra = 1 }), 'ERR_DECODE'],
      ['unknown envelope field', variant(x => { x.extra = 1 }), 'ERR_DECODE'],
      ['wrong _type', variant(x => { x.signed._type = 'head' }), 'ERR_DECODE'],
      ['unknown formatVersion', variant(x => { x.signed.formatVersion = 2 }), 'ERR_DECODE'],
      ['missing roles', variant(x => { delete x.signed.roles }), 'ERR_DECODE'],
      ['unknown role', variant(x => { x.signed.roles.admin = x.signed.roles.root }), 'ERR_DECODE'],
      ['unknown keytype', variant(x => { x.signed.keys[firstKey].keytype = 'ecdsa-p256' }), 'ERR_UNKNOWN_KEYTYPE'],
      ['key under a foreign id', variant(x => { x.signed.keys[firstKey].public = hexOf(generateKeyPair().publicKey) }), 'ERR_DECODE'],
      ['role names a missing key', variant(x => { x.signed.roles.online.keyids = ['e'.repeat(64)] }), 'ERR_DECODE'],
      ['threshold above the key count', variant(x => { x.signed.roles.root.threshold = 4 }), 'ERR_DECODE'],
      ['threshold 0', variant(x => { x.signed.roles.root.threshold = 0 }), 'ERR_DECODE'],
      ['empty role', variant(x => { x.signed.roles.online.keyids = [] }), 'ERR_DECODE'],
      ['non-integer version', variant(x => { x.signed.version = 1.5 }), 'ERR_DECODE'],
      ['version 0', variant(x => { x.signed.version = 0 }), 'ERR_DECODE'],
      ['negative version', variant(x => { x.signed.version = -1 }), 'ERR_DECODE'],
      ['not a date', variant(x => { x.signed.expires = '2027-02-30T00:00:00Z' }), 'ERR_DECODE'],
      ['not UTC seconds', variant(x => { x.signed.expires = '2027-01-01T00:00:00.000Z' }), 'ERR_DECODE'],
      ['unsafe integer', enc.encode(dec.decode(encodeEnvelope(root)).replace('"version":1', '"version":9007199254740993')), 'ERR_DECODE'],
      ['truncated', encodeEnvelope(root).subarray(0, 100), 'ERR_DECODE'],
      ['not UTF-8', Uint8Array.from([0x7b, 0xff, 0x7d]), 'ERR_DECODE'],
      ['byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), encodeEnvelope(root)]), 'ERR_DECODE'],
      ['oversize', new Uint8Array(MAX_ROOT_BYTES + 1).fill(0xff), 'ERR_OVERSIZE']
    ]
    for (const [name, bytes, want] of cases) expect(code(() => decodeRoot(bytes)), name).toBe(want)
  })

  it('refuses impossible roots at creation', () => {
    const k = [generateKeyPair(), generateKeyPair()]
    const o = { rootKeys: k, rootThreshold: 1, publisherKeys: k, publisherThreshold: 1, onlineKeys: k, expires: later }
    createRoot(o)
    expect(code(() => createRoot({ ...o, rootThreshold: 3 }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => createRoot({ ...o, publisherThreshold: 0 }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => createRoot({ ...o, onlineKeys: [] }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => createRoot({ ...o, rootKeys: [k[0]!, k[0]!] }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => createRoot({ ...o, version: 0 }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => createRoot({ ...o, expires: new Date(NaN) }))).toBe('ERR_INVALID_ARGUMENT')
  })

  describe('rotation (TUF root chain)', () => {
    const a = fleet()
    const newKeys = [generateKeyPair(), generateKeyPair(), generateKeyPair()]
    const next = (signers: KeyPair[], version = 2, expires = later): SignedRoot => createRoot({
      rootKeys: newKeys, rootThreshold: 2, publisherKeys: a.publisherKeys, publisherThreshold: 2, onlineKeys: a.onlineKeys, expires, version, signers
    })
    const old2 = [a.rootKeys[0]!, a.rootKeys[2]!]
    const new2 = [newKeys[1]!, newKeys[2]!]

    it('accepts version + 1 with a threshold of the old and of the new root keys', () => {
      const r2 = next([...old2, ...new2])
      verifyRootUpdate(a.root, decodeRoot(encodeEnvelope(r2)), now)
    })
    it('refuses only the old keys, only the new keys, or below either threshold', () => {
      expect(code(() => verifyRootUpdate(a.root, next(a.rootKeys), now))).toBe('ERR_SIGNATURE_THRESHOLD')
      expect(code(() => verifyRootUpdate(a.root, next(newKeys), now))).toBe('ERR_SIGNATURE_THRESHOLD')
      expect(code(() => verifyRootUpdate(a.root, next([...old2, newKeys[0]!]), now))).toBe('ERR_SIGNATURE_THRESHOLD')
      expect(code(() => verifyRootUpdate(a.root, next([a.rootKeys[1]!, ...new2]), now))).toBe('ERR_SIGNATURE_THRESHOLD')
    })
    it('refuses a version jump, a replay and a rollback', () => {
      expect(code(() => verifyRootUpdate(a.root, next([...old2, ...new2], 3), now))).toBe('ERR_ROOT_CHAIN')
      expect(code(() => verifyRootUpdate(a.root, next([...old2, ...new2], 1), now))).toBe('ERR_ROLLBACK')
      const r2 = next([...old2, ...new2])
      expect(code(() => verifyRootUpdate(r2, a.root, now))).toBe('ERR_ROLLBACK')
    })
    it('walks a chain in which only the newest root must be unexpired', () => {
      const soon = new Date('2026-05-01T00:00:00Z') // before `now`
      const r2 = next([...old2, ...new2], 2, soon)
      expect(code(() => verifyRootUpdate(a.root, r2, now))).toBe('ERR_EXPIRED')
      verifyRootUpdate(a.root, r2, now, { checkExpiry: false })
      const newer = [generateKeyPair(), generateKeyPair()]
      const r3 = createRoot({ rootKeys: newer, rootThreshold: 1, publisherKeys: a.publisherKeys, publisherThreshold: 1, onlineKeys: [generateKeyPair()], expires: later, version: 3, signers: [...new2, newer[0]!] })
      expect(verifyRootChain(a.root, [r2, r3], now)).toBe(r3)
      expect(code(() => verifyRootChain(a.root, [r2], now))).toBe('ERR_EXPIRED')
      expect(code(() => verifyRootChain(a.root, [r3], now))).toBe('ERR_ROOT_CHAIN')
      expect(roleChanged(a.root, r3, 'online')).toBe(true)
      expect(roleChanged(a.root, r3, 'publisher')).toBe(true) // threshold 2 → 1
      expect(roleChanged(a.root, r2, 'online')).toBe(false)
      expect(roleChanged(a.root, r2, 'root')).toBe(true)
    })
  })

  it('turns random bytes and mutations of a valid root into typed errors, never a forgery', () => {
    const { root } = fleet()
    const good = encodeEnvelope(root)
    const signedText = canonicalize(root.signed)
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => { code(() => decodeRoot(b)); return true }), { numRuns: 1000 })
    fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const m = Uint8Array.from(good); m[i] = m[i]! ^ x
      try {
        const r = decodeRoot(m)
        verifyRoot(r, now)
        // Only a change outside the signed body (a signature list edit that keeps a threshold) may pass.
        expect(canonicalize(r.signed)).toBe(signedText)
      } catch (err) { expect(err).toBeInstanceOf(ShoalError) }
      return true
    }), { numRuns: 2000 })
  })
})

describe('channel head', () => {
  const f = fleet()
  const id1 = 'a'.repeat(64)
  const pk = (manifest: string, seq: number, version: string): HeadEntry => ({ manifest, seq, version })
  const mkHead = (o: Partial<{ seq: number, expires: Date, packages: Record<string, HeadEntry>, signers: KeyPair[], channel: string }> = {}) => signHead({
    channel: o.channel ?? 'stable', seq: o.seq ?? 5, issued: new Date('2026-05-31T23:00:00Z'), expires: o.expires ?? new Date('2026-06-02T00:00:00Z'),
    packages: o.packages ?? { app: pk(id1, 3, '1.2.3'), tool: pk('b'.repeat(64), 1, '0.1.0') }, signers: o.signers ?? f.onlineKeys
  })

  it('signs, decodes and verifies with the online key; canonical bytes only', () => {
    const h = mkHead()
    expect(h.id).toBe(headId(h.bytes))
    const back = decodeHead(h.bytes)
    expect(back).toEqual(h.head)
    verifyHead(back, f.root, now, { expectChannel: 'stable' })
    expect(code(() => verifyHead(back, f.root, now, { expectChannel: 'beta' }))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => decodeHead(enc.encode(JSON.stringify(parse(h.bytes), null, 1))))).toBe('ERR_DECODE')
    expect(code(() => decodeHead(enc.encode(dec.decode(h.bytes).replace('{"signatures"', '{"signatures":[],"signatures"'))))).toBe('ERR_DECODE') // duplicate key
  })

  it('refuses a head signed by publisher or root keys, and an expired one (with grace)', () => {
    expect(code(() => verifyHead(mkHead({ signers: f.publisherKeys }).head, f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    expect(code(() => verifyHead(mkHead({ signers: f.rootKeys }).head, f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    const h = mkHead().head
    const at = new Date('2026-06-02T00:00:00Z')
    const err = thrown(() => verifyHead(h, f.root, at))
    expect(err).toBeInstanceOf(HeadExpiredError)
    expect(err.code).toBe('ERR_EXPIRED')
    verifyHead(h, f.root, at, { graceSeconds: 120 })
    // An expired root makes every head untrusted too.
    expect(code(() => verifyHead(mkHead({ expires: new Date('2028-01-01T00:00:00Z') }).head, f.root, new Date('2027-07-01T00:00:00Z')))).toBe('ERR_EXPIRED')
  })

  it('refuses every tampered field of the signed body', () => {
    const base = parse(mkHead().bytes)
    const edits: Array<(s: any) => void> = [ // eslint-disable-line @typescript-eslint/no-explicit-any
      s => { s.channel = 'beta' }, s => { s.seq = 6 }, s => { s.issued = '2026-05-31T22:00:00Z' }, s => { s.expires = '2030-01-01T00:00:00Z' },
      s => { s.packages.app.manifest = 'c'.repeat(64) }, s => { s.packages.app.seq = 4 }, s => { s.packages.app.version = '1.2.4' },
      s => { delete s.packages.tool }, s => { s.packages.evil = { manifest: id1, seq: 1, version: '6.6.6' } }
    ]
    for (const edit of edits) {
      const copy = structuredClone(base)
      edit(copy.signed)
      expect(code(() => verifyHead(decodeHead(reencode(copy)), f.root, now))).toBe('ERR_SIGNATURE_THRESHOLD')
    }
  })

  it('refuses malformed heads with typed errors, oversize before parsing', () => {
    const base = parse(mkHead().bytes)
    const variant = (edit: (x: any) => void): Uint8Array => { const c = structuredClone(base); edit(c); return reencode(c) } // eslint-disable-line @typescript-eslint/no-explicit-any
    const cases: Array<[string, Uint8Array, string]> = [
      ['unknown field', variant(x => { x.signed.note = 'hi' }), 'ERR_DECODE'],
      ['unknown entry field', variant(x => { x.signed.packages.app.url = 'x' }), 'ERR_DECODE'],
      ['wrong _type', variant(x => { x.signed._type = 'manifest' }), 'ERR_DECODE'],
      ['unknown formatVersion', variant(x => { x.signed.formatVersion = 0 }), 'ERR_DECODE'],
      ['bad package name', enc.encode(dec.decode(mkHead().bytes).replace('"packages":{', `"packages":{"__proto__":{"manifest":"${id1}","seq":1,"version":"1.0.0"},`)), 'ERR_DECODE'],
      ['upper-case package name', variant(x => { x.signed.packages.App = x.signed.packages.app }), 'ERR_DECODE'],
      ['bad version', variant(x => { x.signed.packages.app.version = 'v1' }), 'ERR_DECODE'],
      ['expires before issued', variant(x => { x.signed.expires = '2026-05-01T00:00:00Z' }), 'ERR_DECODE'],
      ['seq 0', variant(x => { x.signed.seq = 0 }), 'ERR_DECODE'],
      ['unsafe seq', enc.encode(dec.decode(mkHead().bytes).replace('"seq":5', '"seq":9007199254740992')), 'ERR_DECODE'],
      ['oversize', new Uint8Array(MAX_HEAD_BYTES + 1).fill(0x20), 'ERR_OVERSIZE']
    ]
    for (const [name, bytes, want] of cases) expect(code(() => decodeHead(bytes)), name).toBe(want)
    expect(code(() => mkHead({ channel: 'Bad' }))).toBe('ERR_INVALID_ARGUMENT')
    expect(code(() => mkHead({ packages: { app: pk('xyz', 1, '1.0.0') } }))).toBe('ERR_INVALID_ARGUMENT')
  })

  it('turns random bytes and mutations into typed errors, never a forgery', () => {
    const good = mkHead().bytes
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => { code(() => decodeHead(b)); return true }), { numRuns: 1000 })
    fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const m = Uint8Array.from(good); m[i] = m[i]! ^ x
      try { verifyHead(decodeHead(m), f.root, now) } catch (err) { expect(err).toBeInstanceOf(ShoalError); return true }
      return false
    }), { numRuns: 2000 })
  })

  it('refuses rollback of the head and of any package in it', () => {
    const h5 = mkHead().head.signed
    expect(checkHeadAdvance(null, h5)).toBe('new')
    expect(checkHeadAdvance(h5, decodeHead(mkHead().bytes).signed)).toBe('same')
    expect(checkHeadAdvance(h5, mkHead({ seq: 6, packages: { app: pk('d'.repeat(64), 4, '1.3.0') } }).head.signed)).toBe('new') // tool may leave
    expect(checkHeadAdvance(h5, mkHead({ seq: 6, packages: { app: pk('d'.repeat(64), 3, '1.2.3') } }).head.signed)).toBe('new') // re-signed release
    expect(code(() => checkHeadAdvance(h5, mkHead({ seq: 4 }).head.signed))).toBe('ERR_ROLLBACK')
    expect(code(() => checkHeadAdvance(h5, mkHead({ seq: 5, packages: {} }).head.signed))).toBe('ERR_ROLLBACK')
    expect(code(() => checkHeadAdvance(h5, mkHead({ seq: 6, packages: { app: pk(id1, 2, '1.2.2') } }).head.signed))).toBe('ERR_ROLLBACK')
    expect(code(() => checkHeadAdvance(h5, mkHead({ seq: 6, packages: { app: pk(id1, 3, '1.2.9') } }).head.signed))).toBe('ERR_ROLLBACK')
    expect(code(() => checkHeadAdvance(h5, mkHead({ channel: 'beta' }).head.signed))).toBe('ERR_INVALID_ARGUMENT')
  })

  it('refuses a manifest the head does not name (mix-and-match)', () => {
    const h = mkHead().head.signed
    const m = (o: Partial<{ package: string, version: string, seq: number, channel: string }> = {}): SignedManifest =>
      ({ signed: { package: 'app', version: '1.2.3', seq: 3, channel: 'stable', ...o }, signatures: [] }) as unknown as SignedManifest
    expect(checkManifestInHead(h, m(), id1)).toEqual(pk(id1, 3, '1.2.3'))
    expect(code(() => checkManifestInHead(h, m(), 'e'.repeat(64)))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => checkManifestInHead(h, m({ package: 'other' }), id1))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => checkManifestInHead(h, m({ package: 'constructor' }), id1))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => checkManifestInHead(h, m({ channel: 'beta' }), id1))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => checkManifestInHead(h, m({ seq: 2 }), id1))).toBe('ERR_MIX_AND_MATCH')
    expect(code(() => checkManifestInHead(h, m({ version: '1.2.2' }), id1))).toBe('ERR_MIX_AND_MATCH')
  })
})
