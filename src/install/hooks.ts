// Runs a signed install hook: script text, /bin/sh -e, a clean environment, a deadline that kills
// the hook's whole process group, and a bounded tail of its output for the fleet report.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidArgumentError } from '../core/errors.js'
import type { HookOutcome } from './errors.js'

export type HookName = 'preinstall' | 'postinstall'

export const HOOK_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'
export const DEFAULT_KILL_GRACE_MS = 5000
export const DEFAULT_LOG_TAIL_BYTES = 4096
const RESERVED_ENV = new Set(['PATH', 'LANG', 'SHOAL_PACKAGE', 'SHOAL_VERSION', 'SHOAL_INSTALL_DIR', 'SHOAL_PREVIOUS_VERSION', 'SHOAL_HOOK'])
const ENV_NAME = /^[A-Z_][A-Z0-9_]{0,127}$/

export interface HookContext {
  hook: HookName
  package: string
  version: string
  /** The version's folder (the hook's working directory too). */
  installDir: string
  /** The version active before this install, or null (the variable is then empty). */
  previousVersion: string | null
}

/**
 * The whole environment a hook sees: PATH, LANG=C.UTF-8, the five SHOAL_* variables, and `extra`
 * (upper-case names that may not replace any of those). Nothing is inherited from the daemon, so
 * no credential in its environment reaches a hook.
 */
export function hookEnv (ctx: HookContext, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: HOOK_PATH,
    LANG: 'C.UTF-8',
    SHOAL_PACKAGE: ctx.package,
    SHOAL_VERSION: ctx.version,
    SHOAL_INSTALL_DIR: ctx.installDir,
    SHOAL_PREVIOUS_VERSION: ctx.previousVersion ?? '',
    SHOAL_HOOK: ctx.hook
  }
  for (const [k, v] of Object.entries(extra)) {
    if (!ENV_NAME.test(k)) throw new InvalidArgumentError(`hook environment variable name ${JSON.stringify(k)} must be upper-case letters, digits and _`)
    if (RESERVED_ENV.has(k)) throw new InvalidArgumentError(`hook environment variable ${k} is set by shoal and cannot be overridden`)
    if (typeof v !== 'string' || v.includes('\0')) throw new InvalidArgumentError(`hook environment variable ${k} must be a string without NUL`)
    env[k] = v
  }
  return env
}

export interface RunHookOptions<H extends string = HookName> {
  /** Names the script file and the messages; the endpoint's notify command runs as 'notify'. */
  hook: H
  cwd: string
  /** The complete environment (see `hookEnv`); nothing else is passed. */
  env: Record<string, string>
  timeoutMs: number
  /** Between SIGTERM and SIGKILL to the process group. Default 5 s. */
  killGraceMs?: number
  /** How much of the combined output to keep (the tail). Default 4 KiB. */
  logTailBytes?: number
  /** Where the private folder holding the script file is made. Default: the OS temp folder. */
  tmpDir?: string
  /** Written to the script's stdin (then closed); without it stdin is /dev/null. */
  stdin?: string
}

export interface HookResult<H extends string = HookName> extends Omit<HookOutcome, 'hook'> {
  hook: H
  ok: boolean
  durationMs: number
  /** Total bytes the hook wrote, of which `logTail` is the end. */
  outputBytes: number
}

/**
 * Runs `script` as `/bin/sh -e <file>` in a new process group, stdin from /dev/null (or `stdin`). The script is
 * written to a file (0600, in a fresh 0700 folder) rather than piped on stdin, so a command in the
 * script that reads stdin cannot swallow the rest of the script. At the deadline the group gets
 * SIGTERM, then SIGKILL after `killGraceMs`; when the shell exits, whatever it left running in its
 * group is stopped the same way, so a hook never outlives its run (a process that calls setsid()
 * escapes this; services belong to the service manager). Never throws for a failing hook: the
 * result says how it ended.
 */
