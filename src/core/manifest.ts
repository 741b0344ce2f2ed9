// The release manifest (DESIGN §2, docs/protocol.md): public chunk table, signed by a threshold of
// publisher keys, with the file tree, chunk keys and hooks sealed under the content key.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { ShoalError, DecodeError, InvalidArgumentError } from './errors.js'
import type { KeyPair } from './keys.js'
import type { SignedRoot } from './root.js'
import { canonicalBytes } from './canonical.js'
import {
  signEnvelope, encodeEnvelope, verifyThreshold, checkExpiry, parseJsonBytes, decodeEnvelopeShape, obj, need, str, int, timestamp, isoSeconds, HEX64,
  type Envelope
} from './signed.js'

export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024
export const MAX_PAYLOAD_FILES = 1_000_000
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/
// Semantic Versioning 2.0.0, the official regular expression.
export const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/

export interface ChunkRef { cid: string, size: number }
export interface FileChunk { index: number, key: string, size: number }
export interface FileEntry { path: string, type: 'file' | 'dir' | 'symlink', mode: number, size: number, sha256?: string, target?: string, chunks?: FileChunk[] }
export interface ManifestPayload { files: FileEntry[], hooks?: { preinstall?: string, postinstall?: string }, notes?: string }
export interface ManifestBody {
  _type: 'manifest'
  formatVersion: 1
  package: string
  version: string
  seq: number
  channel: string
  created: string
  expires: string
  chunker: { minSize: number, avgSize: number, maxSize: number }
  rollout?: unknown
  chunks: ChunkRef[]
  payload: { alg: 'aes-256-gcm', nonce: string, ciphertext: string }
}
export type SignedManifest = Envelope<ManifestBody>

export class PayloadDecryptError extends ShoalError {
  constructor (what: string) {
    super('ERR_PAYLOAD_DECRYPT', `${what}: the sealed payload does not open with this fleet's content key (another fleet, or tampered)`)
  }
}
export class InvalidPathError extends ShoalError {
  constructor (path: string, reason: string) {
    super('ERR_INVALID_PATH', `manifest path ${JSON.stringify(path.slice(0, 200))} refused: ${reason}`)
  }
}
export class WrongPackageError extends ShoalError {
  constructor (message: string) {
    super('ERR_WRONG_PACKAGE', message)
  }
}

export function validatePackageName (s: string, what = 'package name'): string {
  if (!PACKAGE_NAME.test(s)) throw new InvalidArgumentError(`${what} "${s}" is invalid: use 1–128 of a-z, 0-9, ".", "_", "-", starting with a letter or digit`)
  return s
}

export function validateVersion (s: string): string {
  if (s.length > 128 || !SEMVER.test(s)) throw new InvalidArgumentError(`version "${s}" is not a semantic version (e.g. 1.2.3 or 2.0.0-rc.1)`)
  return s
}

function payloadKey (contentKey: Uint8Array): Uint8Array {
  return hkdf(sha256, contentKey, undefined, new TextEncoder().encode('shoal/v1/manifest-payload'), 32)
}

function payloadAad (b: { package: string, version: string, seq: number, channel: string }): Uint8Array {
  return canonicalBytes({ channel: b.channel, package: b.package, seq: b.seq, version: b.version })
}

