// The daemon's JSON config: validated field by field, unknown fields refused by name, defaults
// in one place. docs/config.md documents every field; test/daemon/config.test.ts keeps the two
// in step.
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { ShoalError } from '../core/errors.js'
import { LABEL } from '../core/manifest.js'
import { normalizeOriginUrl } from '../net/origin-client.js'
import { FLEET_STALE_AFTER_MS } from '../fleet/store.js'
import { readFileCapped } from '../store/fs-util.js'

/** A config file is a few hundred bytes; anything near this is not one. */
export const MAX_CONFIG_BYTES = 1024 * 1024

/**
 * Node flags the daemon is meant to run with (examples/shoal.service sets them in NODE_OPTIONS;
 * bench/daemon.ts measures with them). A 4 MiB young generation instead of V8's 16 MiB default
 * semi-spaces: the daemon's garbage is short-lived, and the default let RSS idle at ~110 MB and
 * grow ~50 MB more while a large manifest is decoded (docs/daemon.md, docs/bench-daemon.md).
 * 4 rather than 2 pays for the extra collections DAEMON_V8_FLAGS asks for.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=4'] as const

/**
 * Environment the daemon is meant to run with (examples/shoal.service sets it; bench/daemon.ts
 * measures with it). At most two glibc malloc arenas instead of 8 per core: blobs are decrypted,
 * hashed and written on libuv's and LevelDB's threads, each of which got an arena of its own that
 * glibc keeps once grown. 1 GiB received: 272–276 → 236–239 MB of RSS at the same CPU per MiB
 * (docs/bench-daemon.md, "The receiving peak at 1 GiB").
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }

/**
 * V8 flags `shoal daemon` sets on itself at start (V8 refuses them in NODE_OPTIONS, so a unit
 * file cannot): the old generation may only double before the next full collection, instead of
 * V8's up to 4×. Blobs stream through in buffers V8 frees only when it collects; with the default
 * growth RSS while receiving 256 MiB stood at 237–252 MB, with this 187–199 MB at the same CPU per
 * MiB (docs/bench-daemon.md, "GC settings against the receiving peak").
 */
export const DAEMON_V8_FLAGS = ['--heap-growing-percent=100'] as const

/** The DAEMON_V8_FLAGS to set on a process started with `execArgv`: a flag given there wins. */
export function v8FlagsToSet (execArgv: readonly string[]): string[] {
  const named = (flag: string): string => flag.replace(/^--/, '').split('=')[0]!.replace(/_/g, '-')
  const given = new Set(execArgv.filter(a => a.startsWith('--')).map(named))
  return DAEMON_V8_FLAGS.filter(f => !given.has(named(f)))
}

export class ConfigError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options)
  }
}

export type Role = 'seed' | 'endpoint'
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface DaemonConfig {
  role: Role
  /** State directory: LevelDB, blobs, the PeerId. */
  stateDir: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  /** Seeds to connect to (multiaddrs with /p2p/<peerId>). */
  seeds: string[]
  /** Static-HTTP origins (base URLs of a published repository), WAN sources after the seeds. */
  origins: string[]
  /** enroll.json (endpoint) or seed-enroll.json (seed). */
  enroll: string
  /** Site label; peers with the same label are one site (the swarm issue adds mDNS). */
  site: string | null
  /** Rollout ring of this endpoint. */
  ring: string
  /** Local HTTP API "host:port"; null disables it. */
  api: string | null
  /** WAN budget in bytes/s for fetches from seeds; 0 = unlimited. */
  wanRate: number
  /** Where packages are installed (endpoint). */
  installRoot: string
  /** Channels this endpoint follows. */
  channels: string[]
  /** How often an endpoint polls its seeds for channel heads, in ms. */
  pollInterval: number
  /** Hook timeout in ms. */
  hookTimeout: number
  /** Lifetime of channel heads the seed signs, in ms. */
  headLifetime: number
  /** Seed only: cache mode when > 0: no full copy, blobs fetched from upstream on demand, LRU-bounded to this many bytes. */
  cacheSize: number
  /** Seed only: PeerIds allowed to upload releases; empty = any fleet member whose manifest verifies. */
  publishers: string[]
  /** Clock-skew allowance when checking expiry, in seconds. */
  expiryGrace: number
  logLevel: LogLevel
  /** Endpoint: find site peers on the LAN with mDNS. */
  mdns: boolean
  /** Endpoint: power source reported for ownership weights; "auto" reads /sys. */
  power: 'auto' | 'ac' | 'battery'
  /** Endpoint: uplink kind reported for ownership weights; "auto" looks at the default route. */
  link: 'auto' | 'wired' | 'wifi' | 'metered'
  /** Endpoint: how often it sends its seed a report even when nothing changed, in ms. */
  reportInterval: number
  /** Seed: an endpoint whose last report is older than this (ms) is counted apart as not reporting. */
  fleetStaleAfter: number
  /** Seed: token that opens the dashboard on the API address; null = dashboard off. */
  dashboardToken: string | null
  /** Endpoint: shell command told about each install before it runs (JSON on stdin); exit 75 defers. null = none. */
  notify: string | null
  /** Seed: URLs that receive a signed JSON POST per rollout event. */
  webhooks: string[]
  /** Seed: file holding the webhooks' HMAC secret (required with webhooks). */
  webhookSecret: string | null
}

