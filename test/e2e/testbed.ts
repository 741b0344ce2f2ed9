// The end-to-end test bed (DESIGN §10, issue 4): real `shoal daemon` processes in Linux network
// namespaces made here — a datacenter namespace with the seed, a WAN router namespace, and K sites,
// each a bridge in its own site namespace with N endpoint namespaces on it. Each site's uplink
// (site ↔ router) is shaped with `tc` and its bytes are read from the router's interface counters.
// Everything is torn down in reverse order: by `destroy()`, on SIGINT/SIGTERM/exit of this process,
// and by the sweep at the next start when this process died hard. docs/testbed.md has the details.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/daemon/config.js'

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const SHOAL_BIN = join(REPO_ROOT, 'bin', 'shoal')

// ---------------------------------------------------------------------------------------------
// Names: every netns, interface and work folder starts with `shl<pid:5 base36><instance>`, so the
// sweep can tell whose it is and whether the owner is still alive.

const NAME_RE = /^shl([0-9a-z]{5})([0-9a-z])/
let instanceCounter = 0
/** Prefixes of test beds alive in this process (the sweep leaves them alone). */
const livePrefixes = new Set<string>()

function pid36 (pid: number): string { return pid.toString(36).padStart(5, '0').slice(-5) }

function pidAlive (pid: number): boolean {
  if (pid === process.pid) return true
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Whether a name made by some test bed is stale: its owner is dead, or it is ours but not live. */
function staleName (name: string): boolean {
  const m = NAME_RE.exec(name)
  if (m === null) return false
  const prefix = m[0]
  const pid = parseInt(m[1]!, 36)
  if (pid === process.pid || pid36(process.pid) === m[1]) return !livePrefixes.has(prefix)
  return !pidAlive(pid)
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface RunResult { code: number, stdout: string, stderr: string }

function which (cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(dir, cmd)
    if (existsSync(p)) return p
  }
  return null
}

/** Runs a command to completion (never throws for a non-zero exit; check `code`). */
export async function run (argv: string[], opts: { input?: string, timeoutMs?: number, env?: NodeJS.ProcessEnv, cwd?: string } = {}): Promise<RunResult> {
  return await new Promise(resolve => {
    const child = execFile(argv[0]!, argv.slice(1), {
      encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL',
      env: opts.env ?? process.env, cwd: opts.cwd ?? REPO_ROOT
    }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr: stderr + (err !== null && code === 1 && stderr === '' ? String(err.message) : '') })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** Runs a command and throws with its output when it fails. */
async function must (argv: string[], what?: string): Promise<string> {
  const r = await run(argv)
  if (r.code !== 0) throw new Error(`${what ?? argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`)
  return r.stdout
}

function syncQuiet (argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 })
  } catch { return '' }
}

/** Why the test bed cannot run here, or null when it can. Tests: `describe.skipIf(skipReason() !== null)`. */
export function skipReason (): string | null {
  if (process.platform !== 'linux') return `e2e test bed skipped: needs Linux network namespaces (platform is ${process.platform})`
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'e2e test bed skipped: needs root (ip netns, tc); run as root, e.g. in CI'
  for (const tool of ['ip', 'tc']) if (which(tool) === null) return `e2e test bed skipped: \`${tool}\` (iproute2) not found in PATH`
  if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'))) return 'e2e test bed skipped: dist/ is missing, run `npm run build` first'
  return null
}

let skipPrinted = false
/** skipReason(), printed once per process so CI logs say why the e2e tests did not run. */
export function skipReasonPrinted (): string | null {
  const r = skipReason()
  if (r !== null && !skipPrinted) { skipPrinted = true; console.log(r) }
  return r
}

// ---------------------------------------------------------------------------------------------
// Processes inside namespaces

export interface ProcHandle {
  readonly ns: string
  readonly argv: string[]
  readonly pid: number
  readonly logFile: string
  /** Exit code (or 128+signal) once exited, else null. */
  readonly exitCode: number | null
  kill: (signal?: NodeJS.Signals) => void
  /** Resolves when the process has exited. */
  wait: (timeoutMs?: number) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** The last `lines` lines of its log (stdout and stderr), for failure messages. */
  tail: (lines?: number) => string
}

