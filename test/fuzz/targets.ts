// The fuzz targets, one row each: the decoder under test (the exact function the daemon calls on
// bytes from the network or disk), the valid encodings mutation starts from, and, where one
// exists, an invariant that an accepted input must satisfy (e.g. a metadata file that decodes
// re-encodes to the same bytes: one document, one byte string). A target throws whatever the
// decoder throws; the engine sorts that into typed refusals and crashes.
import { createCipheriv, createHmac } from 'node:crypto'
import { brotliCompressSync, constants as zc, crc32 } from 'node:zlib'
import { ShoalError } from '../../src/core/errors.js'
import { generateKeyPair, keyPairFromSecret, encodePrivateKeyFile, decodePrivateKeyFile } from '../../src/core/keys.js'
import { createRoot, decodeRoot } from '../../src/core/root.js'
import { signHead, decodeHead } from '../../src/core/head.js'
import { buildManifest, decodeManifest, manifestId, openPayloadBytes, validatePayload, MAX_MANIFEST_BYTES, type ManifestPayload } from '../../src/core/manifest.js'
import { applyPayloadPatch, sealPayloadPatch, stripPayload } from '../../src/core/manifest-patch.js'
import { encodeEnvelope, parseJsonBytes } from '../../src/core/signed.js'
import { encodeEndpointEnrollment, encodeSeedEnrollment, encodeFleetSecret, decodeEndpointEnrollment, decodeSeedEnrollment, decodeFleetSecret } from '../../src/core/enroll.js'
import { sealChunk, openBlob, AES_KEY_LABEL, NONCE_LABEL, BLOB_FORMAT, HEADER_BYTES, NONCE_BYTES, TAG_BYTES, MAX_BLOB_BYTES } from '../../src/core/seal.js'
import { encodeDelta, decodeDelta, DeltaEncoder, DELTA_HEADER_BYTES } from '../../src/core/delta.js'
import { signRecord, decodeRecord } from '../../src/rollout/records.js'
import { parseRolloutSpec } from '../../src/rollout/policy.js'
import { parseConfig } from '../../src/daemon/config.js'
import {
  decodeClientMsg, decodeServerMsg, splitDataFrame, encodeRequest, encodeCredit, encodeCancel, encodeHello, encodeResponse, encodeDataHeader, encodeAbort, Status
} from '../../src/net/blobs-wire.js'
import { FrameDecoder, encodeFrames } from '../../src/net/framing.js'
import { decodeControl, encodeControl, headerString, headerStrings } from '../../src/net/control.js'
import { decodeRpcReply, decodeRpcRequest } from '../../src/net/rpc.js'
import { decodeAdmitNonce, decodeAdmitProof, decodeAdmitReply, ADMIT_MAX_FRAME } from '../../src/net/admission.js'
import { HaveMap, encodeIncrement, decodeIncrement } from '../../src/swarm/have-map.js'
import { decodeHello, decodeHaveRequest } from '../../src/swarm/site.js'
import { decodeAnnounceRequest, decodeHeadsReply, decodeManifestPatchesReply, decodeManifestReply, decodeRecordsReply, decodeSiteReply } from '../../src/daemon/announce.js'
import { decodePublishRequest } from '../../src/daemon/seed.js'
import { decodeReport, encodeReport, type Report } from '../../src/fleet/report.js'
import { decodeQuery } from '../../src/fleet/service.js'
import { decodeFleetAnswer } from '../../src/fleet/client.js'
import { parsePolicy, globToRegExp } from '../../src/fleet/audit.js'

export interface FuzzTarget {
  /** Valid encodings that mutation starts from. */
  seeds: Uint8Array[]
  /** The input is JSON text: JSON-level mutations apply too. */
  json?: boolean
  /** Runs the decoder; returns what it accepted. */
  decode: (input: Uint8Array) => unknown
  /** For an accepted input: undefined when the invariant holds, else what is wrong. */
  check?: (input: Uint8Array, out: unknown) => string | undefined
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const now = new Date('2026-06-01T00:00:00Z')
const later = new Date('2027-06-01T00:00:00Z')
const hex = (c: string): string => c.repeat(64)
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))
const reencodes = (input: Uint8Array, out: unknown): string | undefined =>
  sameBytes(encodeEnvelope(out as Parameters<typeof encodeEnvelope>[0]), input) ? undefined : 'accepted, but does not re-encode to the same bytes'