export const CONFIG_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/7700'],
  seeds: [] as string[],
  origins: [] as string[],
  site: null,
  ring: 'broad',
  api: '127.0.0.1:7701',
  wanRate: 0,
  channels: ['stable'],
  pollInterval: 60_000,
  hookTimeout: 300_000,
  headLifetime: 24 * 3600_000,
  publishers: [] as string[],
  cacheSize: 0,
  expiryGrace: 300,
  logLevel: 'info' as LogLevel,
  mdns: true,
  power: 'auto' as const,
  link: 'auto' as const,
  reportInterval: 300_000,
  fleetStaleAfter: FLEET_STALE_AFTER_MS,
  dashboardToken: null,
  notify: null,
  webhooks: [] as string[],
  webhookSecret: null
}

type Check = (v: unknown, field: string) => unknown

const str: Check = (v, f) => {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`config field "${f}" must be a non-empty string`)
  return v
}
const strList: Check = (v, f) => {
  if (!Array.isArray(v) || v.some(x => typeof x !== 'string' || x.length === 0)) throw new ConfigError(`config field "${f}" must be a list of non-empty strings`)
  return v
}
const nonNegInt: Check = (v, f) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`config field "${f}" must be a whole number ≥ 0`)
  return v
}
const posInt: Check = (v, f) => {
  if (nonNegInt(v, f) === 0) throw new ConfigError(`config field "${f}" must be a whole number > 0`)
  return v
}
const oneOf = (...allowed: string[]): Check => (v, f) => {
  if (typeof v !== 'string' || !allowed.includes(v)) throw new ConfigError(`config field "${f}" must be one of ${allowed.map(a => `"${a}"`).join(', ')}`)
  return v
}
const label: Check = (v, f) => {
  str(v, f)
  if (!LABEL.test(v as string)) throw new ConfigError(`config field "${f}" must be a label of letters, digits, ".", "_" or "-" (at most 64)`)
  return v
}
const hostPort: Check = (v, f) => {
  if (v === null) return null
  str(v, f)
  const m = /^(.+):(\d{1,5})$/.exec(v as string)
  if (m === null || Number(m[2]) > 65535) throw new ConfigError(`config field "${f}" must be "host:port", e.g. "127.0.0.1:7701"`)
  return v
}

