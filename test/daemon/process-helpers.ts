// Real `shoal daemon` processes for the process-level tests: free ports, JSON configs in a temp
// dir, stdio to a log file per daemon, status over the HTTP API, and kill -9.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { SHOAL_BIN, REPO_ROOT } from '../helpers/cli.js'

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => { resolve(port) })
    })
  })
}

export interface PkgStatus { name: string, installed: string | null, target: string | null, state: string, progress?: { blobs: number, blobsTotal: number, bytes: number, bytesTotal: number } }
export interface Status { peerId: string, packages: PkgStatus[], bytes: { seed: number } }

export class Proc {
  child: ChildProcess | null = null
  exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }> | null = null
  constructor (readonly name: string, readonly configPath: string, readonly logPath: string, readonly api: string) {}

  static async create (dir: string, name: string, config: Record<string, unknown>): Promise<Proc> {
    const configPath = join(dir, `${name}.json`)
    await writeFile(configPath, JSON.stringify(config, null, 2))
    return new Proc(name, configPath, join(dir, `${name}.log`), String(config.api))
  }

  start (): void {
    const fd = openSync(this.logPath, 'a')
    const child = spawn(process.execPath, [SHOAL_BIN, 'daemon', '--config', this.configPath], { cwd: REPO_ROOT, stdio: ['ignore', fd, fd] })
    closeSync(fd)
    this.child = child
    this.exit = new Promise(resolve => { child.once('exit', (code, signal) => { resolve({ code, signal }) }) })
  }

  get running (): boolean { return this.child !== null && this.child.exitCode === null && this.child.signalCode === null }

  async kill9 (): Promise<void> {
    if (this.child === null) return
    if (this.running) this.child.kill('SIGKILL')
    await this.exit
    this.child = null
  }

  async status (): Promise<Status | null> {
    try {
      const r = await fetch(`http://${this.api}/status`, { signal: AbortSignal.timeout(2000) })
      if (!r.ok) return null
      return await r.json() as Status
    } catch { return null }
  }

  async pkg (name = 'app'): Promise<PkgStatus | undefined> {
    return (await this.status())?.packages.find(p => p.name === name)
  }

  tail (n = 40): string {
    if (!existsSync(this.logPath)) return `(${this.name}: no log)`
    const lines = readFileSync(this.logPath, 'utf8').trimEnd().split('\n')
    return `--- ${this.name} log (last ${n} lines) ---\n${lines.slice(-n).join('\n')}`
  }
}

/** Kills every process whose command line contains `marker` (the hook scripts). */
export function killMarked (marker: string): void {
  spawnSync('pkill', ['-9', '-f', marker])
}

export function pgrep (marker: string): number[] {
  const r = spawnSync('pgrep', ['-f', marker], { encoding: 'utf8' })
  return r.stdout.split('\n').filter(Boolean).map(Number)
}
