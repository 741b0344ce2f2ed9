// The daemon's local HTTP API (docs/daemon.md): GET /status, GET /metrics, POST /pause, POST /resume,
// POST /install-now. It listens on 127.0.0.1 by default; it changes nothing that a signed manifest
// did not already allow, but binding it elsewhere is the operator's explicit choice.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigError } from './config.js'

export interface ApiHandlers {
  status: () => Promise<unknown>
  metrics: () => Promise<string>
  pause: () => Promise<void>
  resume: () => Promise<void>
  installNow?: () => Promise<void>
  /** More routes (the seed's dashboard): returns true when it answered the request. */
  extra?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>
}

export interface ApiServer { address: string, close: () => Promise<void> }

function send (res: ServerResponse, code: number, body: string, type = 'application/json'): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

export function parseHostPort (hp: string): { host: string, port: number } {
  const i = hp.lastIndexOf(':')
  const host = hp.slice(0, i).replace(/^\[(.*)\]$/, '$1')
  const port = Number(hp.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`"${hp}" is not host:port`)
  return { host, port }
}

export async function startApi (hostPort: string, h: ApiHandlers): Promise<ApiServer> {
  const { host, port } = parseHostPort(hostPort)
  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://local')
    const key = `${req.method ?? 'GET'} ${url.pathname}`
    if (h.extra !== undefined && await h.extra(req, res, url)) return
    switch (key) {
      case 'GET /status': send(res, 200, JSON.stringify(await h.status())); return
      case 'GET /metrics': send(res, 200, await h.metrics(), 'text/plain; version=0.0.4'); return
      case 'POST /pause': await h.pause(); send(res, 200, '{"paused":true}'); return
      case 'POST /resume': await h.resume(); send(res, 200, '{"paused":false}'); return
      case 'POST /install-now':
        if (h.installNow === undefined) { send(res, 404, '{"error":"not available on this role"}'); return }
        await h.installNow(); send(res, 202, '{"ok":true}'); return
      default: send(res, 404, JSON.stringify({ error: `no route ${key}`, routes: ['GET /status', 'GET /metrics', 'POST /pause', 'POST /resume', 'POST /install-now'] }))
    }
  }
  const server: Server = createServer((req, res) => {
    req.resume()
    route(req, res).catch((err: unknown) => { send(res, 500, JSON.stringify({ error: (err as Error).message })) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address() as AddressInfo
  return {
    address: `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`,
    close: async () => { await new Promise<void>(resolve => { server.close(() => resolve()); server.closeAllConnections() }) }
  }
}