const FIELDS: Record<keyof DaemonConfig, Check> = {
  role: oneOf('seed', 'endpoint'),
  stateDir: str,
  listen: strList,
  seeds: strList,
  origins: (v, f) => {
    strList(v, f)
    return (v as string[]).map((u, i) => {
      try { return normalizeOriginUrl(u) } catch (err) { throw new ConfigError(`config field "${f}[${i}]": ${(err as Error).message}`) }
    })
  },
  enroll: str,
  site: (v, f) => v === null ? null : label(v, f),
  ring: label,
  api: hostPort,
  wanRate: nonNegInt,
  installRoot: str,
  channels: (v, f) => { strList(v, f); (v as string[]).forEach((c, i) => label(c, `${f}[${i}]`)); return v },
  pollInterval: posInt,
  hookTimeout: posInt,
  headLifetime: posInt,
  publishers: strList,
  cacheSize: nonNegInt,
  expiryGrace: nonNegInt,
  logLevel: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  mdns: (v, f) => { if (typeof v !== 'boolean') throw new ConfigError(`config field "${f}" must be true or false`); return v },
  power: oneOf('auto', 'ac', 'battery'),
  link: oneOf('auto', 'wired', 'wifi', 'metered'),
  reportInterval: posInt,
  fleetStaleAfter: posInt,
  dashboardToken: (v, f) => {
    if (v === null) return null
    if (typeof v !== 'string' || !/^[\x21-\x7e]{16,256}$/.test(v)) throw new ConfigError(`config field "${f}" must be null or a token of 16 to 256 printable characters (e.g. \`openssl rand -hex 24\`)`)
    return v
  },
  notify: (v, f) => v === null ? null : str(v, f),
  webhooks: (v, f) => {
    strList(v, f)
    for (const [i, u] of (v as string[]).entries()) {
      let url: URL | undefined
      try { url = new URL(u) } catch { /* below */ }
      if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new ConfigError(`config field "${f}[${i}]" must be an http:// or https:// URL, got ${JSON.stringify(u).slice(0, 100)}`)
    }
    return v
  },
  webhookSecret: (v, f) => v === null ? null : str(v, f)
}

/**
 * Validates a parsed config. Relative paths are resolved against `baseDir` (the config file's
 * folder), so a config works from any working directory.
 */
export function parseConfig (raw: unknown, baseDir: string): DaemonConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('config must be a JSON object')
  const o = raw as Record<string, unknown>
  for (const k of Object.keys(o)) {
    // own keys only: `in` would take "toString", "constructor" or "__proto__" for fields
    if (!Object.hasOwn(FIELDS, k) && k !== '$comment') throw new ConfigError(`unknown config field "${k}" (see docs/config.md for the fields)`)
  }
  for (const req of ['role', 'stateDir', 'enroll'] as const) {
    if (!(req in o)) throw new ConfigError(`config field "${req}" is required`)
  }
  const merged: Record<string, unknown> = { ...CONFIG_DEFAULTS, ...o }
  if (!('installRoot' in o)) merged.installRoot = 'apps' // placeholder: resolved under stateDir below
  const out: Record<string, unknown> = {}
  for (const [k, check] of Object.entries(FIELDS)) out[k] = check(merged[k], k)
  const cfg = out as unknown as DaemonConfig
  const abs = (p: string): string => isAbsolute(p) ? p : resolve(baseDir, p)
  cfg.stateDir = abs(cfg.stateDir)
  cfg.enroll = abs(cfg.enroll)
  cfg.installRoot = !('installRoot' in o) ? join(cfg.stateDir, 'apps') : abs(cfg.installRoot)
  if (cfg.webhookSecret !== null) cfg.webhookSecret = abs(cfg.webhookSecret)
  if (cfg.webhooks.length > 0 && cfg.webhookSecret === null) {
    throw new ConfigError('"webhooks" needs "webhookSecret": the file whose contents sign each webhook (X-Shoal-Signature)')
  }
  if (cfg.role === 'endpoint' && cfg.seeds.length === 0 && cfg.origins.length === 0) {
    throw new ConfigError('an endpoint needs at least one entry in "seeds" (the seed\'s multiaddr with /p2p/<peerId>) or in "origins" (a static-HTTP origin\'s base URL)')
  }
  if (cfg.cacheSize > 0 && (cfg.role !== 'seed' || cfg.seeds.length + cfg.origins.length === 0)) {
    throw new ConfigError('"cacheSize" is for a seed with an upstream: give it "origins" (or full peer "seeds") to fetch from')
  }
  return cfg
}

export async function loadConfig (path: string, overrides: Partial<Record<keyof DaemonConfig, unknown>> = {}): Promise<DaemonConfig> {
  let text: string
  try {
    text = (await readFileCapped(path, MAX_CONFIG_BYTES, 'config file')).toString('utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) (raw as Record<string, unknown>)[k] = v
  }
  return parseConfig(raw, dirname(resolve(path)))
}