const allProcs = new Set<ProcHandle & { child: ChildProcess }>()

function readTail (file: string, lines: number): string {
  try {
    const st = statSync(file)
    const len = Math.min(st.size, 256 * 1024)
    const fd = openSync(file, 'r')
    try {
      const buf = Buffer.alloc(len)
      readSync(fd, buf, 0, len, st.size - len)
      return buf.toString('utf8').split('\n').slice(-lines - 1).join('\n')
    } finally { closeSync(fd) }
  } catch { return '' }
}

/**
 * Starts `argv` inside network namespace `ns` (`ip netns exec`, which execs, so `pid` is the
 * command's own). stdout and stderr go to `logFile`. The process leads its own process group, so
 * kill() reaches its children too.
 */
export function spawnIn (ns: string, argv: string[], opts: { env?: NodeJS.ProcessEnv, logFile: string, cwd?: string }): ProcHandle {
  mkdirSync(dirname(opts.logFile), { recursive: true })
  const fd = openSync(opts.logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? REPO_ROOT
    })
  } finally { closeSync(fd) }
  if (child.pid === undefined) throw new Error(`cannot start ${argv.join(' ')} in ${ns}`)
  const pid = child.pid
  let exitCode: number | null = null
  let exitSignal: NodeJS.Signals | null = null
  const exited = new Promise<void>(resolve => {
    child.on('exit', (code, signal) => { exitCode = code ?? 128; exitSignal = signal; allProcs.delete(h); resolve() })
    child.on('error', () => { exitCode = exitCode ?? 127; allProcs.delete(h); resolve() })
  })
  const h = {
    ns, argv, pid, logFile: opts.logFile, child,
    get exitCode () { return exitCode },
    kill (signal: NodeJS.Signals = 'SIGTERM') {
      if (exitCode !== null) return
      try { process.kill(-pid, signal) } catch { try { process.kill(pid, signal) } catch { /* gone */ } }
    },
    async wait (timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${argv.join(' ')} in ${ns} did not exit within ${timeoutMs} ms\n${h.tail()}`)), timeoutMs)
      })
      try { await Promise.race([exited, timeout]) } finally { clearTimeout(timer) }
      return { code: exitCode, signal: exitSignal }
    },
    tail (lines = 40) { return readTail(opts.logFile, lines) }
  }
  allProcs.add(h)
  return h
}

/** Stops every process started by spawnIn in this process: SIGTERM, then SIGKILL after `graceMs`. */
export async function killAll (graceMs = 3000): Promise<void> {
  const procs = [...allProcs]
  for (const p of procs) p.kill('SIGTERM')
  await Promise.all(procs.map(async p => {
    try { await p.wait(graceMs) } catch { p.kill('SIGKILL'); await p.wait(5000).catch(() => undefined) }
  }))
}

function killAllSync (): void {
  for (const p of allProcs) p.kill('SIGKILL')
}

/** Runs a command inside `ns` to completion. */
export async function runIn (ns: string, argv: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return await run(['ip', 'netns', 'exec', ns, ...argv], { timeoutMs: opts.timeoutMs, env: opts.env === undefined ? undefined : { ...process.env, ...opts.env } })
}

// ---------------------------------------------------------------------------------------------
// Sweep and teardown

function removeNetnsSync (ns: string): void {
  // Processes keep a namespace alive after its name is gone: kill them first.
  for (const pid of syncQuiet(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
  }
  syncQuiet(['ip', 'netns', 'del', ns])
}

function listNetns (): string[] {
  return syncQuiet(['ip', 'netns', 'list']).split('\n').map(l => l.split(/\s+/)[0]!).filter(Boolean)
}

function listHostLinks (): string[] {
  try {
    return (JSON.parse(syncQuiet(['ip', '-j', 'link', 'show']) || '[]') as Array<{ ifname: string }>).map(l => l.ifname)
  } catch { return [] }
}

/**
 * Removes leftovers of earlier runs that crashed: namespaces, host interfaces and work folders
 * whose name carries the shoal test-bed prefix and whose owning PID is dead. Returns what it removed.
 */
export function sweepStale (): string[] {
  const removed: string[] = []
  for (const ns of listNetns()) if (staleName(ns)) { removeNetnsSync(ns); removed.push(`netns ${ns}`) }
  for (const l of listHostLinks()) if (staleName(l)) { syncQuiet(['ip', 'link', 'del', l]); removed.push(`link ${l}`) }
  try {
    for (const d of readdirSync(tmpdir())) {
      if (/-e2e$/.test(d) && staleName(d) && process.env.SHOAL_E2E_KEEP === undefined) {
        rmSync(join(tmpdir(), d), { recursive: true, force: true }); removed.push(`dir ${d}`)
      }
    }
  } catch { /* tmpdir unreadable */ }
  return removed
}

/** What is left in the system with this prefix (netns and host interfaces); [] when clean. */
export function leftovers (prefix: string): string[] {
  return [...listNetns().filter(n => n.startsWith(prefix)).map(n => `netns ${n}`),
    ...listHostLinks().filter(l => l.startsWith(prefix)).map(l => `link ${l}`)]
}

const liveBeds = new Set<Testbed>()
let handlersInstalled = false
function installExitHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const onSignal = (sig: NodeJS.Signals): void => {
    for (const tb of liveBeds) tb.destroySync()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.kill(process.pid, sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('exit', () => { for (const tb of liveBeds) tb.destroySync() })
}

// ---------------------------------------------------------------------------------------------
// The topology

export interface TestbedOptions {
  /** Number of sites (1…99). */
  sites: number
  /** Endpoints per site (1…99). */
  endpointsPerSite: number
  /** Uplink rate per site in bit/s, both directions; 0 = unshaped. Default 20 Mbit/s. */
  uplinkRate?: number
  /** One-way uplink delay in ms (netem; applied both ways). Default 10. */
  uplinkDelayMs?: number
  /** Keep the work folder (logs, configs, state) after destroy(); also SHOAL_E2E_KEEP=1. */
  keepWorkDir?: boolean
}

export interface Endpoint { site: number, index: number, ns: string, ip: string, ifname: string }
export interface Site { index: number, ns: string, bridge: string, gatewayIp: string, subnet: string, uplink: string, uplinkRouterSide: string, endpoints: Endpoint[] }
export interface WanBytes {
  /** Bytes router → site (what the site pulled over its WAN link). */
  down: number
  /** Bytes site → router. */
  up: number
}
export interface Shaping {
  rate: 'tbf' | 'htb' | 'none'
  delay: 'netem' | 'none'
  /** Human-readable note when something asked for could not be applied. */
  note: string | null
}

const haveCurl = which('curl') !== null
const havePing = which('ping') !== null

export const DC_SUBNET = '10.77.0.0/24'
export const ROUTER_DC_IP = '10.77.0.1'
export const SEED_IP = '10.77.0.10'

export class Testbed {
  readonly prefix: string
  readonly workDir: string
  readonly dcNs: string
  readonly routerNs: string
  readonly sites: Site[] = []
  shaping: Shaping = { rate: 'none', delay: 'none', note: null }
  /** Namespaces in creation order (teardown goes in reverse). */
  private readonly namespaces: string[] = []
  private readonly daemons: ShoalDaemon[] = []
  private destroyed = false

  private constructor (readonly opts: Required<TestbedOptions>) {
    this.prefix = `shl${pid36(process.pid)}${(instanceCounter++ % 36).toString(36)}`
    this.workDir = join(tmpdir(), `${this.prefix}-e2e`)
    this.dcNs = `${this.prefix}-dc`
    this.routerNs = `${this.prefix}-wan`
  }

  /** Sweeps stale leftovers, then builds the topology. On failure, everything made is removed. */
  static async create (options: TestbedOptions): Promise<Testbed> {
    const o: Required<TestbedOptions> = {
      uplinkRate: 20_000_000, uplinkDelayMs: 10, keepWorkDir: process.env.SHOAL_E2E_KEEP !== undefined, ...options
    }
    if (!(o.sites >= 1 && o.sites <= 99 && o.endpointsPerSite >= 1 && o.endpointsPerSite <= 99)) throw new Error('sites and endpointsPerSite must be 1…99')
    const reason = skipReason()
    if (reason !== null) throw new Error(reason)
    const tb = new Testbed(o)
    livePrefixes.add(tb.prefix)
    sweepStale()
    installExitHandlers()
    liveBeds.add(tb)
    try {
      rmSync(tb.workDir, { recursive: true, force: true })
      mkdirSync(tb.workDir, { recursive: true })
      await tb.build()
    } catch (err) {
      await tb.destroy()
      throw err
    }
    return tb
  }

  private ifn (suffix: string): string {
    const n = `${this.prefix}${suffix}`
    if (n.length > 15) throw new Error(`interface name ${n} is longer than 15 characters`)
    return n
  }

  private async addNs (ns: string, forward: boolean): Promise<void> {
    await must(['ip', 'netns', 'add', ns])
    this.namespaces.push(ns)
    await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
    // IPv6 off: no router solicitations or DAD on the uplinks, so the counters hold shoal's bytes.
    const sysctls = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', `net.ipv4.ip_forward=${forward ? 1 : 0}`]
    await must(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', ...sysctls])
  }

  /** A veth pair with one end in each namespace, addressed and up. */
  private async veth (a: { ns: string, name: string, addr?: string }, b: { ns: string, name: string, addr?: string }): Promise<void> {
    await must(['ip', 'link', 'add', 'name', a.name, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns])
    for (const e of [a, b]) {
      if (e.addr !== undefined) await must(['ip', '-n', e.ns, 'addr', 'add', e.addr, 'dev', e.name])
      await must(['ip', '-n', e.ns, 'link', 'set', e.name, 'multicast', 'on', 'up'])
    }
  }

  private async build (): Promise<void> {
    const { sites: K, endpointsPerSite: N } = this.opts
    await this.addNs(this.dcNs, false)
    await this.addNs(this.routerNs, true)
    await this.veth({ ns: this.dcNs, name: this.ifn('d'), addr: `${SEED_IP}/24` }, { ns: this.routerNs, name: this.ifn('dr'), addr: `${ROUTER_DC_IP}/24` })
    await must(['ip', '-n', this.dcNs, 'route', 'add', 'default', 'via', ROUTER_DC_IP])
    for (let s = 1; s <= K; s++) {
      const ns = `${this.prefix}-s${s}`
      await this.addNs(ns, true)
      const site: Site = {
        index: s, ns, bridge: this.ifn(`b${s}`), gatewayIp: `10.78.${s}.1`, subnet: `10.78.${s}.0/24`,
        uplink: this.ifn(`u${s}`), uplinkRouterSide: this.ifn(`u${s}r`), endpoints: []
      }
      // Uplink: 10.77.<s>.0/30, router .1, site .2.
      await this.veth({ ns, name: site.uplink, addr: `10.77.${s}.2/30` }, { ns: this.routerNs, name: site.uplinkRouterSide, addr: `10.77.${s}.1/30` })
      await must(['ip', '-n', ns, 'route', 'add', 'default', 'via', `10.77.${s}.1`])
      await must(['ip', '-n', this.routerNs, 'route', 'add', site.subnet, 'via', `10.77.${s}.2`])
      // The site LAN: a bridge, STP off, multicast snooping off (mDNS is flooded to every port).
      await must(['ip', '-n', ns, 'link', 'add', 'name', site.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0'])
      await must(['ip', '-n', ns, 'addr', 'add', `${site.gatewayIp}/24`, 'dev', site.bridge])
      await must(['ip', '-n', ns, 'link', 'set', site.bridge, 'multicast', 'on', 'up'])
      for (let i = 1; i <= N; i++) {
        const ens = `${this.prefix}-s${s}e${i}`
        await this.addNs(ens, false)
        const ep: Endpoint = { site: s, index: i, ns: ens, ip: `10.78.${s}.${10 + i}`, ifname: this.ifn(`${s}e${i}`) }
        const port = this.ifn(`${s}e${i}b`)
        await this.veth({ ns: ens, name: ep.ifname, addr: `${ep.ip}/24` }, { ns, name: port })
        await must(['ip', '-n', ns, 'link', 'set', port, 'master', site.bridge])
        await must(['ip', '-n', ens, 'route', 'add', 'default', 'via', site.gatewayIp])
        site.endpoints.push(ep)
      }
      await this.shape(this.routerNs, site.uplinkRouterSide)
      await this.shape(ns, site.uplink)
      this.sites.push(site)
    }
  }

  /** Egress shaping on one end of an uplink: tbf (or htb) for the rate, netem below it for delay. */
  private async shape (ns: string, dev: string): Promise<void> {
    const { uplinkRate: rate, uplinkDelayMs: delay } = this.opts
    const tc = async (...args: string[]): Promise<RunResult> => await run(['ip', 'netns', 'exec', ns, 'tc', ...args])
    const notes: string[] = []
    let rateKind: Shaping['rate'] = 'none'
    let parent: string | null = null
    if (rate > 0) {
      const bytesPerSec = rate / 8
      const burst = Math.max(32 * 1024, Math.ceil(bytesPerSec / 100)) // ≥ 10 ms of traffic
      const limit = Math.ceil(bytesPerSec * 0.1) + burst // ~100 ms of queue
      let r = await tc('qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'tbf', 'rate', `${rate}bit`, 'burst', `${burst}`, 'limit', `${limit}`)
      if (r.code === 0) { rateKind = 'tbf'; parent = '1:1' } else {
        notes.push(`tbf unavailable (${r.stderr.trim()})`)
        r = await tc('qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1')
        if (r.code === 0) r = await tc('class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', `${rate}bit`, 'ceil', `${rate}bit`)
        if (r.code === 0) { rateKind = 'htb'; parent = '1:1' } else {
          notes.push(`htb unavailable (${r.stderr.trim()}): uplink rate NOT limited`)
          await tc('qdisc', 'del', 'dev', dev, 'root')
        }
      }
    }
    let delayKind: Shaping['delay'] = 'none'
    if (delay > 0) {
      const where = parent === null ? ['root', 'handle', '10:'] : ['parent', parent, 'handle', '10:']
      const r = await tc('qdisc', 'add', 'dev', dev, ...where, 'netem', 'delay', `${delay}ms`, 'limit', '10000')
      if (r.code === 0) delayKind = 'netem'
      else notes.push(`netem unavailable (${r.stderr.trim() || 'kernel without sch_netem'}): uplink delay of ${delay} ms NOT applied`)
    }
    this.shaping = { rate: rateKind, delay: delayKind, note: notes.length > 0 ? notes.join('; ') : null }
  }

  /** All endpoints, site by site. */
  get endpoints (): Endpoint[] { return this.sites.flatMap(s => s.endpoints) }

  site (index: number): Site {
    const s = this.sites[index - 1]
    if (s === undefined) throw new Error(`no site ${index}`)
    return s
  }

  /** Bytes over site `index`'s WAN link so far, from the router-side interface counters. */
  async wanBytes (index: number): Promise<WanBytes> {
    const s = this.site(index)
    const out = await must(['ip', '-n', this.routerNs, '-s', '-j', 'link', 'show', 'dev', s.uplinkRouterSide])
    const l = (JSON.parse(out) as Array<{ stats64: { rx: { bytes: number }, tx: { bytes: number } } }>)[0]!
    return { down: l.stats64.tx.bytes, up: l.stats64.rx.bytes }
  }

  /**
   * Whether `ip` answers from inside `ns`: `ping` when installed, else a TCP connect to a closed
   * port (port 9), where a RST (ECONNREFUSED) proves the round trip and a timeout or
   * EHOSTUNREACH/ENETUNREACH means unreachable.
   */
  async ping (ns: string, ip: string, count = 1): Promise<boolean> {
    if (havePing) {
      const r = await run(['ip', 'netns', 'exec', ns, 'ping', '-c', String(count), '-W', '2', '-q', ip], { timeoutMs: 10_000 })
      return r.code === 0
    }
    const js = `const s = require('node:net').connect(9, ${JSON.stringify(ip)}); s.setTimeout(2000, () => process.exit(1));` +
      "s.on('connect', () => process.exit(0)); s.on('error', e => process.exit(e.code === 'ECONNREFUSED' ? 0 : 1))"
    const r = await run(['ip', 'netns', 'exec', ns, process.execPath, '-e', js], { timeoutMs: 10_000 })
    return r.code === 0
  }

  // --- daemons ---------------------------------------------------------------------------

  /** Runs the shoal CLI (`node bin/shoal …`) to completion, inside `ns` or on the host when null. */
  async shoal (ns: string | null, args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
    const argv = [process.execPath, SHOAL_BIN, ...args]
    return ns === null ? await run(argv, opts) : await runIn(ns, argv, opts)
  }

  /** `shoal keys init` into <workDir>/keys; returns the folder. */
  async initKeys (): Promise<string> {
    const dir = join(this.workDir, 'keys')
    const r = await this.shoal(null, ['keys', 'init', '--dir', dir, '--expires', '30d'])
    if (r.code !== 0) throw new Error(`shoal keys init failed: ${r.stderr}`)
    return dir
  }

  /** Starts the seed in the datacenter namespace, listening on SEED_IP:7700. */
  async startSeed (keysDir: string, config: Record<string, unknown> = {}): Promise<ShoalDaemon> {
    return await this.startDaemon('seed', this.dcNs, SEED_IP, {
      role: 'seed', enroll: join(keysDir, 'seed-enroll.json'), ...config
    })
  }

  /** Starts an endpoint daemon in endpoint `index` of site `site`, with site label `site<site>`. */
  async startEndpoint (site: number, index: number, keysDir: string, seeds: string[], config: Record<string, unknown> = {}): Promise<ShoalDaemon> {
    const ep = this.site(site).endpoints[index - 1]
    if (ep === undefined) throw new Error(`no endpoint ${index} in site ${site}`)
    return await this.startDaemon(`s${site}e${index}`, ep.ns, ep.ip, {
      role: 'endpoint', enroll: join(keysDir, 'enroll.json'), seeds, site: `site${site}`,
      pollInterval: 500, power: 'ac', link: 'wired', ...config
    })
  }

  /**
   * Writes <workDir>/<name>/config.json and starts `node bin/shoal daemon --config …` in `ns`.
   * libp2p listens on `ip`:7700; the API on 127.0.0.1:7701 inside the namespace (polled with
   * `ip netns exec <ns> curl`). Resolves once /status answers.
   */
  async startDaemon (name: string, ns: string, ip: string, config: Record<string, unknown>): Promise<ShoalDaemon> {
    const dir = join(this.workDir, name)
    mkdirSync(dir, { recursive: true })
    const cfg = {
      stateDir: join(dir, 'state'), listen: [`/ip4/${ip}/tcp/7700`], api: '127.0.0.1:7701', logLevel: 'info', ...config
    }
    const configPath = join(dir, 'config.json')
    writeFileSync(configPath, JSON.stringify(cfg, null, 2))
    // run as examples/shoal.service runs it (node flags, environment: the caller's wins), so the
    // swarm bench's RSS and CPU are the deployed ones
    const env = Object.fromEntries(Object.entries(DAEMON_ENV).filter(([k]) => process.env[k] === undefined))
    // SHOAL_BENCH_NODE_FLAGS: extra node flags for experiments (as bench/daemon.ts takes them), e.g.
    // "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile every daemon of a swarm bench run
    const extra = (process.env.SHOAL_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(f => f !== '')
    const proc = spawnIn(ns, [process.execPath, ...DAEMON_NODE_FLAGS, ...extra, SHOAL_BIN, 'daemon', '--config', configPath], { logFile: join(dir, 'daemon.log'), env })
    const d = new ShoalDaemon(name, ns, ip, configPath, proc, String(cfg.api))
    this.daemons.push(d)
    await d.waitReady()
    return d
  }

  /** Every daemon started on this bed. */
  get allDaemons (): ShoalDaemon[] { return [...this.daemons] }

  /** Log tails of every daemon, for a failure message. */
  logTails (lines = 15): string {
    return this.daemons.map(d => `--- ${d.name} (${d.ns}) ${d.proc.logFile}\n${d.proc.tail(lines)}`).join('\n')
  }

  // --- teardown --------------------------------------------------------------------------

  /** Stops every process, removes the namespaces in reverse order and the work folder. Idempotent. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    await Promise.all(this.daemons.map(async d => { await d.stop() }))
    await killAll()
    this.destroySync()
  }

  /** The synchronous part of destroy(), also used from signal and exit handlers. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const d of this.daemons) d.proc.kill('SIGKILL')
    killAllSync()
    for (const ns of [...this.namespaces].reverse()) removeNetnsSync(ns)
    // Anything that escaped into the host namespace (it should not) goes too.
    for (const l of listHostLinks()) if (l.startsWith(this.prefix)) syncQuiet(['ip', 'link', 'del', l])
    if (!this.opts.keepWorkDir) rmSync(this.workDir, { recursive: true, force: true })
    liveBeds.delete(this)
    livePrefixes.delete(this.prefix)
  }
}

// ---------------------------------------------------------------------------------------------
// A running daemon

export interface PackageStatus { name: string, installed: string | null, state: string }
export interface DaemonStatus {
  peerId: string
  listen: string[]
  packages: PackageStatus[]
  bytes: { seed: number, lan: number }
  [k: string]: unknown
}


export class ShoalDaemon {
  constructor (readonly name: string, readonly ns: string, readonly ip: string, readonly configPath: string, readonly proc: ProcHandle, readonly api: string) {}

  /** GET <path> on the daemon's API, from inside its namespace. */
  async get (path: string): Promise<string> {
    const url = `http://${this.api}${path}`
    const argv = haveCurl
      ? ['curl', '-sS', '--fail', '--max-time', '5', url]
      : [process.execPath, '-e', `fetch(${JSON.stringify(url)}).then(async r => { if (!r.ok) process.exit(22); process.stdout.write(await r.text()) }, e => { console.error(String(e)); process.exit(7) })`]
    const r = await runIn(this.ns, argv, { timeoutMs: 10_000 })
    if (r.code !== 0) throw new Error(`GET ${url} in ${this.ns}: exit ${r.code} ${r.stderr.trim()}`)
    return r.stdout
  }

  async status (): Promise<DaemonStatus> {
    return JSON.parse(await this.get('/status')) as DaemonStatus
  }

  /** Its libp2p address with /p2p/<peerId> on its namespace's IP (read from /status). */
  async multiaddr (): Promise<string> {
    const st = await this.status()
    const a = st.listen.find(m => m.includes(`/ip4/${this.ip}/`))
    return a !== undefined && a.includes('/p2p/') ? a : `/ip4/${this.ip}/tcp/7700/p2p/${st.peerId}`
  }

  /** 90 s: a Node daemon booting in a namespace took over 30 s on 2 cores at load 15 (other jobs). */
  async waitReady (timeoutMs = 90_000): Promise<void> {
    await waitFor(async () => {
      if (this.proc.exitCode !== null) throw new Error(`daemon ${this.name} exited with ${this.proc.exitCode}\n${this.proc.tail()}`)
      try { await this.status(); return true } catch { return false }
    }, { timeoutMs, what: `daemon ${this.name} API`, tail: () => this.proc.tail() })
  }

  async stop (graceMs = 5000): Promise<void> {
    if (this.proc.exitCode !== null) return
    this.proc.kill('SIGTERM')
    try { await this.proc.wait(graceMs) } catch { this.proc.kill('SIGKILL'); await this.proc.wait(5000).catch(() => undefined) }
  }
}

/** Polls `cond` until it returns true; throws with `what` (and a log tail) on timeout. */
export async function waitFor (cond: () => Promise<boolean> | boolean, opts: { timeoutMs?: number, intervalMs?: number, what?: string, tail?: () => string } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  while (true) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${opts.tail !== undefined ? `\n${opts.tail()}` : ''}`)
    await new Promise(resolve => setTimeout(resolve, opts.intervalMs ?? 250))
  }
}

/** Writes a tree of random (incompressible) files totalling about `bytes`; returns the folder. */
export function randomTree (dir: string, bytes: number, files = 4): string {
  mkdirSync(dir, { recursive: true })
  const per = Math.ceil(bytes / files)
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `file${i}.bin`), randomBytes(per))
  writeFileSync(join(dir, 'README.txt'), 'shoal e2e test release\n')
  return dir
}