export function manifestId (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export function buildManifest (o: {
  package: string, version: string, seq: number, channel: string, created: Date, expires: Date,
  chunker: { minSize: number, avgSize: number, maxSize: number }, rollout?: unknown, chunks: ChunkRef[],
  payload: ManifestPayload, contentKey: Uint8Array, signers: KeyPair[]
}): { manifest: SignedManifest, bytes: Uint8Array, id: string } {
  validatePackageName(o.package)
  validatePackageName(o.channel, 'channel')
  validateVersion(o.version)
  if (!Number.isSafeInteger(o.seq) || o.seq < 1) throw new InvalidArgumentError(`sequence ${o.seq} must be a whole number ≥ 1`)
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', payloadKey(o.contentKey), nonce)
  cipher.setAAD(payloadAad(o))
  const ct = Buffer.concat([cipher.update(JSON.stringify(o.payload)), cipher.final(), cipher.getAuthTag()])
  const body: ManifestBody = {
    _type: 'manifest',
    formatVersion: 1,
    package: o.package,
    version: o.version,
    seq: o.seq,
    channel: o.channel,
    created: isoSeconds(o.created),
    expires: isoSeconds(o.expires),
    chunker: { ...o.chunker },
    ...(o.rollout !== undefined ? { rollout: o.rollout } : {}),
    chunks: o.chunks,
    payload: { alg: 'aes-256-gcm', nonce: nonce.toString('base64'), ciphertext: ct.toString('base64') }
  }
  const manifest = signEnvelope('manifest', body, o.signers)
  const bytes = encodeEnvelope(manifest)
  return { manifest, bytes, id: manifestId(bytes) }
}

export function decodeManifest (bytes: Uint8Array): SignedManifest {
  const what = 'manifest'
  const env = decodeEnvelopeShape(parseJsonBytes(bytes, what, MAX_MANIFEST_BYTES), what)
  const b = obj(env.signed, what, 'signed', ['_type', 'formatVersion', 'package', 'version', 'seq', 'channel', 'created', 'expires', 'chunker', 'rollout', 'chunks', 'payload'])
  need(b, what, 'signed', '_type', 'formatVersion', 'package', 'version', 'seq', 'channel', 'created', 'expires', 'chunker', 'chunks', 'payload')
  if (b._type !== 'manifest') throw new DecodeError(what, `_type is ${JSON.stringify(b._type)}, expected "manifest"`)
  if (b.formatVersion !== 1) throw new DecodeError(what, `unsupported formatVersion ${JSON.stringify(b.formatVersion)}`)
  const ch = obj(b.chunker, what, 'chunker', ['minSize', 'avgSize', 'maxSize'])
  need(ch, what, 'chunker', 'minSize', 'avgSize', 'maxSize')
  if (!Array.isArray(b.chunks) || b.chunks.length > 16_000_000) throw new DecodeError(what, 'chunks must be a list')
  const chunks = b.chunks.map((c, i) => {
    const co = obj(c, what, `chunks[${i}]`, ['cid', 'size'])
    need(co, what, `chunks[${i}]`, 'cid', 'size')
    return { cid: str(co.cid, what, `chunks[${i}].cid`, HEX64), size: int(co.size, what, `chunks[${i}].size`, 1, 32 * 1024 * 1024) }
  })
  const p = obj(b.payload, what, 'payload', ['alg', 'nonce', 'ciphertext'])
  need(p, what, 'payload', 'alg', 'nonce', 'ciphertext')
  if (p.alg !== 'aes-256-gcm') throw new DecodeError(what, `payload.alg ${JSON.stringify(p.alg)} is not supported`)
  for (const f of ['nonce', 'ciphertext'] as const) {
    const v = p[f]
    if (typeof v === 'string' && Buffer.from(v, 'base64').toString('base64') !== v) throw new DecodeError(what, `payload.${f} is not canonical base64`)
  }
  const body: ManifestBody = {
    _type: 'manifest',
    formatVersion: 1,
    package: str(b.package, what, 'package', PACKAGE_NAME),
    version: str(b.version, what, 'version', SEMVER, 128),
    seq: int(b.seq, what, 'seq', 1),
    channel: str(b.channel, what, 'channel', PACKAGE_NAME),
    created: timestamp(b.created, what, 'created'),
    expires: timestamp(b.expires, what, 'expires'),
    chunker: { minSize: int(ch.minSize, what, 'chunker.minSize', 1), avgSize: int(ch.avgSize, what, 'chunker.avgSize', 1), maxSize: int(ch.maxSize, what, 'chunker.maxSize', 1) },
    ...(b.rollout !== undefined ? { rollout: b.rollout } : {}),
    chunks,
    payload: { alg: 'aes-256-gcm', nonce: str(p.nonce, what, 'payload.nonce', /^[A-Za-z0-9+/]{16}$/), ciphertext: str(p.ciphertext, what, 'payload.ciphertext', /^[A-Za-z0-9+/]*={0,2}$/, MAX_MANIFEST_BYTES) }
  }
  return { signed: body, signatures: env.signatures }
}

export function verifyManifest (m: SignedManifest, root: SignedRoot, now: Date, opts: { graceSeconds?: number, expectPackage?: string, expectChannel?: string } = {}): void {
  const what = `manifest ${m.signed.package}@${m.signed.version}`
  verifyThreshold('manifest', m, root.signed.roles.publisher, root.signed.keys, what)
  checkExpiry(what, m.signed.expires, now, opts.graceSeconds)
  if (opts.expectPackage !== undefined && m.signed.package !== opts.expectPackage) throw new WrongPackageError(`${what} was served where ${opts.expectPackage} was asked for`)
  if (opts.expectChannel !== undefined && m.signed.channel !== opts.expectChannel) throw new WrongPackageError(`${what} belongs to channel ${m.signed.channel}, not ${opts.expectChannel}`)
}

/** A relative POSIX path that cannot leave the tree it is joined to. */
export function checkRelativePath (p: string): void {
  if (typeof p !== 'string' || p === '') throw new InvalidPathError(String(p), 'empty')
  if (Buffer.byteLength(p) > 4096) throw new InvalidPathError(p, 'longer than 4096 bytes')
  if (p.startsWith('/')) throw new InvalidPathError(p, 'absolute')
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\\\0-\x1f]/.test(p)) throw new InvalidPathError(p, 'backslash, NUL or control character')
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw new InvalidPathError(p, `segment "${seg}" not allowed`)
    if (Buffer.byteLength(seg) > 255) throw new InvalidPathError(p, 'a segment is longer than 255 bytes')
  }
}

