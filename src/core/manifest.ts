// The release manifest (DESIGN §2, docs/protocol.md): a public chunk table, signed by a threshold
// of publisher keys, with the file tree, chunk keys and hooks sealed under the content key. Every
// field is checked before use; a payload that opens is validated as hostile input all the same
// (a stolen publisher key must not be able to write outside the install folder).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { ShoalError, DecodeError, InvalidArgumentError, quoteValue } from './errors.js'
import type { KeyPair } from './keys.js'
import { checkRootFresh, type SignedRoot } from './root.js'
import { canonicalBytes } from './canonical.js'
import { ChunkTable } from './chunk-table.js'
import { validateRolloutPolicy, type RolloutPolicy } from './rollout-policy.js'
import {
  signEnvelope, encodeEnvelope, verifyThreshold, isExpired, isoSeconds, parseJsonBytes, requireCanonical, decodeEnvelopeShape,
  signedBody, obj, need, list, str, int, timestamp, base64, HEX64, MetadataExpiredError, rememberDecodedBody, forgetDecodedBody,
  type Envelope
} from './signed.js'

export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024
export const MAX_CHUNKS = 4_000_000
export const MAX_PAYLOAD_FILES = 1_000_000
export const MAX_PATH_BYTES = 4096
export const MAX_SEGMENT_BYTES = 255
export const MAX_CHUNK_PLAINTEXT = 16 * 1024 * 1024
/** A sealed blob is its encoded chunk + 30 bytes (docs/protocol.md §4.3). */
export const MIN_BLOB_BYTES = 30
export const MAX_BLOB_BYTES = MAX_CHUNK_PLAINTEXT + MIN_BLOB_BYTES
export const MAX_HOOK_BYTES = 1024 * 1024
export const MAX_NOTES_BYTES = 1024 * 1024
/** Most chunks one delta may rebuild, and most base chunks it may name. */
export const MAX_DELTA_TARGETS = 4096
export const MAX_DELTA_BASE_CHUNKS = 4096
/** Most bytes of one delta's base, and of its targets together (as src/core/delta.ts enforces). */
export const MAX_DELTA_BASE_BYTES = 16 * 1024 * 1024
export const MAX_DELTA_TARGET_BYTES = 16 * 1024 * 1024
/** Smallest delta plaintext: the 22-byte SDLT header and a zstd frame of at least 1 byte. */
export const MIN_DELTA_BYTES = 23
export const PAYLOAD_KEY_INFO = 'shoal/v1/manifest-payload'
export const PAYLOAD_NONCE_BYTES = 12
export const PAYLOAD_TAG_BYTES = 16

export const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/
/** Site and ring labels (daemon config, rollout policies, control messages). */
export const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
// Semantic Versioning 2.0.0, the official regular expression (semver.org).
export const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/
export const MAX_VERSION_LENGTH = 128

export interface ChunkRef { cid: string /* hex */, size: number /* blob bytes */ }
export interface FileChunk { index: number /* into the chunk table */, key: string /* hex chunk key */, size: number /* plaintext bytes */ }
export interface FileEntry { path: string, type: 'file' | 'dir' | 'symlink', mode: number, size: number, sha256?: string, target?: string, chunks?: FileChunk[] }
/**
 * Where a delta's base bytes come from: the chunks [first, first + count) of file `path` in the
 * release `version` of the same package (its own payload gives their chunk-table indices and keys,
 * its chunk table their cids), concatenated; `size` is their total plaintext length.
 */
export interface DeltaBaseRef { version: string, path: string, first: number, count: number, size: number }
/**
 * A delta blob (docs/delta.md, "Delta blobs in the manifest"): chunk-table entry `index`, opened
 * with `key`, `size` plaintext bytes (an SDLT delta); decoded against `base` it yields the
 * plaintexts of the chunks `targets` (chunk-table indices of file chunks), concatenated in order.
 */
