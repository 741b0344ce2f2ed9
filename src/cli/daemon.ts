import type { Command } from 'commander'
import { resolve } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { CONFIG_DEFAULTS, loadConfig, v8FlagsToSet, type DaemonConfig } from '../daemon/config.js'
import { startDaemon } from '../daemon/daemon.js'
import { describeError, parseDuration, parseSize } from './common.js'

const LISTS = new Set<keyof DaemonConfig>(['listen', 'seeds', 'origins', 'channels', 'publishers', 'webhooks'])
const DURATIONS = new Set<keyof DaemonConfig>(['pollInterval', 'hookTimeout', 'headLifetime', 'reportInterval', 'fleetStaleAfter'])
const FIELDS: Array<keyof DaemonConfig> = [
  'role', 'stateDir', 'enroll', 'listen', 'seeds', 'origins', 'site', 'ring', 'api', 'wanRate', 'installRoot', 'channels',
  'pollInterval', 'hookTimeout', 'headLifetime', 'publishers', 'cacheSize', 'expiryGrace', 'logLevel', 'mdns', 'power', 'link',
  'reportInterval', 'fleetStaleAfter', 'dashboardToken', 'notify', 'webhooks', 'webhookSecret'
]

const kebab = (s: string): string => s.replace(/[A-Z]/g, c => '-' + c.toLowerCase())
const camel = (s: string): string => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

/** A flag's text as the config value it overrides: lists comma-separated, sizes and durations in units. */
function flagValue (field: keyof DaemonConfig, text: string): unknown {
  if (text === 'null' && (field === 'site' || field === 'api' || field === 'dashboardToken' || field === 'notify' || field === 'webhookSecret')) return null
  if (field === 'mdns') return text === 'true' ? true : text === 'false' ? false : text
  if (LISTS.has(field)) return text === '' ? [] : text.split(',').map(s => s.trim())
  if (field === 'wanRate') return parseSize(text, '--wan-rate')
  if (field === 'cacheSize') return parseSize(text, '--cache-size')
  if (DURATIONS.has(field)) return parseDuration(text, `--${kebab(field)}`)
  if (field === 'expiryGrace') return Math.round(parseDuration(text, '--expiry-grace') / 1000)
  return text
}

export function registerDaemon (program: Command): void {
  const cmd = program.command('daemon')
    .description('run a seed or an endpoint (role from the config file)')
    .requiredOption('--config <file>', 'JSON config (docs/config.md; examples/seed.json, examples/endpoint.json)')
  for (const f of FIELDS) {
    const hint = LISTS.has(f) ? '<a,b,…>' : '<value>'
    cmd.option(`--${kebab(f)} ${hint}`, `override config field "${f}"${f in CONFIG_DEFAULTS ? '' : ''}`)
  }
  cmd.addHelpText('after', `
Sizes take units (--wan-rate 2MB), durations too (--poll-interval 30s); lists are comma-separated.
Logs are pino JSON on stderr (pretty on a terminal; SHOAL_LOG_JSON=1 forces JSON).
Ctrl-C or SIGTERM stops the daemon cleanly.

Examples:
  shoal daemon --config examples/seed.json
  shoal daemon --config examples/endpoint.json --ring canary --log-level debug`)
    .action(async (o: Record<string, string>) => {
      const overrides: Partial<Record<keyof DaemonConfig, unknown>> = {}
      for (const [k, v] of Object.entries(o)) {
        if (k === 'config') continue
        const field = camel(k) as keyof DaemonConfig
        if (FIELDS.includes(field)) overrides[field] = flagValue(field, v)
      }
      const cfg = await loadConfig(resolve(o.config as string), overrides)
      // GC settings the daemon is measured with (DAEMON_V8_FLAGS): set before the node allocates.
      for (const flag of v8FlagsToSet(process.execArgv)) setFlagsFromString(flag)
      const skew = clockSkew(process.env.SHOAL_TEST_CLOCK_SKEW)
      const daemon = await startDaemon(cfg, skew === 0 ? {} : { now: () => new Date(Date.now() + skew) })
      if (skew !== 0) daemon.log.warn({ skewMs: skew }, 'SHOAL_TEST_CLOCK_SKEW is set: this daemon\'s clock for expiry and rollout times is shifted (for tests only)')
      if (daemon.api !== undefined) process.stderr.write(`shoal ${cfg.role} ${daemon.node.peerId.toString()} · API http://${daemon.api.address}\n`)
      await new Promise<void>(done => {
        let stopping = false
        const stop = (signal: string): void => {
          if (stopping) return
          stopping = true
          daemon.log.info({ signal }, 'stopping')
          daemon.stop().then(done, (err: unknown) => { process.stderr.write(`shoal: ${describeError(err)}\n`); done() })
        }
        process.once('SIGINT', () => stop('SIGINT'))
        process.once('SIGTERM', () => stop('SIGTERM'))
      })
    })
}

/**
 * Test-only clock injection (docs/daemon.md, "Clock"): SHOAL_TEST_CLOCK_SKEW="+1h" / "-30m" shifts
 * the clock the daemon checks expiry and rollout times against, so a test can run a real daemon
 * process with a skewed clock without changing the machine's. Not a config field on purpose: no
 * deployment should carry it.
 */
export function clockSkew (text: string | undefined): number {
  if (text === undefined || text.trim() === '') return 0
  const t = text.trim()
  const sign = t.startsWith('-') ? -1 : 1
  return sign * parseDuration(t.replace(/^[+-]/, ''), 'SHOAL_TEST_CLOCK_SKEW')
}
