// Real `shoal daemon` processes for the process-level tests: free ports, JSON configs in a temp
// dir, stdio to a log file per daemon, status over the HTTP API, and kill -9.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, existsSync, writeSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { shoal, SHOAL_BIN, REPO_ROOT } from '../helpers/cli.js'

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

export interface PkgStatus { name: string, installed: string | null, target: string | null, state: string, progress?: { blobs: number, blobsTotal: number, bytes: number, bytesTotal: number }, error?: { code: string, message: string } }
export interface Status {
  peerId: string
  packages: PkgStatus[]
  bytes: { seed: number, lan: number, origin: number, served: number }
  heads?: Array<{ channel: string, seq: number, stale: boolean, error?: string }>
  disk?: { full: boolean, path?: string, code?: string, message?: string, since?: string }
}

export class Proc {
  child: ChildProcess | null = null
  exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }> | null = null
  constructor (readonly name: string, readonly configPath: string, readonly logPath: string, readonly api: string) {}

  static async create (dir: string, name: string, config: Record<string, unknown>): Promise<Proc> {
    const configPath = join(dir, `${name}.json`)
    await writeFile(configPath, JSON.stringify(config, null, 2))
    return new Proc(name, configPath, join(dir, `${name}.log`), String(config.api))
  }

  /**
   * `env` is added to the daemon's environment; with `onLine` its output is piped (and still
   * appended to the log file) and every line is handed over as it arrives: faults tests act on
   * the daemon's own log lines (a phase starting) without polling the file.
   */
  start (opts: { env?: NodeJS.ProcessEnv, onLine?: (line: string) => void } = {}): void {
    const fd = openSync(this.logPath, 'a')
    const onLine = opts.onLine
    const child = spawn(process.execPath, [SHOAL_BIN, 'daemon', '--config', this.configPath], {
      cwd: REPO_ROOT, stdio: onLine === undefined ? ['ignore', fd, fd] : ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }
    })
    if (onLine !== undefined) {
      for (const s of [child.stdout, child.stderr]) {
        let rest = ''
        s?.on('data', (b: Buffer) => {
          try { writeSync(fd, b) } catch { /* closed at exit */ }
          const lines = (rest + b.toString('utf8')).split('\n')
          rest = lines.pop() ?? ''
          for (const l of lines) onLine(l)
        })
      }
      child.once('close', () => { closeSync(fd) })
    } else {
      closeSync(fd)
    }
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

/** A seed process with its keys and repo, for the faults tests: publish with the real CLI, add endpoints. */
export interface ProcFleet { dir: string, keys: string, repo: string, seed: Proc, seedAddr: string, seedP2p: number, procs: Proc[] }

export async function startProcFleet (dir: string, seedRaw: Record<string, unknown> = {}): Promise<ProcFleet> {
  const keys = join(dir, 'keys')
  const k = await shoal(['keys', 'init', '--dir', keys])
  if (k.code !== 0) throw new Error(`keys init failed: ${k.stderr}`)
  const [p2p, api] = [await freePort(), await freePort()]
  const seed = await Proc.create(dir, 'seed', {
    role: 'seed', stateDir: join(dir, 'seed'), enroll: join(keys, 'seed-enroll.json'),
    listen: [`/ip4/127.0.0.1/tcp/${p2p}`], api: `127.0.0.1:${api}`, logLevel: 'info', ...seedRaw
  })
  const f: ProcFleet = { dir, keys, repo: join(dir, 'repo'), seed, seedAddr: '', seedP2p: p2p, procs: [seed] }
  seed.start()
  f.seedAddr = `/ip4/127.0.0.1/tcp/${p2p}/p2p/${await waitPeerId(seed)}`
  return f
}

/** Waits for a daemon's API and returns its PeerId. */
export async function waitPeerId (p: Proc, ms = 20_000): Promise<string> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const id = (await p.status())?.peerId
    if (id !== undefined) return id
    if (p.child !== null && !p.running) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`${p.name}: no API after ${ms} ms\n${p.tail()}`)
}

export async function endpointProc (f: ProcFleet, name: string, raw: Record<string, unknown> = {}): Promise<Proc> {
  const p = await Proc.create(f.dir, name, {
    role: 'endpoint', stateDir: join(f.dir, name), enroll: join(f.keys, 'enroll.json'), seeds: [f.seedAddr],
    listen: ['/ip4/127.0.0.1/tcp/0'], api: `127.0.0.1:${await freePort()}`, installRoot: join(f.dir, name, 'apps'),
    pollInterval: 500, hookTimeout: 60_000, mdns: false, logLevel: 'info', ...raw
  })
  f.procs.push(p)
  return p
}

/** `shoal publish … --to <seed>`; returns the manifest's path in the repo. */
export async function publishProc (f: ProcFleet, src: string, version: string, extra: string[] = []): Promise<string> {
  const r = await shoal(['publish', src, '--name', 'app', '--version', version, '--keys', f.keys, '--repo', f.repo, '--to', f.seedAddr, '--threads', '1', '--json', ...extra])
  if (r.code !== 0) throw new Error(`publish ${version} failed: ${r.stderr}`)
  return (JSON.parse(r.stdout) as { manifestPath: string }).manifestPath
}

/** The manifest's distinct blobs: cid (hex) → size. */
export async function manifestBlobs (manifestPath: string): Promise<Map<string, number>> {
  const m = JSON.parse(await readFile(manifestPath, 'utf8')) as { signed: { chunks: Array<{ cid: string, size: number }> } }
  return new Map(m.signed.chunks.map(c => [c.cid, c.size]))
}