export interface PayloadDelta { index: number, key: string, size: number, targets: number[], base: DeltaBaseRef }
export interface ManifestPayload { files: FileEntry[], hooks?: { preinstall?: string, postinstall?: string }, notes?: string, deltas?: PayloadDelta[] }
export interface ChunkerParams { minSize: number, avgSize: number, maxSize: number }
export interface ManifestBody {
  _type: 'manifest'
  formatVersion: 1
  package: string
  version: string
  seq: number
  channel: string
  created: string
  expires: string
  chunker: ChunkerParams
  rollout?: RolloutPolicy
  chunks: ChunkRef[]
  payload: { alg: 'aes-256-gcm', nonce: string, ciphertext: string }
}
export type SignedManifest = Envelope<ManifestBody>
/**
 * What a verified manifest is still needed for once its payload is open (download, install): the
 * chunk table, names and rollout. Not the sealed payload — 7.8 MB of base64 text for a release of
 * 57 000 chunks, held for nothing through the whole download — nor the signatures.
 */
export interface ManifestTable { signed: Pick<ManifestBody, 'package' | 'version' | 'rollout'> & { chunks: ChunkTable } }

/** The table of a decoded (and verified) manifest, its chunks compact (src/core/chunk-table.ts). */
export function manifestTable (m: SignedManifest | ManifestTable): ManifestTable {
  const { package: pkg, version, chunks, rollout } = m.signed
  return { signed: { package: pkg, version, chunks: ChunkTable.from(chunks), ...(rollout !== undefined ? { rollout } : {}) } }
}

export class ManifestExpiredError extends MetadataExpiredError {
  constructor (what: string, expires: string, now: Date) {
    super(what, expires, now, ': publish a newer release (or re-sign this one) before endpoints can install it')
  }
}
export class PayloadDecryptError extends ShoalError {
  constructor (what: string) {
    super('ERR_PAYLOAD_DECRYPT', `${what}: the sealed payload does not open with this fleet's content key (another fleet's manifest, or tampered)`)
  }
}
export class InvalidPathError extends ShoalError {
  readonly path: string
  constructor (path: string, reason: string) {
    super('ERR_INVALID_PATH', `manifest path ${JSON.stringify(path.slice(0, 200))} refused: ${reason}`)
    this.path = path
  }
}
/** A manifest served where another package or channel was asked for. */
export class WrongPackageError extends ShoalError {
  constructor (message: string) {
    super('ERR_WRONG_PACKAGE', message)
  }
}

