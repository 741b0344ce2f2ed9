// The webhook sender against a real HTTP receiver on 127.0.0.1: signature, order, bounded retries
// with backoff, no retry on a 4xx refusal; and the secret file rules.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadWebhookSecret, webhookSignature, Webhooks, type WebhookEvent } from '../../src/rollout/webhooks.js'

const secret = Buffer.from('0123456789abcdef0123456789abcdef')

interface Hit { headers: IncomingHttpHeaders, body: string }

async function receiver (statuses: number[]): Promise<{ server: Server, url: string, hits: Hit[] }> {
  const hits: Hit[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c })
    req.on('end', () => {
      hits.push({ headers: req.headers, body })
      res.statusCode = statuses[hits.length - 1] ?? 200
      res.end()
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`, hits }
}

describe('Webhooks', () => {
  const servers: Server[] = []
  afterEach(() => { for (const s of servers.splice(0)) s.close() })

  it('POSTs signed JSON in order, retries 5xx and connection failures, gives up after the attempts', async () => {
    const r = await receiver([503, 200, 200, 500, 500, 500])
    servers.push(r.server)
    const failed: Array<[string, WebhookEvent]> = []
    const hooks = new Webhooks({ urls: [r.url], secret, attempts: 3, backoffMs: 10, onDeliveryFailed: (url, event) => failed.push([url, event]) })
    const a = hooks.emit('published', { package: 'app', version: '1.0.0' })
    const b = hooks.emit('halted', { package: 'app', version: '1.0.0', seq: 2 })
    const c = hooks.emit('rolled-back', { package: 'app', version: '1.0.0', to: '0.9.0' })
    await hooks.flush()
    expect(r.hits.map(h => JSON.parse(h.body).id)).toEqual([a.id, a.id, b.id, c.id, c.id, c.id])
    for (const h of r.hits) {
      expect(h.headers['x-shoal-signature']).toBe(webhookSignature(secret, h.body))
      expect(h.headers['x-shoal-signature']).toMatch(/^sha256=[0-9a-f]{64}$/)
    }
    expect(JSON.parse(r.hits[2]!.body)).toEqual({ event: 'halted', id: b.id, time: b.time, data: { package: 'app', version: '1.0.0', seq: 2 } })
    expect(failed).toEqual([[r.url, 'rolled-back']])

    // Nobody listening: every attempt fails, then the failure is reported.
    const dead = new Webhooks({ urls: ['http://127.0.0.1:9/none'], secret, attempts: 2, backoffMs: 10, onDeliveryFailed: (url, event) => failed.push([url, event]) })
    dead.emit('published', {})
    await dead.flush()
    expect(failed.at(-1)).toEqual(['http://127.0.0.1:9/none', 'published'])
  })

  it('does not retry a 4xx refusal (other than 408/429)', async () => {
    const r = await receiver([400, 429, 200])
    servers.push(r.server)
    const hooks = new Webhooks({ urls: [r.url], secret, attempts: 5, backoffMs: 10 })
    hooks.emit('published', { n: 1 })
    hooks.emit('published', { n: 2 })
    await hooks.flush()
    expect(r.hits.map(h => JSON.parse(h.body).data.n)).toEqual([1, 2, 2])
  })

  it('reads the secret from a file and refuses a short or missing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-webhook-'))
    try {
      await writeFile(join(dir, 'ok'), ' 0123456789abcdef0123456789abcdef\n')
      expect(Buffer.from(await loadWebhookSecret(join(dir, 'ok'))).toString()).toBe('0123456789abcdef0123456789abcdef')
      await writeFile(join(dir, 'short'), 'abc\n')
      await expect(loadWebhookSecret(join(dir, 'short'))).rejects.toMatchObject({ code: 'ERR_CONFIG', message: expect.stringMatching(/at least 16/) })
      await expect(loadWebhookSecret(join(dir, 'absent'))).rejects.toMatchObject({ code: 'ERR_CONFIG' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