// Deterministic key material: the seeds (and so every input) are the same in every worker.
const key = (n: number) => keyPairFromSecret(new Uint8Array(32).fill(n))
const rootKeys = [key(1)]
const publisherKeys = [key(2), key(3)]
const onlineKeys = [key(4)]
function root () {
  return createRoot({ rootKeys, rootThreshold: 1, publisherKeys, publisherThreshold: 2, onlineKeys, expires: later })
}
const contentKey = new Uint8Array(32).fill(7)

const payload: ManifestPayload = {
  files: [
    { path: 'bin', type: 'dir', mode: 0o755, size: 0 },
    { path: 'bin/x', type: 'file', mode: 0o755, size: 10, sha256: hex('a'), chunks: [{ index: 0, key: hex('b'), size: 6 }, { index: 1, key: hex('d'), size: 4 }] },
    { path: 'link', type: 'symlink', mode: 0o777, size: 0, target: 'bin/x' }
  ],
  hooks: { postinstall: 'echo installed\n' },
  notes: 'fuzz seed'
}

function manifestBytes (o: { version?: string, seq?: number, payload?: ManifestPayload } = {}): Uint8Array {
  return buildManifest({
    package: 'app', version: o.version ?? '1.2.3', seq: o.seq ?? 7, channel: 'stable', created: now, expires: later,
    chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 },
    chunks: [{ cid: hex('c'), size: 40 }, { cid: hex('1'), size: 34 }],
    payload: o.payload ?? payload, contentKey, signers: publisherKeys,
    rollout: parseRolloutSpec('canary:now,pilot:+1d/deadline=+3d,broad:approval,window=22:00-06:00', now)
  }).bytes
}

/** A manifest and its successor, with the sealed payload patch and stripped delta between them (src/core/manifest-patch.ts). */
function patchPair (): { base: { id: string, bytes: Uint8Array }, id: string, stripped: Uint8Array, inner: Uint8Array, patch: Uint8Array } {
  const b = manifestBytes()
  const t = manifestBytes({ version: '1.2.4', seq: 8, payload: { ...payload, notes: 'the next release, with other notes' } })
  const base = { id: manifestId(b), bytes: b }
  const id = manifestId(t)
  const stripped = new DeltaEncoder(stripPayload(b), { level: 3, maxRatio: 1, minSavedBytes: 0 }, MAX_MANIFEST_BYTES).encode(stripPayload(t))
  const inner = new DeltaEncoder(openPayloadBytes(decodeManifest(b), contentKey), { level: 3, maxRatio: 1, minSavedBytes: 0 }, MAX_MANIFEST_BYTES).encode(openPayloadBytes(decodeManifest(t), contentKey))
  if (stripped === null || inner === null) throw new Error('fuzz seed: no delta between two releases')
  return { base, id, stripped, inner, patch: sealPayloadPatch(inner, { baseId: base.id, targetId: id, package: 'app', channel: 'stable', contentKey }) }
}

/** Frames split into transport chunks at places chosen by the input itself (deterministic). */
function pushSplit (d: FrameDecoder, input: Uint8Array): void {
  const step = 1 + ((input[0] ?? 0) % 13) * ((input[1] ?? 0) % 5 + 1)
  for (let at = 0; at < input.byteLength; at += step) d.push(input.subarray(at, at + step))
}

/** A blob whose GCM tag is valid for `key`: what only a key holder (a faulty publisher) can make. */
function sealRaw (k: Uint8Array, codec: number, msg: Uint8Array): Uint8Array {
  const hmac = (...parts: Array<Uint8Array | string>): Buffer => { const h = createHmac('sha256', k); for (const p of parts) h.update(p); return h.digest() }
  const blob = new Uint8Array(HEADER_BYTES + msg.byteLength + TAG_BYTES)
  blob[0] = BLOB_FORMAT
  blob[1] = codec
  const nonce = hmac(NONCE_LABEL, blob.subarray(0, 2), msg).subarray(0, NONCE_BYTES)
  blob.set(nonce, 2)
  const c = createCipheriv('aes-256-gcm', hmac(AES_KEY_LABEL), nonce, { authTagLength: TAG_BYTES })
  c.setAAD(blob.subarray(0, HEADER_BYTES))
  blob.set(c.update(msg), HEADER_BYTES)
  c.final()
  blob.set(c.getAuthTag(), HEADER_BYTES + msg.byteLength)
  return blob
}

