// What every command shares: exit codes scripts can rely on, one-line errors, JSON output,
// progress bars only on a TTY, and parsers for the units people type.
import { SingleBar, Presets } from 'cli-progress'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ShoalError, InvalidArgumentError } from '../core/errors.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import { SeedSession } from '../publish/push.js'
import { BlobStore } from '../store/blob-store.js'

/** Exit codes (docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** Something failed: I/O, network, a peer refused. */
  failure: 1,
  /** The command line or a config file is wrong. */
  usage: 2,
  /** A signature, hash, expiry or trust check refused the input. */
  untrusted: 3
} as const

const UNTRUSTED_CODES = new Set([
  'ERR_SIGNATURE_THRESHOLD', 'ERR_EXPIRED', 'ERR_ROLLBACK', 'ERR_UNKNOWN_KEYTYPE', 'ERR_PAYLOAD_DECRYPT',
  'ERR_BLOB_CID', 'ERR_BLOB_AUTH', 'ERR_BLOB_FORMAT', 'ERR_BLOB_SIZE', 'ERR_FILE_HASH', 'ERR_DECODE',
  'ERR_OVERSIZE', 'ERR_INVALID_PATH', 'ERR_UNSAFE_PATH', 'ERR_MIX_AND_MATCH', 'ERR_WRONG_PACKAGE', 'ERR_ROOT_CHAIN',
  'ERR_FLEET_UNAUTHORIZED'
])

export function exitCodeFor (err: unknown): number {
  if (err instanceof ShoalError) {
    if (err.code === 'ERR_INVALID_ARGUMENT' || err.code === 'ERR_CONFIG' || err.code === 'ERR_INVALID_CHUNKER_OPTIONS' || err.code === 'ERR_AUDIT_POLICY') return EXIT.usage
    // A seed refusing an upload on a trust check (its code travels as remoteCode) is a refusal too.
    const code = err.code === 'ERR_RPC_REMOTE' ? String((err as ShoalError & { remoteCode?: string }).remoteCode) : err.code
    if (UNTRUSTED_CODES.has(code) || code.startsWith('ERR_EXPIRED') || code.startsWith('ERR_SIGNATURE')) return EXIT.untrusted
  }
  return EXIT.failure
}

/** One line a person can act on; the code in brackets is for scripts and support. */
export function describeError (err: unknown): string {
  if (err instanceof ShoalError) return `${err.message} [${err.code}]`
  if (err instanceof Error) return err.message
  return String(err)
}

/** Bytes for a person: B, kB, MB (decimal units, as `du --si`). */
export function formatBytes (n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`
}

/** A duration for a person, in its largest whole unit: 7 d, 36 h, 90 min, 45 s. */
export function formatDuration (ms: number): string {
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['min', 60_000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n} ${unit}`
  }
  return `${Math.round(ms / 1000)} s`
}

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

export interface Progress {
  update: (done: number, payload?: Record<string, unknown>) => void
  setTotal: (total: number) => void
  stop: () => void
}

/** A progress bar on stderr when it is a TTY and the output is not JSON; otherwise nothing. */
export function progressBar (label: string, total: number, enabled: boolean): Progress {
  if (!enabled || process.stderr.isTTY !== true) {
    return { update: () => {}, setTotal: () => {}, stop: () => {} }
  }
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} MB | {speed} MB/s`,
    stream: process.stderr,
    hideCursor: true
  }, Presets.shades_classic)
  const started = Date.now()
  const mb = (n: number): number => Math.round(n / 1e5) / 10
  bar.start(mb(total), 0, { speed: '0' })
  return {
    update: (done) => {
      const secs = Math.max((Date.now() - started) / 1000, 0.001)
      bar.update(mb(done), { speed: (done / 1e6 / secs).toFixed(1) })
    },
    setTotal: (t) => { bar.setTotal(mb(t)) },
    stop: () => { bar.stop() }
  }
}

const DURATION = /^(\d+)(s|m|h|d|w)$/
const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }

/** "90d", "12h", "30m", "45s", "2w" → milliseconds. */
export function parseDuration (text: string, what: string): number {
  const m = DURATION.exec(text.trim())
  if (m === null) throw new InvalidArgumentError(`${what}: "${text}" is not a duration; use a number and a unit, e.g. 90d, 12h, 30m, 45s`)
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number)
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new InvalidArgumentError(`${what}: "${text}" is out of range`)
  return ms
}

const SIZE = /^(\d+)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?$/i
const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, kib: 1024, kb: 1000, m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9 }

/** "16KiB", "4096", "1MiB", "10MB" → bytes. */
export function parseSize (text: string, what: string): number {
  const m = SIZE.exec(text.trim())
  if (m === null) throw new InvalidArgumentError(`${what}: "${text}" is not a size; use e.g. 16KiB, 1MiB or a number of bytes`)
  const n = Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] as number)
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${what}: "${text}" is out of range`)
  return n
}

export function parseIntArg (text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError(`${what}: "${text}" is not a whole number`)
  const n = Number(text)
  if (n < min || n > max) throw new InvalidArgumentError(`${what}: ${n} is out of range (${min}–${max})`)
  return n
}

/**
 * Runs `task` with a publish session to `seed` for commands that send no blobs (control records,
 * roots), as the keys folder's publisher PeerId: the session's blob store is an empty temporary
 * folder, removed afterwards.
 */
export async function withBloblessSession<T> (keysDir: string, seed: string, networkKey: Uint8Array, task: (session: SeedSession) => Promise<T>): Promise<T> {
  const scratch = await mkdtemp(join(tmpdir(), 'shoal-session-'))
  let session: SeedSession | undefined
  try {
    session = await SeedSession.open({ seed, networkKey, privateKey: await loadOrCreatePeerKey(keysDir), blobs: await BlobStore.open(scratch) })
    return await task(session)
  } finally {
    await session?.close()
    await rm(scratch, { recursive: true, force: true })
  }
}
