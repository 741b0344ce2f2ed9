// OriginClient against a real node:http server on 127.0.0.1 that misbehaves on purpose: oversize
// bodies (declared and chunked), wrong statuses, a body cut short, bytes that miss their cid.
import { createHash } from 'node:crypto'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidToHex } from '../../src/core/seal.js'
import { BlobBusyError, BlobVerifyError } from '../../src/net/errors.js'
import { normalizeOriginUrl, OriginClient, OriginError } from '../../src/net/origin-client.js'
import { TokenBucket } from '../../src/swarm/token-bucket.js'
import { BUSY_RETRY_FOR_MS, BUSY_RETRY_MS, singleBlobSource, WanSources, type WanSource } from '../../src/swarm/wan-sources.js'

const blob = Buffer.from('a blob of ciphertext, as far as anyone outside the fleet can tell')
const cid = createHash('sha256').update(blob).digest()
const hex = cidToHex(cid)
const blobPath = `/o/blobs/${hex.slice(0, 2)}/${hex.slice(2)}`

let server: Server
let base: string
const routes = new Map<string, (res: ServerResponse) => void>()

beforeAll(async () => {
  server = createServer((req, res) => {
    const h = routes.get(req.url ?? '')
    if (h === undefined) { res.statusCode = 404; res.end(); return }
    h(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/o`
})
afterAll(async () => { await new Promise(resolve => server.close(resolve)) })

describe('origin URL', () => {
  it.each([
    ['https://cdn.example/shoal', 'https://cdn.example/shoal/'],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080/'],
    ['http://127.0.0.1:8080/a//', 'http://127.0.0.1:8080/a/']
  ])('normalizes %s', (given, want) => { expect(normalizeOriginUrl(given)).toBe(want) })

  it.each(['ftp://x/', 'file:///srv/repo', 'https://u:p@cdn.example/', 'https://cdn.example/?x=1', 'https://cdn.example/#f', 'cdn.example'])('refuses %s', (u) => {
    expect(() => normalizeOriginUrl(u)).toThrow(/origin/)
  })
})

describe('OriginClient', () => {
  it('fetches a blob that matches its cid; a missing head is null, a missing blob an error', async () => {
    routes.set(blobPath, res => { res.end(blob) })
    const c = new OriginClient(base)
    try {
      expect(Buffer.from(await c.blob(cid, blob.length))).toEqual(blob)
      expect(await c.head('stable')).toBeNull()
      await expect(c.blob(Buffer.alloc(32, 1), 100)).rejects.toThrow(OriginError)
    } finally { c.close() }
  })

  it('refuses bytes that miss the cid, and bodies above the signed size (declared or chunked)', async () => {
    const c = new OriginClient(base)
    try {
      routes.set(blobPath, res => { res.end(Buffer.concat([blob.subarray(0, -1), Buffer.from('!')])) })
      await expect(c.blob(cid, blob.length)).rejects.toThrow(BlobVerifyError)
      routes.set(blobPath, res => { res.end(blob) })
      await expect(c.blob(cid, blob.length - 1)).rejects.toThrow(/larger than the/)
      // no Content-Length: the reader stops at the bound
      routes.set(blobPath, res => { res.write(blob); res.write(Buffer.alloc(1 << 20)); res.end() })
      await expect(c.blob(cid, blob.length)).rejects.toThrow(BlobVerifyError)
    } finally { c.close() }
  })

  it('refuses other statuses and a body cut short', async () => {
    const c = new OriginClient(base)
    try {
      routes.set(blobPath, res => { res.statusCode = 500; res.end('oops') })
      await expect(c.blob(cid, blob.length)).rejects.toThrow(/HTTP 500/)
      routes.set('/o/heads/stable.json', res => { res.statusCode = 403; res.end() })
      await expect(c.head('stable')).rejects.toThrow(/HTTP 403/)
      routes.set(blobPath, res => {
        res.setHeader('content-length', String(blob.length))
        res.write(blob.subarray(0, 10))
        setTimeout(() => { res.destroy() }, 20)
      })
      await expect(c.blob(cid, blob.length)).rejects.toThrow(OriginError)
    } finally { c.close() }
  })

  it('percent-encodes the version of a manifest path (build metadata)', async () => {
    routes.set('/o/manifests/app/1.0.0%2Bbuild.5.json', res => { res.end('{}') })
    const c = new OriginClient(base)
    try {
      expect(Buffer.from(await c.manifest('app', '1.0.0+build.5')).toString()).toBe('{}')
    } finally { c.close() }
  })
})

describe('WanSources', () => {
  const source = (kind: 'seed' | 'origin', name: string, behave: () => Uint8Array | Error, calls: string[]): WanSource => singleBlobSource(kind, name, async () => {
    calls.push(name)
    const r = behave()
    if (r instanceof Error) throw r
    return r
  })

  it('fails over in order, puts a failed source at the back for a while, and reports every failure', async () => {
    let t = 0
    const calls: string[] = []
    const failures: string[] = []
    let seedUp = false
    const sources = [
      source('seed', 'seed', () => seedUp ? blob : new OriginError('seed', 'down'), calls),
      source('origin', 'bad', () => new BlobVerifyError('bad', hex, 'tampered'), calls),
      source('origin', 'good', () => blob, calls)
    ]
    const wan = new WanSources(sources, new TokenBucket({ rate: 0 }), (s) => failures.push(s.name), () => t)
    const r1 = await wan.fetch(cid, blob.length, new AbortController().signal)
    expect(r1.source.name).toBe('good')
    expect(calls).toEqual(['seed', 'bad', 'good'])
    expect(failures).toEqual(['seed', 'bad'])
    calls.length = 0
    await wan.fetch(cid, blob.length, new AbortController().signal)
    expect(calls).toEqual(['good']) // both failed ones wait at the back
    seedUp = true
    t += 60_000
    calls.length = 0
    expect((await wan.fetch(cid, blob.length, new AbortController().signal)).source.name).toBe('seed')
    expect(calls).toEqual(['seed'])
  })

  it('throws the last error when every source fails, and stops at once when aborted', async () => {
    const calls: string[] = []
    const wan = new WanSources([source('seed', 'a', () => new OriginError('a', 'down'), calls), source('origin', 'b', () => new OriginError('b', 'gone'), calls)], new TokenBucket({ rate: 0 }))
    await expect(wan.fetch(cid, 10, new AbortController().signal)).rejects.toThrow(/origin b: gone/)
    const ctl = new AbortController()
    ctl.abort()
    calls.length = 0
    await expect(new WanSources([source('seed', 'a', () => { throw new Error('never') }, calls)], new TokenBucket({ rate: 1000 })).fetch(cid, 10, ctl.signal)).rejects.toThrow()
    expect(calls).toEqual([])
    await expect(new WanSources([], new TokenBucket({ rate: 0 })).fetch(cid, 10, new AbortController().signal)).rejects.toThrow(/ERR_NET_NO_SOURCE|no WAN source/)
  })

  it('fetchBatch: what a source does not serve goes to the next; a source that serves part of a run is not passed over, one that serves none is', async () => {
    const blobs = Array.from({ length: 4 }, (_, i) => Buffer.from(`blob ${i}`))
    const wants = blobs.map(b => ({ cid: createHash('sha256').update(b).digest(), maxSize: b.length }))
    const asked: Record<string, number[]> = { seed: [], origin: [] }
    const failures: string[] = []
    let seedHas = new Set([0, 2])
    const fake = (name: string, has: () => Set<number>): WanSource => ({
      kind: name === 'seed' ? 'seed' : 'origin',
      name,
      fetchBatch: async (ws, onItem) => {
        for (let j = 0; j < ws.length; j++) {
          const i = wants.findIndex(w => w.cid.equals(ws[j]!.cid))
          asked[name]!.push(i)
          if (has().has(i)) onItem(j, blobs[i], undefined)
          else if (name === 'seed' && i === 3) onItem(j, undefined, new BlobBusyError(name, 'x'))
          else onItem(j, undefined, new OriginError(name, 'not here'))
        }
      }
    })
    let t = 0
    const wan = new WanSources([fake('seed', () => seedHas), fake('origin', () => new Set([0, 1, 2, 3]))], new TokenBucket({ rate: 0 }), (s) => failures.push(s.name), () => t)
    const got = new Map<number, string>()
    await wan.fetchBatch(wants, (i, g, err) => {
      expect(got.has(i)).toBe(false)
      expect(err).toBeUndefined()
      expect(Buffer.from(g!.blob).equals(blobs[i]!)).toBe(true)
      got.set(i, g!.source.name)
    }, { signal: new AbortController().signal })
    expect([...got].sort()).toEqual([[0, 'seed'], [1, 'origin'], [2, 'seed'], [3, 'origin']])
    expect(asked).toEqual({ seed: [0, 1, 2, 3], origin: [1, 3] }) // only the rest went on
    expect(failures).toEqual(['seed']) // blob 1's failure is reported; busy (blob 3) is not
    expect(wan.order().map(s => s.name)).toEqual(['seed', 'origin']) // served half: still first

    // a seed that serves none of a run is passed over for a while
    seedHas = new Set()
    asked.seed = []
    asked.origin = []
    await wan.fetchBatch(wants.slice(0, 2), () => {}, { signal: new AbortController().signal })
    expect(asked).toEqual({ seed: [0, 1], origin: [0, 1] })
    expect(wan.order().map(s => s.name)).toEqual(['origin', 'seed'])
    t += 60_000
    expect(wan.order().map(s => s.name)).toEqual(['seed', 'origin'])

    // a source that reports out of order and fails everything: the next gets each cid under its own item
    const reversed: WanSource = { kind: 'seed', name: 'rev', fetchBatch: async (ws, onItem) => { for (let j = ws.length - 1; j >= 0; j--) onItem(j, undefined, new OriginError('rev', 'down')) } }
    const landed = new Map<number, Uint8Array>()
    await new WanSources([reversed, fake('origin', () => new Set([0, 1, 2, 3]))], new TokenBucket({ rate: 0 })).fetchBatch(wants, (i, g) => { landed.set(i, g!.blob) }, { signal: new AbortController().signal })
    for (let i = 0; i < 4; i++) expect(Buffer.from(landed.get(i)!).equals(blobs[i]!)).toBe(true)

    // every source fails an item: it gets the last source's error, the others still land
    const errs = new Map<number, Error>()
    await new WanSources([fake('seed', () => new Set([0]))], new TokenBucket({ rate: 0 })).fetchBatch(wants.slice(0, 2), (i, g, err) => { if (err !== undefined) errs.set(i, err) }, { signal: new AbortController().signal })
    expect([...errs.keys()]).toEqual([1])
    expect(errs.get(1)).toBeInstanceOf(OriginError)
  })

  it('asks a busy seed again after a pause instead of failing the fetch; gives up after BUSY_RETRY_FOR_MS or when aborted', async () => {
    const calls: string[] = []
    const failures: string[] = []
    let busy = 2
    const wan = new WanSources([source('seed', 'seed', () => busy-- > 0 ? new BlobBusyError('seed', hex) : blob, calls)], new TokenBucket({ rate: 0 }), (s) => failures.push(s.name))
    const t0 = Date.now()
    expect((await wan.fetch(cid, blob.length, new AbortController().signal)).source.name).toBe('seed')
    expect(calls).toEqual(['seed', 'seed', 'seed'])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * BUSY_RETRY_MS - 5)
    expect(failures).toEqual([]) // busy is load shedding, not a fault: nothing reported, not passed over

    // always busy: given up once the clock passes the limit, with the busy error
    let t = 0
    calls.length = 0
    const always = new WanSources([source('seed', 'seed', () => { t += BUSY_RETRY_FOR_MS / 2; return new BlobBusyError('seed', hex) }, calls)], new TokenBucket({ rate: 0 }), undefined, () => t)
    await expect(always.fetch(cid, 10, new AbortController().signal)).rejects.toBeInstanceOf(BlobBusyError)
    expect(calls.length).toBe(2)
    // aborted while pausing: stops at once
    const ctl = new AbortController()
    const stuck = new WanSources([source('seed', 'seed', () => { setTimeout(() => { ctl.abort() }, 10); return new BlobBusyError('seed', hex) }, [])], new TokenBucket({ rate: 0 }))
    const t1 = Date.now()
    await expect(stuck.fetch(cid, 10, ctl.signal)).rejects.toBeInstanceOf(BlobBusyError)
    expect(Date.now() - t1).toBeLessThan(BUSY_RETRY_MS)
  })
})
