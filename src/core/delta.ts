// Delta blobs (issue 5, DESIGN §3.2): a changed chunk encoded against base bytes an endpoint
// already holds — a run of the previous release's chunks of the same file.
//
// Codec: one zstd frame whose dictionary is the base bytes taken as raw content (what
// `zstd --patch-from` does with the old file), level 19 by default, through the prebuilt N-API
// binding @toondepauw/node-zstd (libzstd 1.5.7; binaries for linux/macOS/windows × x64/arm64 ship
// inside the npm packages, Node 20/22/24). Measured against Node's own zlib (deflate with a 32 KiB
// dictionary: 3–7× larger on real releases; brotli takes no custom dictionary in Node; zstd is in
// zlib only from Node 22.15) in docs/delta.md. Any zstd ≥ 1.4 decodes the frames: Node 24's
// zlib.zstdDecompressSync(frame, { dictionary: base }) does (tested on 24.21).
//
// A delta blob's plaintext (it is then sealed like any chunk):
//   0  4  magic "SDLT"
//   4  1  format version = 1
//   5  1  codec = 1 (zstd frame, dictionary = base bytes as raw content)
//   6  4  target length (u32 BE)
//  10  4  base length (u32 BE)
//  14  4  CRC-32 of the base      (a wrong base is refused before decoding)
//  18  4  CRC-32 of the target    (a corrupt delta or an undetected wrong base never yields bytes)
//  22  …  exactly one zstd frame, nothing after it
// Decoding is bounded: the target length must be ≤ the caller's maxOutput, and the zstd frame's
// block headers are walked first so the most the decoder can produce (raw and RLE blocks exactly,
// compressed blocks at most one block-maximum each) is capped before any decompression runs.
import { crc32 } from 'node:zlib'
import { Decoder, Encoder } from '@toondepauw/node-zstd'
import { ShoalError } from './errors.js'

export const DELTA_MAGIC = 'SDLT'
export const DELTA_VERSION = 1
export const DELTA_CODEC_ZSTD_RAW_DICT = 1
export const DELTA_HEADER_BYTES = 22
/** Largest base accepted by encode and decode: bounds the memory of one decode. */
export const MAX_DELTA_BASE_BYTES = 16 * 1024 * 1024
/** Largest target (a chunk: FastCDC's own upper limit). */
export const MAX_DELTA_TARGET_BYTES = 16 * 1024 * 1024

export interface DeltaOptions {
  /** zstd level, 1…22. Default 19 (docs/delta.md: 9 encodes 2–15× faster, 5–16 % larger). */
  level: number
  /** A delta is kept only when deltaBytes ≤ fullBytes × maxRatio − minSavedBytes. */
  maxRatio: number
  minSavedBytes: number
}

export const DEFAULT_DELTA_OPTIONS: Readonly<DeltaOptions> = Object.freeze({ level: 19, maxRatio: 0.9, minSavedBytes: 64 })

export interface DeltaPlanOptions {
  /** Most base bytes for one delta (what one decode holds besides the target). Default 1 MiB. */
  maxBaseBytes: number
  /** A run of changed chunks longer than this (new bytes) is cut into segments, one base each. Default maxBaseBytes / 2. */
  segmentBytes: number
}

export const DEFAULT_DELTA_PLAN_OPTIONS: Readonly<DeltaPlanOptions> = Object.freeze({ maxBaseBytes: 1024 * 1024, segmentBytes: 512 * 1024 })

/** Base of the ShoalErrors this module throws; `reason` tells them apart. */
export class DeltaError extends ShoalError {
  readonly reason: 'format' | 'base' | 'oversize' | 'corrupt'
  constructor (code: string, reason: DeltaError['reason'], message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.reason = reason
  }
}

/** Not a delta blob this version reads: bad magic, unknown version or codec, malformed zstd frame. */
export class DeltaFormatError extends DeltaError {
  constructor (why: string, options?: { cause?: unknown }) {
    super('ERR_DELTA_FORMAT', 'format', `not a readable delta blob: ${why}; fetch the full blob instead`, options)
  }
}

/** The base given is not the one the delta was made against (length or CRC-32 differ). */
export class DeltaBaseMismatchError extends DeltaError {
  constructor (why: string) {
    super('ERR_DELTA_BASE', 'base', `delta base mismatch: ${why}; the local base chunks are not those the delta names — fetch the full blob`)
  }
}

