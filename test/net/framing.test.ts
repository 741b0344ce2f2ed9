import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { FrameOversizeError, FrameTruncatedError, StreamClosedError } from '../../src/net/errors.js'
import { encodeFrames, FrameDecoder, FrameWriter, readFrames, type WritableStream } from '../../src/net/framing.js'

function* split (buf: Uint8Array, sizes: number[]): Generator<Uint8Array> {
  let at = 0
  let i = 0
  while (at < buf.byteLength) {
    const n = sizes[i++ % sizes.length]!
    yield buf.subarray(at, at + n)
    at += n
  }
}

async function * source (chunks: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c
}

describe('framing', () => {
  it('round-trips frames across any chunking, as whole frames and as parts', async () => {
    const payloads = [1, 2, 3, 4, 5, 100, 4096, 70_000, 1].map((n) => randomBytes(n))
    const wire = encodeFrames(payloads)
    expect(wire.byteLength).toBe(payloads.reduce((s, p) => s + 4 + p.byteLength, 0))
    for (const sizes of [[1], [3], [7, 1, 13], [65_536], [wire.byteLength]]) {
      const got: Uint8Array[] = []
      for await (const f of readFrames(source(split(wire, sizes)), { maxFrameBytes: 100_000 })) got.push(Uint8Array.from(f))
      expect(got.map((g) => Buffer.from(g).toString('hex'))).toEqual(payloads.map((p) => p.toString('hex')))

      const d = new FrameDecoder(100_000)
      const viaParts: string[] = []
      for (const c of split(wire, sizes)) {
        d.push(c)
        for (let parts = d.nextParts(); parts !== undefined; parts = d.nextParts()) viaParts.push(Buffer.concat(parts).toString('hex'))
      }
      d.end()
      expect(viaParts).toEqual(payloads.map((p) => p.toString('hex')))
    }
  })

  it('assembles large frames as they arrive, across any chunking, with small frames around them', async () => {
    const MiB = 1024 * 1024
    const payloads = [7, 1.5 * MiB, 3, MiB, 3 * MiB + 1, 5].map((n) => randomBytes(n))
    const wire = encodeFrames(payloads)
    const want = payloads.map((p) => p.toString('hex'))
    for (const sizes of [[65_519], [1, 333_333, 7], [MiB + 5], [wire.byteLength]]) {
      const got: string[] = []
      for await (const f of readFrames(source(split(wire, sizes)), { maxFrameBytes: 4 * MiB })) got.push(Buffer.from(f).toString('hex'))
      expect(got).toEqual(want)
      const d = new FrameDecoder(4 * MiB)
      const viaParts: string[] = []
      let seen = 0
      for (const c of split(wire, sizes)) {
        d.push(c)
        seen += c.byteLength
        for (let parts = d.nextParts(); parts !== undefined; parts = d.nextParts()) viaParts.push(Buffer.concat(parts).toString('hex'))
        const framed = viaParts.reduce((n, h) => n + 4 + h.length / 2, 0)
        expect(d.bufferedBytes).toBeLessThanOrEqual(seen - framed)
      }
      d.end()
      expect(viaParts).toEqual(want)
    }
    // cut inside a large frame's payload: truncated, with what arrived counted
    const cut = encodeFrames([randomBytes(2 * MiB)]).subarray(0, 4 + MiB)
    const err = await (async () => { for await (const _ of readFrames(source(split(cut, [65_519])), { maxFrameBytes: 4 * MiB })); })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FrameTruncatedError)
    expect((err as Error).message).toContain(`${MiB} of ${2 * MiB}`)
  })

  it('encodes a frame given as parts like the joined payload', () => {
    const a = randomBytes(5)
    const b = randomBytes(9)
    expect(Buffer.from(encodeFrames([[a, b]])).equals(Buffer.from(encodeFrames([Buffer.concat([a, b])])))).toBe(true)
  })

  it('accepts Uint8ArrayList-like chunks (iterables of arrays)', () => {
    const wire = encodeFrames([Buffer.from('hello'), Buffer.from('world')])
    const d = new FrameDecoder(16)
    d.push({ byteLength: wire.byteLength, [Symbol.iterator]: () => split(wire, [3, 6])[Symbol.iterator]() })
    expect(Buffer.from(d.next()!).toString()).toBe('hello')
    expect(Buffer.from(d.next()!).toString()).toBe('world')
    expect(d.next()).toBeUndefined()
  })

  it('refuses an oversize frame from its header alone, before its payload arrives', () => {
    const d = new FrameDecoder(1024)
    const header = new Uint8Array([0x00, 0x10, 0x00, 0x00]) // announces 1 MiB
    d.push(header)
    expect(() => d.next()).toThrow(FrameOversizeError)
    expect(d.bufferedBytes).toBe(0)
    // a zero-length frame is malformed too
    const z = new FrameDecoder(1024)
    z.push(new Uint8Array(4))
    expect(() => z.next()).toThrow(FrameOversizeError)
  })

  it('stops the reader at an oversize header even if the rest never comes', async () => {
    async function * hostile (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array([0xff, 0xff, 0xff, 0xff])
      // an endless source: the reader must have thrown before asking for this
      while (true) yield randomBytes(65_536)
    }
    const frames: Uint8Array[] = []
    await expect((async () => {
      for await (const f of readFrames(hostile(), { maxFrameBytes: 65_536 })) frames.push(f)
    })()).rejects.toBeInstanceOf(FrameOversizeError)
    expect(frames).toHaveLength(0)
  })

  it('reports truncation inside a header and inside a payload', async () => {
    const wire = encodeFrames([randomBytes(10)])
    await expect((async () => { for await (const _ of readFrames(source([wire.subarray(0, 2)]), { maxFrameBytes: 64 })); })())
      .rejects.toBeInstanceOf(FrameTruncatedError)
    const err = await (async () => { for await (const _ of readFrames(source([wire.subarray(0, 9)]), { maxFrameBytes: 64 })); })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FrameTruncatedError)
    expect((err as Error).message).toMatch(/5 of 10/)
  })

  it('waits for drain when send() returns false and fails on close', async () => {
    const stream = new FakeStream()
    const w = new FrameWriter(stream)
    stream.accept = false
    let done = false
    const p = w.write([Buffer.from('a')]).then(() => { done = true })
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(done).toBe(false) // waiting for 'drain'
    // a second writer queues behind the pending drain instead of sending
    const q = w.write([Buffer.from('b')])
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(stream.sent).toHaveLength(1)
    stream.accept = true
    stream.drain()
    await p
    await q
    expect(stream.sent).toHaveLength(2)

    stream.accept = false
    const r = w.write([Buffer.from('c')])
    stream.close()
    await expect(r).rejects.toBeInstanceOf(StreamClosedError)
    await expect(w.write([Buffer.from('d')])).rejects.toBeInstanceOf(StreamClosedError)
  })
})

class FakeStream extends EventTarget implements WritableStream {
  status = 'open'
  writableNeedsDrain = false
  accept = true
  readonly sent: Uint8Array[] = []

  send (data: Uint8Array): boolean {
    this.sent.push(data)
    if (!this.accept) this.writableNeedsDrain = true
    return this.accept
  }

  drain (): void {
    this.writableNeedsDrain = false
    this.dispatchEvent(new Event('drain'))
  }

  close (): void {
    this.status = 'closed'
    this.dispatchEvent(new Event('close'))
  }
}