const text = (n: number): Uint8Array => enc.encode(Array.from({ length: n }, (_, i) => `line ${i} of a fuzz seed\n`).join('').slice(0, n))
const brotli = (b: Uint8Array, quality = 5): Uint8Array => brotliCompressSync(b, { params: { [zc.BROTLI_PARAM_QUALITY]: quality } })

const peerId = '12D3KooWLRPJAA5o6Z6ZSe8LG9uAR3xWYoUu2MP5PCPRLNCtzuEz'
const records = (): Uint8Array[] => [
  signRecord({ action: 'promote', package: 'app', version: '2.0.0', ring: 'broad', seq: 1, issued: now, expires: later, signers: publisherKeys }).bytes,
  signRecord({ action: 'rollback', package: 'app', version: '2.0.0', to: '1.9.0', seq: 2, issued: now, expires: later, signers: publisherKeys }).bytes,
  signRecord({ action: 'halt', package: 'app', version: '2.0.0', seq: 3, issued: now, expires: later, signers: publisherKeys }).bytes
]
const report: Report = {
  v: 1, peerId, sentAt: '2026-06-01T00:00:00.000Z', daemonVersion: '0.1.0', site: 'office', ring: 'canary',
  installed: [{ package: 'app', version: '1.2.3' }],
  releases: [
    { package: 'app', version: '1.2.3', state: 'installed', channel: 'stable' },
    { package: 'tool', version: '2.0.0', state: 'downloading', progress: { blobs: 3, blobsTotal: 10, bytes: 4096, bytesTotal: 65536 } },
    { package: 'db', version: '9.1.0', state: 'failed', error: { code: 'ERR_HOOK_FAILED', message: 'postinstall exited 3', exitCode: 3, logTail: 'line\n' } }
  ],
  bytes: { lan: 1000, seed: 20, origin: 0 },
  inventory: { source: 'dpkg', truncated: false, collectedAt: '2026-06-01T00:00:00Z', packages: [{ name: 'bash', version: '5.2.15-2+b2' }, { name: 'libc6', version: '2.36-9' }] }
}

