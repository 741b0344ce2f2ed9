// The OS half of an endpoint's software inventory: what the system package manager says is
// installed. dpkg on Debian/Ubuntu, rpm where present, otherwise an empty list with the reason.
// The query runs with a timeout and a cap on its output, so a broken package database costs a
// report its inventory, never the daemon its memory or its report.
import { spawn } from 'node:child_process'
import { MAX_INVENTORY_PACKAGES, type Inventory, type OsPackage } from './report.js'

/** A package manager query taking longer than this is killed; the inventory says why it is empty. */
export const INVENTORY_TIMEOUT_MS = 20_000
/** Output read from the package manager at most (about 40 bytes per package). */
export const INVENTORY_MAX_OUTPUT = 4 * 1024 * 1024

interface Collector { source: 'dpkg' | 'rpm', command: string, args: string[] }

const COLLECTORS: Collector[] = [
  { source: 'dpkg', command: 'dpkg-query', args: ['-W', '-f', '${db:Status-Abbrev}\t${Package}\t${Version}\n'] },
  { source: 'rpm', command: 'rpm', args: ['-qa', '--qf', 'ii \t%{NAME}\t%{VERSION}-%{RELEASE}\n'] }
]

interface RunResult { code: number | null, out: string, truncated: boolean, error?: string }

async function run (command: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return await new Promise(resolve => {
    let out = ''
    let bytes = 0
    let truncated = false
    let timedOut = false
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' } })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (truncated) return
      bytes += Buffer.byteLength(d)
      if (bytes > INVENTORY_MAX_OUTPUT) { truncated = true; child.kill('SIGKILL'); return }
      out += d
    })
    child.on('error', err => { clearTimeout(timer); resolve({ code: null, out: '', truncated: false, error: err.message }) })
    child.on('close', code => {
      clearTimeout(timer)
      resolve({ code, out, truncated, ...(timedOut ? { error: `timed out after ${timeoutMs} ms` } : {}) })
    })
  })
}

/** Lines `<status>\t<name>\t<version>`: only packages whose status says installed ("ii", "hi"). */
export function parsePackageLines (out: string, max = MAX_INVENTORY_PACKAGES): { packages: OsPackage[], truncated: boolean } {
  const packages: OsPackage[] = []
  let truncated = false
  for (const line of out.split('\n')) {
    const [status, name, version] = line.split('\t')
    if (status === undefined || name === undefined || version === undefined || !/^[ih]i/.test(status)) continue
    const n = name.trim()
    const v = version.trim()
    if (!/^[\x21-\x7e]{1,256}$/.test(n) || !/^[\x21-\x7e]{1,256}$/.test(v)) continue
    if (packages.length >= max) { truncated = true; break }
    packages.push({ name: n, version: v })
  }
  packages.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  return { packages, truncated }
}

/** Asks the first package manager present; an empty inventory with the reasons when none answers. */
export async function collectInventory (opts: { timeoutMs?: number, collectors?: Collector[], now?: Date } = {}): Promise<Inventory> {
  const collectedAt = (opts.now ?? new Date()).toISOString()
  const reasons: string[] = []
  for (const c of opts.collectors ?? COLLECTORS) {
    const r = await run(c.command, c.args, opts.timeoutMs ?? INVENTORY_TIMEOUT_MS)
    if (r.error !== undefined) { reasons.push(`${c.command}: ${r.error}`); continue }
    if (r.code !== 0 && !r.truncated) { reasons.push(`${c.command} exited with code ${String(r.code)}`); continue }
    const parsed = parsePackageLines(r.out)
    return { source: c.source, truncated: r.truncated || parsed.truncated, collectedAt, packages: parsed.packages }
  }
  return { source: 'none', reason: reasons.length > 0 ? `no package manager answered (${reasons.join('; ')})` : 'no package manager configured', truncated: false, collectedAt, packages: [] }
}