export function validatePackageName (s: string, what = 'package name'): string {
  if (typeof s !== 'string' || !PACKAGE_NAME.test(s)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(s)} is invalid: use 1–128 of a-z, 0-9, ".", "_", "-", starting with a letter or digit`)
  }
  return s
}

export function validateChannelName (s: string): string {
  return validatePackageName(s, 'channel')
}

export function validateVersion (s: string): string {
  if (typeof s !== 'string' || s.length > MAX_VERSION_LENGTH || !SEMVER.test(s)) {
    throw new InvalidArgumentError(`version ${JSON.stringify(s)} is not a semantic version of at most ${MAX_VERSION_LENGTH} characters (e.g. 1.2.3 or 2.0.0-rc.1)`)
  }
  return s
}

const utf8 = new TextEncoder()

/** A key derived from the content key (§1.5.1); `info` keeps keys of different uses apart. */
export function contentSubkey (contentKey: Uint8Array, info: string): Uint8Array {
  if (!(contentKey instanceof Uint8Array) || contentKey.length !== 32) throw new InvalidArgumentError('the content key must be 32 bytes')
  return hkdf(sha256, contentKey, undefined, utf8.encode(info), 32)
}

function payloadKey (contentKey: Uint8Array): Uint8Array {
  return contentSubkey(contentKey, PAYLOAD_KEY_INFO)
}

/** AAD: the payload opens only inside the release it was sealed for. */
function payloadAad (b: { package: string, version: string, seq: number, channel: string }): Uint8Array {
  return canonicalBytes({ channel: b.channel, package: b.package, seq: b.seq, version: b.version })
}

/** AES-256-GCM of `plain` under `key`, `nonce` and `aad`: ciphertext ‖ tag. */
export function sealGcm (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: PAYLOAD_TAG_BYTES })
  cipher.setAAD(aad)
  return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()])
}

/** The plaintext of ciphertext ‖ tag, or null when it does not open (wrong key, nonce or AAD, tampered). */
export function openGcm (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Buffer | null {
  if (sealed.length < PAYLOAD_TAG_BYTES || nonce.length !== PAYLOAD_NONCE_BYTES) return null
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: PAYLOAD_TAG_BYTES })
    d.setAAD(aad)
    d.setAuthTag(sealed.subarray(sealed.length - PAYLOAD_TAG_BYTES))
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - PAYLOAD_TAG_BYTES)), d.final()])
  } catch {
    return null
  }
}

/**
 * The sealed payload's ciphertext ‖ tag for exactly these bytes, under the manifest's nonce: AES-GCM
 * is deterministic given key, nonce, AAD and plaintext, so the plaintext a manifest was sealed from
 * rebuilds its ciphertext byte for byte (src/core/manifest-patch.ts relies on it).
 */
export function sealPayloadBytes (b: { package: string, version: string, seq: number, channel: string }, nonce: Uint8Array, plain: Uint8Array, contentKey: Uint8Array): Buffer {
  return sealGcm(payloadKey(contentKey), nonce, payloadAad(b), plain)
}

/** The sealed payload's plaintext bytes, exactly as sealed (not parsed): PayloadDecryptError when it does not open. */
export function openPayloadBytes (m: SignedManifest, contentKey: Uint8Array): Buffer {
  const plain = openGcm(payloadKey(contentKey), Buffer.from(m.signed.payload.nonce, 'base64'), payloadAad(m.signed), Buffer.from(m.signed.payload.ciphertext, 'base64'))
  if (plain === null) throw new PayloadDecryptError(describe(m))
  return plain
}

export function manifestId (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function checkChunker (c: ChunkerParams, fail: (msg: string) => never): ChunkerParams {
  for (const k of ['minSize', 'avgSize', 'maxSize'] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] < 1 || c[k] > MAX_CHUNK_PLAINTEXT) fail(`chunker.${k} must be a whole number in 1…${MAX_CHUNK_PLAINTEXT}`)
  }
  if (!(c.minSize < c.avgSize && c.avgSize < c.maxSize)) fail('chunker sizes must satisfy minSize < avgSize < maxSize')
  return { minSize: c.minSize, avgSize: c.avgSize, maxSize: c.maxSize }
}

export function buildManifest (o: {
  package: string, version: string, seq: number, channel: string, created: Date, expires: Date,
  chunker: ChunkerParams, rollout?: unknown, chunks: ChunkRef[],
  payload: ManifestPayload, contentKey: Uint8Array, signers: KeyPair[]
}): { manifest: SignedManifest, bytes: Uint8Array, id: string } {
  const bad = (msg: string): never => { throw new InvalidArgumentError(`manifest: ${msg}`) }
  validatePackageName(o.package)
  validateChannelName(o.channel)
  validateVersion(o.version)
  if (!Number.isSafeInteger(o.seq) || o.seq < 1) bad(`sequence ${o.seq} must be a whole number ≥ 1`)
  const created = isoSeconds(o.created)
  const expires = isoSeconds(o.expires)
  if (expires < created) bad(`expires (${expires}) is before created (${created})`)
  const chunker = checkChunker(o.chunker, bad)
  const rollout = o.rollout === undefined ? undefined : validateRolloutPolicy(o.rollout, 'manifest rollout policy')
  if (o.chunks.length > MAX_CHUNKS) bad(`more than ${MAX_CHUNKS} chunks`)
  const chunks = o.chunks.map((c, i) => {
    if (!HEX64.test(c.cid)) bad(`chunks[${i}].cid must be 64 lowercase hex characters`)
    if (!Number.isSafeInteger(c.size) || c.size < MIN_BLOB_BYTES || c.size > MAX_BLOB_BYTES) bad(`chunks[${i}].size ${c.size} is not a blob size`)
    return { cid: c.cid, size: c.size }
  })
  // Endpoints will run exactly these checks; refusing here means a publisher never signs a release
  // that every endpoint would refuse.
  const payload = validatePayload(o.payload, chunks.length, 'manifest payload')
  const nonce = randomBytes(PAYLOAD_NONCE_BYTES)
  const ct = sealPayloadBytes(o, nonce, canonicalBytes(payload), o.contentKey)
  const body: ManifestBody = {
    _type: 'manifest',
    formatVersion: 1,
    package: o.package,
    version: o.version,
    seq: o.seq,
    channel: o.channel,
    created,
    expires,
    chunker,
    ...(rollout !== undefined ? { rollout } : {}),
    chunks,
    payload: { alg: 'aes-256-gcm', nonce: nonce.toString('base64'), ciphertext: ct.toString('base64') }
  }
  const manifest = signEnvelope('manifest', body, o.signers)
  const bytes = encodeEnvelope(manifest)
  decodeManifest(bytes) // size cap and every structural rule, as a reader applies them
  return { manifest, bytes, id: manifestId(bytes) }
}

const MANIFEST_FIELDS = ['_type', 'formatVersion', 'package', 'version', 'seq', 'channel', 'created', 'expires', 'chunker', 'rollout', 'chunks', 'payload'] as const

/** Structure and caps; the bytes must be the canonical encoding (one manifest, one id). */
export function decodeManifest (bytes: Uint8Array): SignedManifest {
  const what = 'manifest'
  const { text, value } = parseJsonBytes(bytes, what, MAX_MANIFEST_BYTES)
  const env = decodeEnvelopeShape(value, what)
  const b = signedBody(env.signed, what, 'manifest', MANIFEST_FIELDS, MANIFEST_FIELDS.filter(f => f !== 'rollout'))
  const created = timestamp(b.created, what, 'created')
  const expires = timestamp(b.expires, what, 'expires')
  if (expires < created) throw new DecodeError(what, `expires (${expires}) is before created (${created})`)
  const ch = obj(b.chunker, what, 'chunker', ['minSize', 'avgSize', 'maxSize'])
  need(ch, what, 'chunker', 'minSize', 'avgSize', 'maxSize')
  const chunker = checkChunker({
    minSize: int(ch.minSize, what, 'chunker.minSize', 1), avgSize: int(ch.avgSize, what, 'chunker.avgSize', 1), maxSize: int(ch.maxSize, what, 'chunker.maxSize', 1)
  }, (msg) => { throw new DecodeError(what, msg) })
  const seen = new Set<string>()
  const chunks = list(b.chunks, what, 'chunks', MAX_CHUNKS).map((c, i) => {
    const co = obj(c, what, `chunks[${i}]`, ['cid', 'size'])
    need(co, what, `chunks[${i}]`, 'cid', 'size')
    const cid = str(co.cid, what, `chunks[${i}].cid`, HEX64)
    if (seen.has(cid)) throw new DecodeError(what, `chunks[${i}] repeats blob ${cid.slice(0, 16)}…: the chunk table lists each blob once`)
    seen.add(cid)
    int(co.size, what, `chunks[${i}].size`, MIN_BLOB_BYTES, MAX_BLOB_BYTES)
    return co as unknown as ChunkRef // exactly { cid, size }, both checked: no second object per chunk
  })
  const p = obj(b.payload, what, 'payload', ['alg', 'nonce', 'ciphertext'])
  need(p, what, 'payload', 'alg', 'nonce', 'ciphertext')
  if (p.alg !== 'aes-256-gcm') throw new DecodeError(what, `payload.alg ${quoteValue(p.alg)} is not supported (only "aes-256-gcm")`)
  const nonce = base64(p.nonce, what, 'payload.nonce', 16)
  if (nonce.bytes !== PAYLOAD_NONCE_BYTES) throw new DecodeError(what, `payload.nonce must be ${PAYLOAD_NONCE_BYTES} bytes`)
  const ciphertext = base64(p.ciphertext, what, 'payload.ciphertext', MAX_MANIFEST_BYTES)
  if (ciphertext.bytes < PAYLOAD_TAG_BYTES) throw new DecodeError(what, 'payload.ciphertext is shorter than its authentication tag')
  const body: ManifestBody = {
    _type: 'manifest',
    formatVersion: 1,
    package: str(b.package, what, 'package', PACKAGE_NAME),
    version: str(b.version, what, 'version', SEMVER, MAX_VERSION_LENGTH),
    seq: int(b.seq, what, 'seq', 1),
    channel: str(b.channel, what, 'channel', PACKAGE_NAME),
    created,
    expires,
    chunker,
    ...(b.rollout !== undefined ? { rollout: validateRolloutPolicy(b.rollout, what) } : {}),
    chunks,
    payload: { alg: 'aes-256-gcm', nonce: nonce.text, ciphertext: ciphertext.text }
  }
  // Last, so the messages above name the field that is wrong; this also checks `rollout` holds
  // only JSON values shoal can sign (safe integers, bounded depth).
  requireCanonical(text, value, what)
  rememberDecodedBody(body, bytes, text)
  return { signed: body, signatures: env.signatures }
}

function describe (m: SignedManifest): string {
  return `manifest ${m.signed.package}@${m.signed.version} (seq ${m.signed.seq})`
}

/**
 * Signed by a threshold of the root's publisher keys, the root itself unexpired, the manifest
 * unexpired (+ grace), and, when given, for the package and channel the caller asked for.
 * Verifying the same decoded manifest again encodes its body again (its bytes are let go).
 */
export function verifyManifest (m: SignedManifest, root: SignedRoot, now: Date, opts: { graceSeconds?: number, expectPackage?: string, expectChannel?: string } = {}): void {
  const what = describe(m)
  verifyThreshold('manifest', m, root.signed.roles.publisher, root.signed.keys, what)
  checkRootFresh(root, now, opts.graceSeconds)
  if (opts.expectPackage !== undefined && m.signed.package !== opts.expectPackage) throw new WrongPackageError(`${what} was served where package ${opts.expectPackage} was asked for`)
  if (opts.expectChannel !== undefined && m.signed.channel !== opts.expectChannel) throw new WrongPackageError(`${what} belongs to channel ${m.signed.channel}, not ${opts.expectChannel}`)
  if (isExpired(m.signed.expires, now, opts.graceSeconds)) throw new ManifestExpiredError(what, m.signed.expires, now)
  // Verified once: callers keep the decoded manifest for a whole download, not its 13 MB of bytes.
  forgetDecodedBody(m.signed)
}

/** Decrypts the sealed payload and validates every field of it (see validatePayload). */
export function openPayload (m: SignedManifest, contentKey: Uint8Array): ManifestPayload {
  const what = describe(m)
  const { value } = parseJsonBytes(openPayloadBytes(m, contentKey), `${what} payload`, MAX_MANIFEST_BYTES)
  return validatePayload(value, m.signed.chunks.length, `${what} payload`)
}

// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const CONTROL = /[\x00-\x1f\x7f]/
const LONE_SURROGATE = /\p{Cs}/u

/** A canonical relative POSIX path that cannot leave the folder it is joined to. Refused, never normalized. */
export function checkRelativePath (p: string): void {
  if (typeof p !== 'string' || p === '') throw new InvalidPathError(String(p), 'empty')
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) throw new InvalidPathError(p, `longer than ${MAX_PATH_BYTES} bytes`)
  if (p.startsWith('/')) throw new InvalidPathError(p, 'absolute')
  if (p.includes('\\')) throw new InvalidPathError(p, 'contains a backslash')
  if (CONTROL.test(p)) throw new InvalidPathError(p, 'contains NUL or another control character')
  if (LONE_SURROGATE.test(p)) throw new InvalidPathError(p, 'not well-formed Unicode')
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw new InvalidPathError(p, seg === '' ? 'empty segment ("//" or a trailing "/")' : `"${seg}" segment`)
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) throw new InvalidPathError(p, `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`)
  }
}

/**
 * A symlink target on its own: relative, no NUL/control character, and lexically inside the tree
 * from the link's folder. (Chains of links are resolved against the real tree by the installer.)
 */
export function checkSymlinkTarget (path: string, target: string): void {
  const shown = `${path} -> ${String(target).slice(0, 200)}`
  if (typeof target !== 'string' || target === '') throw new InvalidPathError(shown, 'symlink without a target')
  if (Buffer.byteLength(target) > MAX_PATH_BYTES) throw new InvalidPathError(shown, `symlink target longer than ${MAX_PATH_BYTES} bytes`)
  if (target.startsWith('/')) throw new InvalidPathError(shown, 'absolute symlink target')
  if (target.includes('\\') || CONTROL.test(target) || LONE_SURROGATE.test(target)) throw new InvalidPathError(shown, 'symlink target has a backslash, control character or broken Unicode')
  let level = path.split('/').length - 1
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue
    level += seg === '..' ? -1 : 1
    if (level < 0) throw new InvalidPathError(shown, 'symlink target leaves the package')
  }
}

const SURROGATE_OR_PRIVATE = /[\ud800-\uffff]/
/** Bytewise (UTF-8) order; JS `<` compares UTF-16 units, which differs only above U+D7FF. */
function pathLess (a: string, b: string): boolean {
  if (!SURROGATE_OR_PRIVATE.test(a) && !SURROGATE_OR_PRIVATE.test(b)) return a < b
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0
}

const FIELDS_BY_TYPE = {
  file: ['path', 'type', 'mode', 'size', 'sha256', 'chunks'],
  dir: ['path', 'type', 'mode', 'size'],
  symlink: ['path', 'type', 'mode', 'size', 'target']
} as const

/**
 * Every rule a payload must meet: files in strictly increasing bytewise path order (so each path
 * once), safe paths, nothing listed under a file or symlink, modes ≤ 0o7777, chunk indices inside
 * the chunk table, chunk sizes adding up to the file size, one key and size per chunk index.
 */
export function validatePayload (v: unknown, chunkCount: number, what = 'manifest payload'): ManifestPayload {
  const p = obj(v, what, 'payload', ['files', 'hooks', 'notes', 'deltas'])
  need(p, what, 'payload', 'files')
  const types = new Map<string, FileEntry['type']>()
  const chunkOf = new ChunkKeys(chunkCount)
  let prev: string | null = null
  const files = list(p.files, what, 'files', MAX_PAYLOAD_FILES).map((f, i): FileEntry => {
    const at = `files[${i}]`
    if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new DecodeError(what, `${at} must be an object`)
    const type = (f as Record<string, unknown>).type
    if (type !== 'file' && type !== 'dir' && type !== 'symlink') throw new DecodeError(what, `${at}.type ${quoteValue(type)} is not file, dir or symlink`)
    const fo = obj(f, what, at, FIELDS_BY_TYPE[type])
    need(fo, what, at, ...FIELDS_BY_TYPE[type])
    if (typeof fo.path !== 'string') throw new DecodeError(what, `${at}.path must be a string`)
    const path = fo.path
    checkRelativePath(path)
    if (prev !== null && !pathLess(prev, path)) throw new InvalidPathError(path, prev === path ? 'listed twice' : 'out of order (files are sorted bytewise by path)')
    prev = path
    for (let j = path.indexOf('/'); j !== -1; j = path.indexOf('/', j + 1)) {
      const parentType = types.get(path.slice(0, j))
      if (parentType !== undefined && parentType !== 'dir') throw new InvalidPathError(path, `inside ${path.slice(0, j)}, which is a ${parentType}`)
    }
    types.set(path, type)
    const mode = int(fo.mode, what, `${at}.mode`, 0, 0o7777)
    const size = int(fo.size, what, `${at}.size`)
    if (type === 'dir') {
      if (size !== 0) throw new DecodeError(what, `${at} (${path}): a dir has size 0`)
      return { path, type, mode, size }
    }
    if (type === 'symlink') {
      if (size !== 0) throw new DecodeError(what, `${at} (${path}): a symlink has size 0`)
      if (typeof fo.target !== 'string') throw new DecodeError(what, `${at}.target must be a string`)
      const target = fo.target
      checkSymlinkTarget(path, target)
      return { path, type, mode, size, target }
    }
    const sha = str(fo.sha256, what, `${at}.sha256`, HEX64)
    let sum = 0
    const chunks = list(fo.chunks, what, `${at}.chunks`, MAX_CHUNKS).map((c, j) => {
      const cat = `${at}.chunks[${j}]`
      const co = obj(c, what, cat, ['index', 'key', 'size'])
      need(co, what, cat, 'index', 'key', 'size')
      const index = int(co.index, what, `${cat}.index`, 0, chunkCount - 1)
      const key = str(co.key, what, `${cat}.key`, HEX64)
      const csize = int(co.size, what, `${cat}.size`, 1, MAX_CHUNK_PLAINTEXT)
      if (!chunkOf.add(index, key, csize)) throw new DecodeError(what, `${cat}: chunk ${index} is listed elsewhere with another key or size`)
      sum += csize
      return co as unknown as FileChunk // exactly { index, key, size }, all checked: no second object per chunk
    })
    if (sum !== size) throw new DecodeError(what, `${at} (${path}): chunk sizes add up to ${sum}, not ${size}`)
    return { path, type, mode, size, sha256: sha, chunks }
  })
  const out: ManifestPayload = { files }
  if (p.hooks !== undefined) {
    const h = obj(p.hooks, what, 'hooks', ['preinstall', 'postinstall'])
    out.hooks = {}
    for (const k of ['preinstall', 'postinstall'] as const) {
      if (h[k] === undefined) continue
      const s = str(h[k], what, `hooks.${k}`, undefined, MAX_HOOK_BYTES)
      if (Buffer.byteLength(s) > MAX_HOOK_BYTES) throw new DecodeError(what, `hooks.${k} is longer than ${MAX_HOOK_BYTES} bytes`)
      out.hooks[k] = s
    }
  }
  if (p.notes !== undefined) {
    const s = str(p.notes, what, 'notes', undefined, MAX_NOTES_BYTES)
    if (Buffer.byteLength(s) > MAX_NOTES_BYTES) throw new DecodeError(what, `notes are longer than ${MAX_NOTES_BYTES} bytes`)
    out.notes = s
  }
  if (p.deltas !== undefined) out.deltas = validateDeltas(p.deltas, chunkCount, chunkOf, what)
  return out
}

/**
 * The key and size the files give each chunk index, to check that every mention agrees: typed
 * arrays over the table (pages touched only for indices named), not a Map of an object per chunk
 * (~4 MB of heap at 57 000 chunks, at the top of the endpoint's manifest phase).
 */
class ChunkKeys {
  private readonly keys: Buffer
  private readonly sizes: Uint32Array
  private readonly seen: Uint8Array
  private readonly scratch = Buffer.allocUnsafe(32)

  constructor (chunkCount: number) {
    this.keys = Buffer.allocUnsafeSlow(chunkCount * 32)
    this.sizes = new Uint32Array(chunkCount)
    this.seen = new Uint8Array(chunkCount)
  }

  has (index: number): boolean {
    return this.seen[index] === 1
  }

  /** The size the files give chunk `index`, or undefined when no file names it. */
  size (index: number): number | undefined {
    return this.has(index) ? this.sizes[index] : undefined
  }

  /** Records `key` (hex) and `size` for `index`; false when it is already known with others. */
  add (index: number, key: string, size: number): boolean {
    if (!this.has(index)) {
      this.keys.write(key, index * 32, 32, 'hex')
      this.sizes[index] = size
      this.seen[index] = 1
      return true
    }
    this.scratch.write(key, 0, 32, 'hex')
    return this.sizes[index] === size && this.scratch.equals(this.keys.subarray(index * 32, index * 32 + 32))
  }
}

const DELTA_FIELDS = ['index', 'key', 'size', 'targets', 'base'] as const
const DELTA_BASE_FIELDS = ['version', 'path', 'first', 'count', 'size'] as const

/**
 * The optional `deltas` list: each delta blob is a chunk-table entry no file references, listed with
 * one key and size wherever it appears (two deltas may share a blob when their bases hold the same
 * bytes); its targets are distinct file chunks whose sizes add up to at most 16 MiB; its base names
 * 1…4096 chunks of one file of another release, at most 16 MiB. Whether that release is at hand
 * is the endpoint's business (src/core/delta-apply.ts); a wrong base only ever costs a fallback.
 */
function validateDeltas (v: unknown, chunkCount: number, chunkOf: ChunkKeys, what: string): PayloadDelta[] {
  const blobOf = new Map<number, { key: string, size: number }>()
  const deltas = list(v, what, 'deltas', MAX_CHUNKS)
  if (deltas.length === 0) throw new DecodeError(what, 'deltas is empty: leave it out instead')
  return deltas.map((d, i): PayloadDelta => {
    const at = `deltas[${i}]`
    const o = obj(d, what, at, DELTA_FIELDS)
    need(o, what, at, ...DELTA_FIELDS)
    const index = int(o.index, what, `${at}.index`, 0, chunkCount - 1)
    if (chunkOf.has(index)) throw new DecodeError(what, `${at}.index ${index} is a file chunk, not a delta blob`)
    const key = str(o.key, what, `${at}.key`, HEX64)
    const size = int(o.size, what, `${at}.size`, MIN_DELTA_BYTES, MAX_CHUNK_PLAINTEXT)
    const before = blobOf.get(index)
    if (before === undefined) blobOf.set(index, { key, size })
    else if (before.key !== key || before.size !== size) throw new DecodeError(what, `${at}: delta blob ${index} is listed elsewhere with another key or size`)
    const seen = new Set<number>()
    let targetBytes = 0
    const targets = list(o.targets, what, `${at}.targets`, MAX_DELTA_TARGETS).map((t, j) => {
      const ti = int(t, what, `${at}.targets[${j}]`, 0, chunkCount - 1)
      const chunkSize = chunkOf.size(ti)
      if (chunkSize === undefined) throw new DecodeError(what, `${at}.targets[${j}]: chunk ${ti} is not a file chunk`)
      if (seen.has(ti)) throw new DecodeError(what, `${at}.targets lists chunk ${ti} twice`)
      seen.add(ti)
      targetBytes += chunkSize
      return ti
    })
    if (targets.length === 0) throw new DecodeError(what, `${at}.targets is empty`)
    if (targetBytes > MAX_DELTA_TARGET_BYTES) throw new DecodeError(what, `${at}: targets add up to ${targetBytes} bytes, more than ${MAX_DELTA_TARGET_BYTES}`)
    const b = obj(o.base, what, `${at}.base`, DELTA_BASE_FIELDS)
    need(b, what, `${at}.base`, ...DELTA_BASE_FIELDS)
    const version = str(b.version, what, `${at}.base.version`, SEMVER, MAX_VERSION_LENGTH)
    if (typeof b.path !== 'string') throw new DecodeError(what, `${at}.base.path must be a string`)
    checkRelativePath(b.path)
    const base: DeltaBaseRef = {
      version,
      path: b.path,
      first: int(b.first, what, `${at}.base.first`, 0, MAX_CHUNKS - 1),
      count: int(b.count, what, `${at}.base.count`, 1, MAX_DELTA_BASE_CHUNKS),
      size: int(b.size, what, `${at}.base.size`, 1, MAX_DELTA_BASE_BYTES)
    }
    return { index, key, size, targets, base }
  })
}