export const TARGETS: Record<string, () => FuzzTarget> = {
  'blobs client message': () => ({
    seeds: [encodeRequest(1, 65536, new Uint8Array(32).fill(9)), encodeCredit(1 << 20), encodeCancel(3)],
    decode: decodeClientMsg
  }),

  'blobs server message': () => ({
    seeds: [encodeHello(128), encodeResponse(1, Status.OK, 1000), encodeResponse(2, Status.NOT_FOUND, 0), encodeAbort(2),
      Uint8Array.from([...encodeDataHeader(1), 1, 2, 3, 4, 5])],
    decode: (input) => {
      const parts = [input.subarray(0, (input[1] ?? 0) % 8), input.subarray((input[1] ?? 0) % 8)].filter(p => p.byteLength > 0)
      const split = parts.length > 0 ? splitDataFrame(parts) : undefined
      return split ?? decodeServerMsg(input)
    }
  }),

  'frames (length-prefixed stream)': () => ({
    seeds: [encodeFrames([enc.encode('hello'), new Uint8Array(300).fill(1), Uint8Array.of(0x82, 0, 0, 0, 1, 42)]), encodeFrames([new Uint8Array(4096)])],
    decode: (input) => {
      const d = new FrameDecoder(4096)
      pushSplit(d, input)
      let n = 0
      for (;;) {
        const f = (n & 1) === 0 ? d.next() : d.nextParts()
        if (f === undefined) break
        n++
      }
      d.end()
      return n
    },
    check: (input, n) => (n as number) * 5 <= input.byteLength ? undefined : `${n as number} frames out of ${input.byteLength} bytes`
  }),

  'control message': () => ({
    seeds: [encodeControl({ op: 'offer', package: 'app', version: '1.0.0' }, [enc.encode('{"a":1}'), new Uint8Array(10)]), encodeControl({ op: 'heads', channels: ['stable', 'beta'] })],
    decode: (input) => {
      const m = decodeControl(input, 'control message')
      headerString(m.header, 'op', 'control message', /^[a-z]+$/)
      headerStrings(m.header, 'channels', 'control message', 64, /^[a-z]+$/)
      return m
    }
  }),

  'rpc frames': () => ({
    seeds: [encodeFrames([Uint8Array.of(0x00, 1, 2, 3)]), encodeFrames([Uint8Array.of(0x01, 8, ...enc.encode('ERR_TEST'), ...enc.encode('a failure'))]), encodeFrames([Uint8Array.of(0x01, 9, 9, 9)])],
    decode: (input) => {
      const d = new FrameDecoder(1024 + 1024)
      pushSplit(d, input)
      const frame = d.next()
      d.end() // one frame per direction: anything after it is an error too
      if ((input[0] ?? 0) & 1) return decodeRpcRequest(frame, 'peer', '/shoal/test/1')
      if (frame === undefined) return undefined
      return decodeRpcReply(frame, 'peer', '/shoal/test/1', 1024)
    }
  }),

  'admission handshake': () => ({
    seeds: [encodeFrames([new Uint8Array(32).fill(1)]), encodeFrames([new Uint8Array(64).fill(2)]), encodeFrames([new Uint8Array(32).fill(1), new Uint8Array(64).fill(2), new Uint8Array(32).fill(3)])],
    decode: (input) => {
      const d = new FrameDecoder(ADMIT_MAX_FRAME)
      pushSplit(d, input)
      const steps = [decodeAdmitNonce, decodeAdmitReply, decodeAdmitProof]
      let n = 0
      for (let f = d.next(); f !== undefined; f = d.next()) steps[n++ % 3]!(f)
      d.end()
      return n
    }
  }),

  'have-map bitfield': () => {
    const m = new HaveMap(1000)
    for (let i = 0; i < 1000; i += 3) m.set(i)
    const u24 = (n: number): number[] => [n >>> 16, (n >>> 8) & 0xff, n & 0xff]
    return {
      seeds: [Uint8Array.from([...u24(1000), ...m.encode()]), Uint8Array.from([...u24(13), 0xff, 0x1f]), Uint8Array.from(u24(0))],
      decode: (input) => HaveMap.decode(input.subarray(3), ((input[0] ?? 0) << 16) + ((input[1] ?? 0) << 8) + (input[2] ?? 0)),
      check: (input, out) => sameBytes((out as HaveMap).encode(), input.subarray(3)) ? undefined : 'accepted, but re-encodes differently'
    }
  },

  'have increment': () => ({
    seeds: [Uint8Array.from([0x00, 0x10, 0x00, ...encodeIncrement([0, 1, 2, 100, 4000])]), Uint8Array.from([0x3d, 0x09, 0x00, ...encodeIncrement([3_999_999])])],
    decode: (input) => decodeIncrement(input.subarray(3), Math.min(4_000_000, ((input[0] ?? 0) << 16) + ((input[1] ?? 0) << 8) + (input[2] ?? 0))),
    check: (input, out) => sameBytes(encodeIncrement(out as number[]), input.subarray(3)) ? undefined : 'accepted, but re-encodes differently'
  }),

  'site hello / have message': () => ({
    seeds: [
      encodeControl({ op: 'hello', site: 'office', weight: 10, wan: true, lan: true, releases: [hex('a'), hex('b')] }, [Uint8Array.of(0xff, 0x01), Uint8Array.of(0x0f)]),
      encodeControl({ op: 'hello', site: null, weight: 0, wan: false, lan: false, releases: [hex('c')] }, [Uint8Array.of(0x03)]),
      encodeControl({ op: 'have', release: hex('a'), wan: false }, [encodeIncrement([1, 2, 9])])
    ],
    decode: (input) => {
      const r = decodeHaveRequest(input)
      if (r.op === 'hello') return decodeHello(input)
      if (r.increment !== undefined) decodeIncrement(r.increment, 16)
      return r
    }
  }),

  'announce messages': () => ({
    seeds: [
      encodeControl({ op: 'heads', channels: ['stable', 'beta'] }), encodeControl({ op: 'manifest', id: hex('a') }),
      encodeControl({ op: 'push', channel: 'stable' }, [enc.encode('{"signed":{}}')]), encodeControl({ op: 'site', site: 'office', addrs: ['/ip4/127.0.0.1/tcp/1'] }),
      encodeControl({ op: 'root', version: 2 }), encodeControl({ op: 'manifest', id: hex('a'), base: hex('b'), patch: true }),
      encodeControl({ delta: hex('b'), patch: true }, [enc.encode('SDLT'), Uint8Array.from([0x50, ...new Uint8Array(60)])]),
      encodeControl({ op: 'manifest-patches', id: hex('a') }), encodeControl({ bases: [hex('b'), hex('c')] }, [Uint8Array.from([0x50, ...new Uint8Array(60)]), Uint8Array.from([0x50, ...new Uint8Array(70)])]),
      encodeControl({ channels: ['stable', 'beta'] }, [enc.encode('{"a":1}'), enc.encode('{"b":2}')]), encodeControl({}, [enc.encode('{"m":1}')]),
      encodeControl({ peers: [{ id: peerId, addrs: ['/ip4/10.0.0.2/tcp/7700'] }] })
    ],
    // the length picks the decoder, so mutations carry every seed to every decoder
    decode: (input) => {
      switch (input.byteLength % 5) {
        case 0: return decodeAnnounceRequest(input)
        case 1: return decodeHeadsReply(input, ['stable', 'beta'])
        case 2: return decodeManifestReply(input, hex('a'))
        case 3: return decodeManifestPatchesReply(input)
        default: return decodeSiteReply(input)
      }
    }
  }),

  'announce records reply': () => ({
    // what fetchRecords returns goes to decodeRecord one by one (RecordStore.accept)
    seeds: [encodeControl({ count: 3 }, records()), encodeControl({ count: 1 }, records().slice(0, 1)), encodeControl({ count: 0 })],
    decode: (input) => decodeRecordsReply(input).map(r => decodeRecord(r))
  }),

  'publish request (seed side)': () => ({
    seeds: [
      encodeControl({ op: 'offer' }, [manifestBytes()]), encodeControl({ op: 'commit' }, [manifestBytes()]), encodeControl({ op: 'record' }, records().slice(1, 2)),
      encodeControl({ op: 'latest', package: 'app', channel: 'stable' }), encodeControl({ op: 'record-seq', package: 'app' }),
      encodeControl({ op: 'commit', patches: [hex('b')] }, [manifestBytes(), patchPair().patch])
    ],
    // and then what the seed does with the bytes it carries before any lookup: decode them
    decode: (input) => {
      const r = decodePublishRequest(input)
      if (r.op === 'offer' || r.op === 'commit') return decodeManifest(r.bytes)
      if (r.op === 'record') return decodeRecord(r.bytes)
      return r
    }
  }),

  'fleet report': () => ({
    seeds: [encodeReport(report), encodeReport({ ...report, site: null, releases: [], installed: [], inventory: { source: 'none', reason: 'no dpkg or rpm', truncated: false, collectedAt: '2026-06-01T00:00:00Z', packages: [] } })],
    json: true,
    decode: decodeReport,
    // what the seed stores is what it would accept again
    check: (_input, out) => sameBytes(encodeReport(decodeReport(encodeReport(out as Report))), encodeReport(out as Report)) ? undefined : 'accepted, but its re-encoding decodes differently'
  }),

  'fleet query and answer': () => {
    const j = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))
    return {
      seeds: [
        j({ op: 'status' }), j({ op: 'inventory', package: 'bash' }),
        j({ generatedAt: '2026-06-01T00:00:00Z', endpoints: 2, rings: { canary: 2 }, releases: [{ package: 'app', version: '1.2.3', rings: {}, total: {} }], sites: [{ site: 'office', endpoints: 2, lan: 1, wan: 2, seed: 2, origin: 0 }] }),
        j([{ ...report, receivedAt: '2026-06-01T00:00:01Z', inventory: { source: 'dpkg', truncated: false, collectedAt: '2026-06-01T00:00:00Z', count: 2 } }]),
        j([{ peerId, site: null, ring: 'canary', package: 'db', version: '9.1.0', state: 'failed', code: 'ERR_HOOK_FAILED', message: 'x' }]),
        j({ rows: [{ peerId, site: 'office', ring: 'canary', source: 'dpkg', name: 'bash', version: '5.2' }], incomplete: [] })
      ],
      json: true,
      // the seed's side (decodeQuery) and the publisher's (decodeFleetAnswer), the decoder picked
      // by a field the seed input has near its start, as the enrollment target picks by "type"
      decode: (input) => {
        const head = dec.decode(input.subarray(0, 200))
        if (head.includes('"op"')) return decodeQuery(input)
        const op = head.includes('"rows"') ? 'inventory' : head.includes('"generatedAt"') ? 'status' : head.includes('"code"') ? 'failures' : 'endpoints'
        return decodeFleetAnswer(op, input)
      }
    }
  },

  'audit policy': () => ({
    seeds: [enc.encode(JSON.stringify({ $comment: 'fleet policy', allow: ['bash', 'lib*', 'python3.?'], deny: ['telnet*', '*-dbg'] })), enc.encode(JSON.stringify({ deny: ['x'] }))],
    json: true,
    // read as the CLI reads it (UTF-8 text), then every pattern compiled as audit() compiles it
    decode: (input) => {
      const p = parsePolicy(dec.decode(input))
      for (const pat of [...p.allow ?? [], ...p.deny ?? []]) globToRegExp(pat)
      return p
    }
  }),

  manifest: () => ({ seeds: [manifestBytes()], json: true, decode: decodeManifest, check: reencodes }),

  'manifest payload': () => ({
    seeds: [enc.encode(JSON.stringify(payload)), enc.encode(JSON.stringify({ files: [] }))],
    json: true,
    // what openPayload does with the decrypted bytes
    decode: (input) => validatePayload(parseJsonBytes(input, 'payload', MAX_MANIFEST_BYTES).value, 2)
  }),

  head: () => ({
    seeds: [signHead({ channel: 'stable', seq: 5, issued: now, expires: later, packages: { app: { manifest: hex('a'), seq: 7, version: '1.2.3' }, tool: { manifest: hex('b'), seq: 1, version: '0.1.0-rc.1' } }, signers: onlineKeys }).bytes],
    json: true,
    decode: decodeHead,
    check: reencodes
  }),

  root: () => ({
    seeds: [encodeEnvelope(root()), encodeEnvelope(createRoot({ rootKeys: [key(1), key(5)], rootThreshold: 2, publisherKeys, publisherThreshold: 1, onlineKeys, expires: later, version: 2 }))],
    json: true,
    decode: decodeRoot
  }),

  record: () => ({
    seeds: records(),
    json: true,
    decode: decodeRecord,
    check: reencodes
  }),

  'enrollment bundles and key files': () => ({
    seeds: [
      encodeEndpointEnrollment(root(), new Uint8Array(32).fill(8)),
      encodeSeedEnrollment(root(), new Uint8Array(32).fill(9), onlineKeys[0]!),
      encodeFleetSecret(new Uint8Array(32).fill(8)),
      encodePrivateKeyFile(generateKeyPair(), 'publisher')
    ],
    json: true,
    // the kind of file is chosen by its "type", as a user might hand any of them to any command
    decode: (input) => {
      const t = /"type": *"([a-z-]+)"/.exec(dec.decode(input.subarray(0, 200)))?.[1]
      if (t === 'shoal-seed-enroll') return decodeSeedEnrollment(input)
      if (t === 'shoal-fleet-secret') return decodeFleetSecret(input)
      if (t === 'shoal-private-key') return decodePrivateKeyFile(input)
      return decodeEndpointEnrollment(input)
    }
  }),

  'daemon config': () => {
    const base = '/var/lib/shoal-fuzz'
    const parse = (input: Uint8Array) => {
      // as loadConfig: strict UTF-8 and JSON first, then field by field
      let raw: unknown
      try { raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(input)) } catch (err) { throw new ShoalError('ERR_CONFIG', 'not JSON', { cause: err }) }
      return { raw, cfg: parseConfig(raw, base) }
    }
    return {
      seeds: [
        enc.encode(JSON.stringify({ role: 'endpoint', stateDir: 'state', enroll: 'enroll.json', seeds: ['/ip4/127.0.0.1/tcp/7700/p2p/12D3KooWLRPJAA5o6Z6ZSe8LG9uAR3xWYoUu2MP5PCPRLNCtzuEz'], site: 'office', ring: 'canary', channels: ['stable'], wanRate: 1000000, mdns: true })),
        enc.encode(JSON.stringify({ role: 'seed', stateDir: '/srv/shoal', enroll: 'seed-enroll.json', listen: ['/ip4/0.0.0.0/tcp/7700'], api: '127.0.0.1:7701', publishers: [], headLifetime: 3600000, $comment: 'x' }))
      ],
      json: true,
      decode: parse,
      check: (_input, out) => {
        const { raw, cfg } = out as { raw: Record<string, unknown>, cfg: object }
        const unknown = Object.keys(raw).find(k => k !== '$comment' && !Object.hasOwn(cfg, k))
        return unknown === undefined ? undefined : `accepted the unknown field ${JSON.stringify(unknown)}`
      }
    }
  },

  'blob (as received)': () => {
    const k = Uint8Array.from(sealChunk(contentKey, text(20_000)).key)
    const seeds = [sealChunk(contentKey, text(20_000)).blob, sealChunk(contentKey, new Uint8Array(0)).blob, sealChunk(contentKey, text(100), { compress: false }).blob]
    return {
      seeds,
      // other chunks' blobs under this key fail their tag: that is the point, and cheap
      decode: (input) => openBlob(input, k, (input.byteLength & 1) === 0 ? { plainSize: 20_000 } : undefined)
    }
  },

  'blob (authenticated, as sealed by a faulty publisher)': () => {
    const k = new Uint8Array(32).fill(11)
    return {
      // codec byte ‖ message: sealed with a valid tag before opening, so every input reaches
      // the decompressor (bombs and corrupt brotli streams included)
      seeds: [Uint8Array.from([1, ...brotli(text(20_000))]), Uint8Array.from([0, ...text(64)]), Uint8Array.from([1, ...brotli(new Uint8Array(64 * 1024 * 1024), 1)])],
      decode: (input) => {
        if (input.byteLength === 0 || input.byteLength + HEADER_BYTES + TAG_BYTES > MAX_BLOB_BYTES) return undefined
        return openBlob(sealRaw(k, input[0]!, input.subarray(1)), k, (input.byteLength & 1) === 0 ? { plainSize: 20_000 } : undefined)
      }
    }
  },

  'payload patch (patched manifest reply, as rebuilt)': () => {
    const p = patchPair()
    return {
      seeds: [encodeControl({ delta: p.base.id, patch: true }, [p.stripped, p.patch]), p.inner],
      // Even lengths: a reply off the wire, decoded and applied as Announce.fetchManifest does (mutated
      // patches mostly fail their tag). Odd: the patch's delta as sealed by a faulty key holder, so
      // mutations reach the delta decoder and the ciphertext rebuild.
      decode: (input) => {
        if ((input.byteLength & 1) === 0) {
          const r = decodeManifestReply(input, p.id)
          return r.patch === undefined ? r : applyPayloadPatch(p.base, r.bytes, r.patch, p.id, contentKey)
        }
        const sealed = sealPayloadPatch(input, { baseId: p.base.id, targetId: p.id, package: 'app', channel: 'stable', contentKey })
        return applyPayloadPatch(p.base, p.stripped, sealed, p.id, contentKey)
      }
    }
  },

  'delta blob': () => {
    const base = text(64 * 1024)
    const target = Uint8Array.from(base)
    target.set(enc.encode('a change in the middle of the file'), 30_000)
    const delta = encodeDelta(base, target)
    if (delta === null) throw new Error('fuzz seed: no delta for a one-line change')
    return {
      seeds: [delta, encodeDelta(base, text(60_000))!],
      decode: (input) => {
        let d = input
        // Half the inputs get the base's length and CRC-32 fixed up, so mutations of the zstd
        // frame get past the base check and reach the decompressor.
        if (input.byteLength >= DELTA_HEADER_BYTES && (input.byteLength & 1) === 0) {
          d = Uint8Array.from(input)
          const v = new DataView(d.buffer)
          v.setUint32(10, base.byteLength)
          v.setUint32(14, crc32(base) >>> 0)
        }
        return decodeDelta(base, d, 1024 * 1024)
      }
    }
  }
}

export const TARGET_NAMES = Object.keys(TARGETS)