export async function runHook<H extends string = HookName> (script: string, o: RunHookOptions<H>): Promise<HookResult<H>> {
  if (!(o.timeoutMs > 0)) throw new InvalidArgumentError(`hook timeout must be a positive number of milliseconds, got ${o.timeoutMs}`)
  const grace = o.killGraceMs ?? DEFAULT_KILL_GRACE_MS
  const tail = new TailBuffer(o.logTailBytes ?? DEFAULT_LOG_TAIL_BYTES)
  const started = Date.now()
  const dir = await mkdtemp(join(o.tmpDir ?? tmpdir(), 'shoal-hook-'))
  try {
    const file = join(dir, `${o.hook}.sh`)
    await writeFile(file, script, { mode: 0o600, flag: 'wx' })
    const child = spawn('/bin/sh', ['-e', file], { cwd: o.cwd, env: o.env, detached: true, stdio: [o.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] }) as ChildProcessByStdio<Writable | null, Readable, Readable>
    if (child.stdin !== null) {
      child.stdin.on('error', () => {}) // a script that does not read its input closes the pipe early: not an error
      child.stdin.end(o.stdin)
    }
    const closed = new Promise<void>(resolve => child.once('close', () => resolve()))
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null, error?: Error }>(resolve => {
      child.once('exit', (code, signal) => resolve({ code, signal }))
      child.once('error', (error) => resolve({ code: null, signal: null, error }))
    })
    child.stdout.on('data', (b: Buffer) => tail.push(b))
    child.stderr.on('data', (b: Buffer) => tail.push(b))
    const pgid = child.pid
    let timedOut = false
    let stopping: Promise<void> | null = null
    const stop = (): Promise<void> => {
      stopping ??= pgid === undefined ? Promise.resolve() : stopGroup(pgid, grace)
      return stopping
    }
    const timer = setTimeout(() => { timedOut = true; void stop() }, o.timeoutMs)
    const end = await exited
    clearTimeout(timer)
    await stop()
    // Output still in the pipes arrives before 'close'; do not wait on a pipe held by an escapee.
    await Promise.race([closed, sleep(500)])
    child.stdout.destroy()
    child.stderr.destroy()
    if (end.error !== undefined) tail.push(Buffer.from(`\nshoal: could not start the ${o.hook} hook: ${end.error.message}\n`))
    const ok = end.error === undefined && !timedOut && end.code === 0
    return { hook: o.hook, ok, exitCode: end.code, signal: end.signal, timedOut, logTail: tail.text(), durationMs: Date.now() - started, outputBytes: tail.total }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function groupAlive (pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function signalGroup (pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig)
  } catch {
    // No such group (the leader could not make one): at least reach the shell itself.
    try { process.kill(pgid, sig) } catch { /* already gone */ }
  }
}

async function waitGone (pgid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (await groupRunning(pgid)) {
    if (Date.now() >= until) return false
    await sleep(25)
  }
  return true
}

/**
 * True while a member of the group still runs. Killed members stay zombies until their new parent
 * (init) reaps them, which some inits do only every second or so; on Linux /proc tells zombies
 * apart, so we do not wait on a lazy reaper.
 */
async function groupRunning (pgid: number): Promise<boolean> {
  if (!groupAlive(pgid)) return false
  if (process.platform !== 'linux') return true
  let pids: string[]
  try { pids = await readdir('/proc') } catch { return true }
  for (const pid of pids) {
    if (!/^[0-9]+$/.test(pid)) continue
    let stat: string
    try { stat = await readFile(`/proc/${pid}/stat`, 'utf8') } catch { continue }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so cut at the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(f[2]) === pgid && f[0] !== 'Z') return true
  }
  return false
}

/** SIGTERM the group, SIGKILL it after `grace`; returns once it is gone (or after a short cap). */
async function stopGroup (pgid: number, grace: number): Promise<void> {
  if (!groupAlive(pgid)) return
  signalGroup(pgid, 'SIGTERM')
  if (await waitGone(pgid, grace)) return
  signalGroup(pgid, 'SIGKILL')
  await waitGone(pgid, 2000)
}

/** Keeps the last `cap` bytes of a stream in at most ~2×cap memory. */
class TailBuffer {
  private buf = Buffer.alloc(0)
  total = 0
  constructor (private readonly cap: number) {}

  push (b: Buffer): void {
    this.total += b.length
    if (b.length >= this.cap) {
      this.buf = Buffer.from(b.subarray(b.length - this.cap))
      return
    }
    const joined = Buffer.concat([this.buf, b])
    this.buf = joined.length > this.cap ? joined.subarray(joined.length - this.cap) : joined
  }

  text (): string {
    let b = this.buf
    // A cut tail may start inside a UTF-8 sequence: drop the orphaned continuation bytes.
    if (this.total > this.cap) { let i = 0; while (i < 3 && i < b.length && ((b[i] as number) & 0xc0) === 0x80) i++; b = b.subarray(i) }
    return b.toString('utf8')
  }
}