/** The delta would produce more than the caller allows (or than a delta may): refused before decoding. */
export class DeltaOversizeError extends DeltaError {
  constructor (why: string) {
    super('ERR_DELTA_OVERSIZE', 'oversize', `delta refused: ${why}`)
  }
}

/** zstd failed, or produced bytes of the wrong length or CRC-32. */
export class DeltaCorruptError extends DeltaError {
  constructor (why: string, options?: { cause?: unknown }) {
    super('ERR_DELTA_CORRUPT', 'corrupt', `delta is corrupt: ${why}; fetch the full blob`, options)
  }
}

const MAGIC_BYTES = new TextEncoder().encode(DELTA_MAGIC)
const ZSTD_FRAME_MAGIC = 0xFD2FB528
/** zstd's dictionary magic, little endian: a base starting with it would be parsed as a formatted dictionary. */
const ZSTD_DICT_MAGIC = 0xEC30A437
const ZSTD_BLOCK_MAX = 128 * 1024
const ZSTD_MAX_WINDOW_LOG = 27
/** Output a frame may be able to produce, whatever the target length (see decodeDelta). */
export const DECODE_SCRATCH_BYTES = 4 * 1024 * 1024

function asBuffer (b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/**
 * The bytes handed to zstd as the dictionary: the base, less any leading zstd dictionary magic
 * (4 bytes at a time), so that arbitrary file bytes are always taken as raw content.
 */
function dictionaryOf (base: Uint8Array): Buffer {
  let off = 0
  const dv = new DataView(base.buffer, base.byteOffset, base.byteLength)
  while (off + 4 <= base.length && dv.getUint32(off, true) === ZSTD_DICT_MAGIC) off += 4
  return asBuffer(base.subarray(off))
}

/**
 * libzstd's tables live outside V8's heap and the binding does not report them, so V8 would not
 * collect dropped encoders for a long time (measured: 30 level-19 encoders on 1 MiB bases, dropped
 * one after the other, left 1 GB resident). Each encoder and decoder therefore holds an untouched
 * ArrayBuffer of about the native size: V8 counts it as external memory and collects in time
 * (the same run peaks at 199 MB), while untouched zero pages cost no resident memory.
 * Native sizes measured with a 1 MiB base: encoder 33 MiB at level 19, 11 MiB at level 9; decoder 1.1 MiB.
 */
function gcBallast (bytes: number): ArrayBuffer {
  return new ArrayBuffer(Math.min(64 * 1024 * 1024, Math.max(64 * 1024, Math.ceil(bytes))))
}

function checkOptions (o: Partial<DeltaOptions> | undefined): DeltaOptions {
  const r = { ...DEFAULT_DELTA_OPTIONS, ...o }
  if (!Number.isInteger(r.level) || r.level < 1 || r.level > 22) throw new RangeError(`delta level must be an integer 1…22, got ${r.level}`)
  if (!(r.maxRatio > 0 && r.maxRatio <= 1)) throw new RangeError(`delta maxRatio must be in (0, 1], got ${r.maxRatio}`)
  if (!(r.minSavedBytes >= 0)) throw new RangeError(`delta minSavedBytes must be ≥ 0, got ${r.minSavedBytes}`)
  return r
}

export interface DeltaEncodeOptions extends Partial<DeltaOptions> {
  /** Size of the blob the delta would replace (e.g. the brotli-compressed chunk); default target.length. */
  fullBytes?: number
}

/**
 * Encodes many targets against one base: zstd indexes the base once (at level 19 that is most of
 * the cost for a 1 MiB base), so a run of changed chunks sharing a base shares one encoder.
 */
export class DeltaEncoder {
  readonly base: Uint8Array
  readonly options: DeltaOptions
  readonly #encoder: Encoder
  readonly #baseCrc: number
  readonly #ballast: ArrayBuffer
  readonly #maxTarget: number

  /** `maxTargetBytes`: largest target encoded (default MAX_DELTA_TARGET_BYTES, a chunk; whole files such as manifests pass theirs). */
  constructor (base: Uint8Array, options?: Partial<DeltaOptions>, maxTargetBytes = MAX_DELTA_TARGET_BYTES) {
    if (base.length > MAX_DELTA_BASE_BYTES) throw new DeltaOversizeError(`base of ${base.length} bytes exceeds ${MAX_DELTA_BASE_BYTES}`)
    this.base = base
    this.options = checkOptions(options)
    this.#maxTarget = maxTargetBytes
    this.#encoder = new Encoder(this.options.level, dictionaryOf(base))
    this.#baseCrc = crc32(base) >>> 0
    this.#ballast = gcBallast(base.length * (this.options.level >= 16 ? 32 : 12))
  }

  /** Bytes of native memory this encoder is assumed to hold (see gcBallast). */
  get nativeBytesEstimate (): number { return this.#ballast.byteLength }

  /** The delta blob plaintext, or null when it is not clearly smaller than `fullBytes`. */
  encode (target: Uint8Array, opts: { fullBytes?: number } = {}): Uint8Array | null {
    const limit = this.#limit(target, opts)
    return limit === null ? null : this.#frame(target, this.#encoder.encodeSync(asBuffer(target)), limit)
  }

  /** encode on libuv's thread pool: a server encoding a multi-MiB target keeps its event loop free. */
  async encodeAsync (target: Uint8Array, opts: { fullBytes?: number } = {}): Promise<Uint8Array | null> {
    const limit = this.#limit(target, opts)
    return limit === null ? null : this.#frame(target, await this.#encoder.encode(asBuffer(target)), limit)
  }

  #limit (target: Uint8Array, opts: { fullBytes?: number }): number | null {
    if (target.length > this.#maxTarget) throw new DeltaOversizeError(`target of ${target.length} bytes exceeds ${this.#maxTarget}`)
    const full = opts.fullBytes ?? target.length
    const limit = full * this.options.maxRatio - this.options.minSavedBytes
    return limit <= DELTA_HEADER_BYTES ? null : limit
  }

  #frame (target: Uint8Array, frame: Uint8Array, limit: number): Uint8Array | null {
    const size = DELTA_HEADER_BYTES + frame.length
    if (size > limit) return null
    const out = new Uint8Array(size)
    out.set(MAGIC_BYTES, 0)
    const dv = new DataView(out.buffer)
    dv.setUint8(4, DELTA_VERSION)
    dv.setUint8(5, DELTA_CODEC_ZSTD_RAW_DICT)
    dv.setUint32(6, target.length)
    dv.setUint32(10, this.base.length)
    dv.setUint32(14, this.#baseCrc)
    dv.setUint32(18, crc32(target) >>> 0)
    out.set(frame, DELTA_HEADER_BYTES)
    return out
  }
}

/** One-shot form of DeltaEncoder: null when the delta is not clearly smaller than `fullBytes`. */
export function encodeDelta (base: Uint8Array, target: Uint8Array, opts: DeltaEncodeOptions = {}): Uint8Array | null {
  return new DeltaEncoder(base, opts).encode(target, opts)
}

export interface DeltaHeader {
  version: number
  codec: number
  targetLength: number
  baseLength: number
  baseCrc32: number
  targetCrc32: number
}

/** Parses and checks the fixed header (no decompression). */
export function readDeltaHeader (delta: Uint8Array): DeltaHeader {
  if (delta.length < DELTA_HEADER_BYTES) throw new DeltaFormatError(`${delta.length} bytes is shorter than the ${DELTA_HEADER_BYTES}-byte header`)
  for (let i = 0; i < 4; i++) if (delta[i] !== MAGIC_BYTES[i]) throw new DeltaFormatError('bad magic')
  const dv = new DataView(delta.buffer, delta.byteOffset, delta.byteLength)
  const h: DeltaHeader = {
    version: dv.getUint8(4),
    codec: dv.getUint8(5),
    targetLength: dv.getUint32(6),
    baseLength: dv.getUint32(10),
    baseCrc32: dv.getUint32(14),
    targetCrc32: dv.getUint32(18)
  }
  if (h.version !== DELTA_VERSION) throw new DeltaFormatError(`format version ${h.version} (this shoal reads ${DELTA_VERSION})`)
  if (h.codec !== DELTA_CODEC_ZSTD_RAW_DICT) throw new DeltaFormatError(`unknown codec ${h.codec}`)
  return h
}

/**
 * Walks the header and block headers of the single zstd frame in `frame` (which must end exactly
 * where the frame does) and returns the most bytes it can decompress to.
 */
export function zstdFrameOutputBound (frame: Uint8Array): number {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  const need = (at: number, n: number, what: string): void => {
    if (at + n > frame.length) throw new DeltaFormatError(`zstd frame truncated in ${what}`)
  }
  need(0, 5, 'frame header')
  if (dv.getUint32(0, true) !== ZSTD_FRAME_MAGIC) throw new DeltaFormatError('no zstd frame magic')
  const fhd = dv.getUint8(4)
  if ((fhd & 0x08) !== 0) throw new DeltaFormatError('zstd frame header reserved bit set')
  const fcsFlag = fhd >> 6
  const single = (fhd & 0x20) !== 0
  const checksum = (fhd & 0x04) !== 0
  const dictFlag = fhd & 0x03
  let p = 5
  let window = 0
  if (!single) {
    need(p, 1, 'window descriptor')
    const wd = dv.getUint8(p++)
    const log = 10 + (wd >> 3)
    if (log > ZSTD_MAX_WINDOW_LOG) throw new DeltaFormatError(`zstd window 2^${log} exceeds 2^${ZSTD_MAX_WINDOW_LOG}`)
    window = 2 ** log + (2 ** log / 8) * (wd & 7)
  }
  p += [0, 1, 2, 4][dictFlag] ?? 0
  const fcsBytes = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag] ?? 0
  need(p, fcsBytes, 'frame content size')
  let fcs = -1
  if (fcsBytes === 1) fcs = dv.getUint8(p)
  else if (fcsBytes === 2) fcs = dv.getUint16(p, true) + 256
  else if (fcsBytes === 4) fcs = dv.getUint32(p, true)
  else if (fcsBytes === 8) fcs = dv.getUint32(p, true) + dv.getUint32(p + 4, true) * 2 ** 32
  p += fcsBytes
  if (single) window = fcs
  const blockMax = Math.min(window, ZSTD_BLOCK_MAX)
  let bound = 0
  for (;;) {
    need(p, 3, 'block header')
    const bh = dv.getUint8(p) | (dv.getUint8(p + 1) << 8) | (dv.getUint8(p + 2) << 16)
    p += 3
    const last = (bh & 1) !== 0
    const type = (bh >> 1) & 3
    const size = bh >>> 3
    if (type === 3) throw new DeltaFormatError('zstd reserved block type')
    if (size > blockMax) throw new DeltaFormatError('zstd block larger than its maximum')
    if (type === 0) { need(p, size, 'raw block'); p += size; bound += size } else if (type === 1) { need(p, 1, 'RLE block'); p += 1; bound += size } else { need(p, size, 'compressed block'); p += size; bound += blockMax }
    if (last) break
  }
  if (checksum) { need(p, 4, 'checksum'); p += 4 }
  if (p !== frame.length) throw new DeltaFormatError(`${frame.length - p} bytes after the zstd frame`)
  if (fcs >= 0) bound = Math.min(bound, fcs)
  return bound
}

/**
 * Rebuilds targets from deltas made against one base: the base's CRC-32 and zstd's view of it
 * are computed once, so the chunks of one plan (planDeltaBases) decode against a base held once.
 * The base is not copied here but must not change while the decoder is in use.
 */
export class DeltaDecoder {
  readonly base: Uint8Array
  readonly #baseCrc: number
  readonly #maxTarget: number
  #decoder: Decoder | undefined
  #ballast: ArrayBuffer | undefined

  /** `maxTargetBytes` as for DeltaEncoder. */
  constructor (base: Uint8Array, maxTargetBytes = MAX_DELTA_TARGET_BYTES) {
    if (base.length > MAX_DELTA_BASE_BYTES) throw new DeltaOversizeError(`base of ${base.length} bytes exceeds ${MAX_DELTA_BASE_BYTES}`)
    this.base = base
    this.#baseCrc = crc32(base) >>> 0
    this.#maxTarget = maxTargetBytes
  }

  /** Bytes of native memory this decoder is assumed to hold once used (see gcBallast). */
  get nativeBytesEstimate (): number { return this.#ballast?.byteLength ?? 0 }

  /**
   * Throws a DeltaError, never returns wrong bytes: DeltaOversizeError when the target would exceed
   * `maxOutput` (checked before decoding), DeltaBaseMismatchError when the delta was made against
   * another base (length or CRC-32), DeltaFormatError or DeltaCorruptError for a damaged delta.
   * The caller still checks the chunk key.
   */
  decode (delta: Uint8Array, maxOutput: number): Uint8Array {
    const h = readDeltaHeader(delta)
    if (h.targetLength > maxOutput || h.targetLength > this.#maxTarget) {
      throw new DeltaOversizeError(`target of ${h.targetLength} bytes exceeds the ${Math.min(maxOutput, this.#maxTarget)}-byte limit`)
    }
    if (this.base.length !== h.baseLength) throw new DeltaBaseMismatchError(`base is ${this.base.length} bytes, the delta was made against ${h.baseLength}`)
    if (this.#baseCrc !== h.baseCrc32) throw new DeltaBaseMismatchError('base CRC-32 differs')
    const frame = delta.subarray(DELTA_HEADER_BYTES)
    const bound = zstdFrameOutputBound(frame)
    // Block headers do not say what a compressed block decodes to (up to 128 KiB), and zstd's block
    // splitter cuts one chunk into several blocks, so the cap is a fixed allowance over the target,
    // never unbounded: a hostile delta can make the decoder produce at most DECODE_SCRATCH_BYTES
    // or 16× the target before the length check refuses it.
    const cap = Math.max(16 * h.targetLength, DECODE_SCRATCH_BYTES)
    if (bound > cap) throw new DeltaOversizeError(`zstd frame could produce ${bound} bytes for a ${h.targetLength}-byte target`)
    if (bound < h.targetLength) throw new DeltaCorruptError(`zstd frame produces at most ${bound} bytes, the header says ${h.targetLength}`)
    let out: Buffer
    try {
      if (this.#decoder === undefined) {
        this.#decoder = new Decoder(dictionaryOf(this.base))
        this.#ballast = gcBallast(this.base.length * 1.1)
      }
      out = this.#decoder.decodeSync(asBuffer(frame))
    } catch (err) {
      throw new DeltaCorruptError(`zstd: ${(err as Error).message}`, { cause: err })
    }
    if (out.length !== h.targetLength) throw new DeltaCorruptError(`rebuilt ${out.length} bytes, expected ${h.targetLength}`)
    if ((crc32(out) >>> 0) !== h.targetCrc32) throw new DeltaCorruptError('rebuilt bytes fail their CRC-32 (wrong base or damaged delta)')
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
  }
}

/** One-shot form of DeltaDecoder.decode: rebuilds the target from `base` and a delta blob's plaintext. */
export function decodeDelta (base: Uint8Array, delta: Uint8Array, maxOutput: number): Uint8Array {
  return new DeltaDecoder(base).decode(delta, maxOutput)
}

// ---- Choosing base bytes -------------------------------------------------------------------

/** A chunk of a file, in file order: its key (any string that is equal for equal bytes) and length. */
export interface DeltaChunkRef { key: string, length: number }

/**
 * Chunks `newChunks[i]` for i in `targets` (consecutive, together ≤ segmentBytes or one chunk)
 * are encoded against old chunks [baseStart, baseEnd) concatenated; baseStart === baseEnd means
 * no base fits (a single old chunk larger than maxBaseBytes): send those chunks whole.
 */
export interface DeltaPlan {
  targets: number[]
  baseStart: number
  baseEnd: number
  baseBytes: number
}

/**
 * Plans base bytes for the new chunks of one file that the old version of the file (same path
 * first, see chooseBaseFile) does not contain. Unchanged chunks (same key in the old file) are
 * anchors: a run of changed chunks between two anchors takes as base the old chunks between the
 * anchors' old positions when those fit in `maxBaseBytes`. Otherwise (an edit that moves much, a
 * rebuilt binary with no unchanged chunk) the run is cut into segments of ≤ `segmentBytes` new
 * bytes, each mapped linearly into the old region between the anchors (the whole old file without
 * them) and given the `maxBaseBytes` window of whole old chunks centred there; a run between
 * anchors is cut into the same segments, sharing the anchored base. Chunks of one plan share a
 * base, so the encoder indexes it once, and may be sent as one delta of their concatenation. Every changed chunk lands in exactly one plan;
 * the caller skips those it does not need (found elsewhere in the old release, already sent).
 */
export function planDeltaBases (oldChunks: readonly DeltaChunkRef[], newChunks: readonly DeltaChunkRef[], opts: Partial<DeltaPlanOptions> = {}): DeltaPlan[] {
  const maxBase = opts.maxBaseBytes ?? DEFAULT_DELTA_PLAN_OPTIONS.maxBaseBytes
  const segment = opts.segmentBytes ?? Math.max(1, Math.floor(maxBase / 2))
  if (!(maxBase > 0 && maxBase <= MAX_DELTA_BASE_BYTES)) throw new RangeError(`maxBaseBytes must be in (0, ${MAX_DELTA_BASE_BYTES}], got ${maxBase}`)
  if (!(segment > 0)) throw new RangeError(`segmentBytes must be > 0, got ${segment}`)
  const plans: DeltaPlan[] = []
  if (oldChunks.length === 0 || newChunks.length === 0) return plans
  const oOff = offsets(oldChunks)
  const nOff = offsets(newChunks)
  const oldLen = oOff[oldChunks.length]!
  const oIdx = new Map<string, number>()
  oldChunks.forEach((c, k) => { if (!oIdx.has(c.key)) oIdx.set(c.key, k) })
  const plan = (targets: number[], a: number, b: number): void => {
    plans.push({ targets, baseStart: a, baseEnd: b, baseBytes: oOff[b]! - oOff[a]! })
  }
  let i = 0
  while (i < newChunks.length) {
    if (oIdx.has(newChunks[i]!.key)) { i++; continue }
    let e = i
    while (e < newChunks.length && !oIdx.has(newChunks[e]!.key)) e++
    const oL = i > 0 ? oIdx.get(newChunks[i - 1]!.key)! : -1
    const oR = e < newChunks.length ? oIdx.get(newChunks[e]!.key)! : oldChunks.length
    const ordered = oR > oL
    const oA = ordered && oL >= 0 ? oOff[oL + 1]! : 0
    const oB = ordered && oR < oldChunks.length ? oOff[oR]! : oldLen
    const between = ordered && oR > oL + 1 && oB - oA <= maxBase
    const nA = nOff[i]!
    const nB = nOff[e]!
    const scale = oB > oA && nB > nA ? (oB - oA) / (nB - nA) : 1
    let s = i
    while (s < e) {
      let t = s + 1
      while (t < e && nOff[t + 1]! - nOff[s]! <= segment) t++
      if (between) {
        plan(range(s, t), oL + 1, oR)
      } else {
        const centre = oA + ((nOff[s]! + nOff[t]!) / 2 - nA) * scale
        const [a, b] = windowAt(oOff, centre, maxBase)
        plan(range(s, t), a, b)
      }
      s = t
    }
    i = e
  }
  return plans
}

function offsets (chunks: readonly DeltaChunkRef[]): number[] {
  const o = new Array<number>(chunks.length + 1)
  o[0] = 0
  for (let k = 0; k < chunks.length; k++) o[k + 1] = o[k]! + chunks[k]!.length
  return o
}

function range (a: number, b: number): number[] {
  const r: number[] = []
  for (let k = a; k < b; k++) r.push(k)
  return r
}

/** Whole old chunks [a, b) covering at most `maxBase` bytes around `centre` (at least one chunk, if it fits). */
function windowAt (oOff: readonly number[], centre: number, maxBase: number): [number, number] {
  const n = oOff.length - 1
  const oldLen = oOff[n]!
  const lo = Math.max(0, Math.min(oldLen - maxBase, centre - maxBase / 2))
  const hi = lo + maxBase
  let a = 0
  while (a < n - 1 && oOff[a + 1]! <= lo) a++
  let b = a
  while (b < n && oOff[b]! < hi && oOff[b + 1]! - oOff[a]! <= maxBase) b++
  if (b === a) {
    // The chunk at `a` alone is larger than maxBase: no base.
    return [a, a]
  }
  return [a, b]
}

/**
 * Which old file to take base chunks from for `path`: the same path; else the old file with the
 * same name once digits and hex runs are blanked (`app.3f9a1c2b.js`, `lib-1.2.3.so`), nearest in
 * size; else none.
 */
export function chooseBaseFile (path: string, newSize: number, oldFiles: ReadonlyMap<string, number>): string | undefined {
  if (oldFiles.has(path)) return path
  const norm = (p: string): string => p.replace(/[0-9a-f]{6,}/gi, '#').replace(/[0-9]+/g, '#')
  const want = norm(path)
  let best: string | undefined
  let bestGap = Infinity
  for (const [p, size] of oldFiles) {
    if (norm(p) !== want) continue
    const gap = Math.abs(size - newSize)
    if (gap < bestGap) { best = p; bestGap = gap }
  }
  return best
}