export function openPayload (m: SignedManifest, contentKey: Uint8Array): ManifestPayload {
  const what = `manifest ${m.signed.package}@${m.signed.version}`
  const ct = Buffer.from(m.signed.payload.ciphertext, 'base64')
  if (ct.length < 16) throw new PayloadDecryptError(what)
  let plain: Buffer
  try {
    const d = createDecipheriv('aes-256-gcm', payloadKey(contentKey), Buffer.from(m.signed.payload.nonce, 'base64'))
    d.setAAD(payloadAad(m.signed))
    d.setAuthTag(ct.subarray(ct.length - 16))
    plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()])
  } catch {
    throw new PayloadDecryptError(what)
  }
  return validatePayload(parseJsonBytes(plain, `${what} payload`, MAX_MANIFEST_BYTES), m.signed.chunks, what)
}

function validatePayload (v: unknown, chunks: ChunkRef[], what: string): ManifestPayload {
  const p = obj(v, what, 'payload', ['files', 'hooks', 'notes'])
  need(p, what, 'payload', 'files')
  if (!Array.isArray(p.files) || p.files.length > MAX_PAYLOAD_FILES) throw new DecodeError(what, 'payload.files must be a list')
  const seen = new Set<string>()
  const files = p.files.map((f, i): FileEntry => {
    const fo = obj(f, what, `files[${i}]`, ['path', 'type', 'mode', 'size', 'sha256', 'target', 'chunks'])
    need(fo, what, `files[${i}]`, 'path', 'type', 'mode', 'size')
    const path = str(fo.path, what, `files[${i}].path`)
    checkRelativePath(path)
    if (seen.has(path)) throw new InvalidPathError(path, 'listed twice')
    seen.add(path)
    const mode = int(fo.mode, what, `files[${i}].mode`, 0, 0o7777)
    const size = int(fo.size, what, `files[${i}].size`)
    if (fo.type === 'dir') return { path, type: 'dir', mode, size: 0 }
    if (fo.type === 'symlink') return { path, type: 'symlink', mode, size: 0, target: str(fo.target, what, `files[${i}].target`) }
    if (fo.type !== 'file') throw new DecodeError(what, `files[${i}].type ${JSON.stringify(fo.type)} is unknown`)
    if (!Array.isArray(fo.chunks)) throw new DecodeError(what, `files[${i}].chunks must be a list`)
    let sum = 0
    const fc = fo.chunks.map((c, j) => {
      const co = obj(c, what, `files[${i}].chunks[${j}]`, ['index', 'key', 'size'])
      need(co, what, `files[${i}].chunks[${j}]`, 'index', 'key', 'size')
      const index = int(co.index, what, 'chunk index', 0, chunks.length - 1)
      const csize = int(co.size, what, 'chunk size', 0, 16 * 1024 * 1024)
      sum += csize
      return { index, key: str(co.key, what, 'chunk key', HEX64), size: csize }
    })
    if (sum !== size) throw new DecodeError(what, `files[${i}] (${path}): chunk sizes add up to ${sum}, not ${size}`)
    return { path, type: 'file', mode, size, sha256: str(fo.sha256, what, `files[${i}].sha256`, HEX64), chunks: fc }
  })
  const out: ManifestPayload = { files }
  if (p.hooks !== undefined) {
    const h = obj(p.hooks, what, 'hooks', ['preinstall', 'postinstall'])
    out.hooks = {}
    if (h.preinstall !== undefined) out.hooks.preinstall = str(h.preinstall, what, 'hooks.preinstall', undefined, 1024 * 1024)
    if (h.postinstall !== undefined) out.hooks.postinstall = str(h.postinstall, what, 'hooks.postinstall', undefined, 1024 * 1024)
  }
  if (p.notes !== undefined) out.notes = str(p.notes, what, 'notes', undefined, 1024 * 1024)
  return out
}
