// The endpoint's notify command (config `notify`, docs/rollout.md §5): told about an install before
// it runs, it may defer it — a person finishing their work — but never past the ring's deadline.
// It runs like an install hook (runHook: /bin/sh -e, clean environment, process group killed at
// the timeout), with the description as JSON on stdin.
import { HOOK_PATH, runHook, type HookResult } from '../install/hooks.js'
import { parseDurationSeconds } from './policy.js'

/** Exit code that defers the install (EX_TEMPFAIL of sysexits.h). */
export const DEFER_EXIT_CODE = 75
/** A deferral without a `defer <duration>` line lasts this long. */
export const DEFAULT_DEFER_MS = 3600_000
/** The longest deferral one answer can ask for. */
export const MAX_DEFER_MS = 7 * 86400_000

/** What the command reads on stdin (one JSON object). */
export interface NotifyInfo {
  event: 'install'
  package: string
  version: string
  /** The version installed now, or null. */
  previous: string | null
  channel: string
  ring: string
  /** The release notes of the manifest's payload, or null. */
  notes: string | null
  /** From this instant on the install runs whatever the answer (null: no deadline). */
  deadline: string | null
  /** True when the deadline has passed: the install runs now, a deferral is not honoured. */
  due: boolean
}

export interface NotifyDecision {
  install: boolean
  /** When not installing: ask again at this instant (never after the deadline). */
  deferUntil?: string
  /** One line for logs and status. */
  reason: string
  result: HookResult<'notify'>
}

const DEFER_LINE = /^defer\s+(\S+)\s*$/

/**
 * Exit 0: install. Exit 75: defer, for the duration on the last output line `defer <duration>`
 * (e.g. `defer 2h`; default one hour, at most a week), capped at the deadline; not honoured once
 * `due`. Anything else (another exit code, a timeout, a command that cannot start): the install
 * runs — a broken notifier must not freeze a fleet.
 */
export async function runNotify (command: string, info: NotifyInfo, o: { timeoutMs: number, now: Date, tmpDir?: string }): Promise<NotifyDecision> {
  const result = await runHook(command, {
    hook: 'notify',
    cwd: '/',
    env: { PATH: HOOK_PATH, LANG: 'C.UTF-8', SHOAL_PACKAGE: info.package, SHOAL_VERSION: info.version, SHOAL_RING: info.ring, SHOAL_DEADLINE: info.deadline ?? '', SHOAL_HOOK: 'notify' },
    timeoutMs: o.timeoutMs,
    stdin: JSON.stringify(info) + '\n',
    ...(o.tmpDir !== undefined ? { tmpDir: o.tmpDir } : {})
  })
  if (result.ok) return { install: true, reason: 'the notify command agreed', result }
  if (result.exitCode !== DEFER_EXIT_CODE || result.timedOut) {
    return { install: true, reason: `the notify command failed (${result.timedOut ? 'timed out' : `exit ${String(result.exitCode ?? result.signal)}`}); installing anyway`, result }
  }
  if (info.due) return { install: true, reason: `deferral not honoured: the deadline ${info.deadline ?? ''} has passed`, result }
  let ms = DEFAULT_DEFER_MS
  const line = result.logTail.split('\n').map(l => l.trim()).filter(l => DEFER_LINE.test(l)).at(-1)
  if (line !== undefined) {
    try {
      ms = Math.min(parseDurationSeconds((DEFER_LINE.exec(line) as RegExpExecArray)[1] as string, 'notify "defer" line') * 1000, MAX_DEFER_MS)
    } catch { /* a malformed duration: the default */ }
  }
  let until = o.now.getTime() + Math.max(ms, 1000)
  if (info.deadline !== null) until = Math.min(until, Date.parse(info.deadline))
  const deferUntil = new Date(until).toISOString()
  return { install: false, deferUntil, reason: `deferred by the notify command until ${deferUntil}`, result }
}
