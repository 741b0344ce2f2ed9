// A real nginx (Debian's package) serving folders on 127.0.0.1, as a static-HTTP origin would: its
// own nginx.conf in a temp folder (`daemon off`, pid, logs and temp paths there), run as a child
// process and stopped afterwards. The access log records each request's connection serial and its
// request number on that connection, so tests can see keep-alive at work.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The nginx binary, or null (tests skip with a printed reason). */
export function nginxBinary (): string | null {
  for (const p of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']) {
    if (spawnSync(p, ['-v']).status === 0) return p
  }
  const r = spawnSync('sh', ['-c', 'command -v nginx'])
  const found = r.stdout?.toString().trim()
  return r.status === 0 && found !== undefined && found !== '' ? found : null
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}

export interface AccessLine { connection: number, request: number, status: number, path: string }

export class Nginx {
  private constructor (
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly port: number,
    private readonly exited: Promise<void>
  ) {}

  /** Base URL of the location serving `name` (a key of `roots`). */
  url (name: string): string {
    return `http://127.0.0.1:${this.port}/${name}/`
  }

  /** Serves each folder of `roots` under `/<name>/`. */
  static async start (roots: Record<string, string>, bin = nginxBinary() as string): Promise<Nginx> {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-nginx-'))
    for (const t of ['client', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, `${t}-temp`))
    const port = await freePort()
    const locations = Object.entries(roots).map(([name, root]) => `    location /${name}/ { alias ${root}/; }`).join('\n')
    // As root, workers would run as "nobody" and could not read mkdtemp's 0700 folders.
    const user = process.getuid?.() === 0 ? 'user root;\n' : ''
    await writeFile(join(dir, 'nginx.conf'), `daemon off;
${user}master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  log_format conn '$connection $connection_requests $status $uri';
  access_log ${dir}/access.log conn;
  client_body_temp_path ${dir}/client-temp;
  proxy_temp_path ${dir}/proxy-temp;
  fastcgi_temp_path ${dir}/fastcgi-temp;
  uwsgi_temp_path ${dir}/uwsgi-temp;
  scgi_temp_path ${dir}/scgi-temp;
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
${locations}
  }
}
`)
    const child = spawn(bin, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
    const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
    const n = new Nginx(child, dir, port, exited)
    const until = Date.now() + 10_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx exited at start (${child.exitCode}): ${stderr}${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`)
      const up = await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false)
      if (up) return n
      if (Date.now() > until) { await n.stop(); throw new Error(`nginx did not answer on port ${port}: ${stderr}`) }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  async accessLog (): Promise<AccessLine[]> {
    const text = await readFile(join(this.dir, 'access.log'), 'utf8').catch(() => '')
    return text.split('\n').filter(l => l !== '').map(l => {
      const [c, r, s, p] = l.split(' ')
      return { connection: Number(c), request: Number(r), status: Number(s), path: p ?? '' }
    })
  }

  /** SIGQUIT: graceful stop (workers finish their requests), then the temp folder goes. */
  async stop (): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGQUIT')
      const t = setTimeout(() => { this.child.kill('SIGKILL') }, 5_000)
      await this.exited
      clearTimeout(t)
    }
    await rm(this.dir, { recursive: true, force: true })
  }
}
