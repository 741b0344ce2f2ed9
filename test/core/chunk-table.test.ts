// The compact chunk table against the plain array it replaces: same entries, same distinct order
// and indices as the have-maps' definition (first appearance), bad entries refused.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { ChunkTable, compactPayload, FileChunkList } from '../../src/core/chunk-table.js'
import { InvalidArgumentError } from '../../src/core/errors.js'
import type { ChunkRef, FileChunk, ManifestPayload } from '../../src/core/manifest.js'
import { distinctChunks } from '../../src/swarm/release-fetch.js'

const hex = (n: number): string => n.toString(16).padStart(64, '0')

// Few distinct cids, so that repeats are common; sizes over the whole uint32 range. A cid names
// one blob, so a repeated cid comes with the same size (as in any real table).
const refsArb = fc.tuple(fc.array(fc.nat({ max: 0xffff_ffff }), { minLength: 41, maxLength: 41 }), fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 200 }))
  .map(([sizes, picks]) => picks.map(k => ({ cid: hex(k), size: sizes[k] as number })))

describe('ChunkTable', () => {
  it('holds what the array holds, by index, in order', () => {
    fc.assert(fc.property(refsArb, (refs) => {
      const t = ChunkTable.of(refs)
      expect(t.length).toBe(refs.length)
      expect([...t]).toEqual(refs)
      expect(t.cidList()).toEqual(refs.map(r => r.cid))
      refs.forEach((r, i) => {
        expect(t.cid(i)).toBe(r.cid)
        expect(Buffer.from(t.cidBytes(i)).toString('hex')).toBe(r.cid)
        expect(t.size(i)).toBe(r.size)
        expect(t.at(i)).toEqual(r)
      })
      expect(t.at(refs.length)).toBeUndefined()
      expect(t.at(-1)).toBeUndefined()
      expect(t.bytes()).toBe(refs.reduce((n, r) => n + r.size, 0))
      expect(t.bytes([0, 0].filter(i => i < refs.length))).toBe(refs.length > 0 ? 2 * (refs[0] as ChunkRef).size : 0)
    }))
  })

  it('distinct() is distinctChunks, and maps every entry to its distinct index', () => {
    fc.assert(fc.property(refsArb, (refs) => {
      const { table, indexOf } = ChunkTable.of(refs).distinct()
      const model = distinctChunks(refs)
      expect([...table]).toEqual(model)
      const pos = new Map(model.map((c, i) => [c.cid, i]))
      expect([...indexOf]).toEqual(refs.map(r => pos.get(r.cid)))
    }))
  })

  it('from() keeps a table and converts an array', () => {
    const refs = [{ cid: hex(1), size: 30 }]
    const t = ChunkTable.of(refs)
    expect(ChunkTable.from(t)).toBe(t)
    expect([...ChunkTable.from(refs)]).toEqual(refs)
  })

  it('refuses cids that are not 64 lowercase hex characters and sizes outside uint32, naming the entry', () => {
    const ok = { cid: hex(1), size: 30 }
    for (const bad of [hex(1).toUpperCase().replace(/^0/, 'A'), hex(1).slice(1), hex(1) + '0', 'zz'.repeat(32), 7]) {
      expect(() => ChunkTable.of([ok, { cid: bad as string, size: 30 }])).toThrow(InvalidArgumentError)
      expect(() => ChunkTable.of([ok, { cid: bad as string, size: 30 }])).toThrow(/chunk 1/)
    }
    for (const size of [-1, 1.5, 2 ** 32, Number.NaN]) expect(() => ChunkTable.of([{ cid: hex(1), size }])).toThrow(InvalidArgumentError)
  })

  it('throws on an index outside the table for the direct accessors', () => {
    const t = ChunkTable.of([{ cid: hex(1), size: 30 }])
    expect(() => t.cid(1)).toThrow(RangeError)
    expect(() => t.size(-1)).toThrow(RangeError)
    expect(() => t.cidBytes(0.5)).toThrow(RangeError)
  })
})

const fileChunksArb = fc.array(fc.record({ index: fc.nat({ max: 0xffff_ffff }), key: fc.integer({ min: 0, max: 1000 }).map(hex), size: fc.nat({ max: 0xffff_ffff }) }), { maxLength: 100 })

describe('FileChunkList', () => {
  it('reads like the array it was made of: at, slice (negative bounds too), some, iteration', () => {
    fc.assert(fc.property(fileChunksArb, fc.integer({ min: -120, max: 120 }), fc.integer({ min: -120, max: 120 }), (chunks, a, b) => {
      const l = FileChunkList.of(chunks)
      expect(l.length).toBe(chunks.length)
      expect([...l]).toEqual(chunks)
      expect(l.at(a)).toEqual(chunks.at(a))
      expect(l.slice(a, b)).toEqual(chunks.slice(a, b))
      expect(l.slice(a)).toEqual(chunks.slice(a))
      const pred = (c: FileChunk): boolean => c.size % 3 === 0
      expect(l.some(pred)).toBe(chunks.some(pred))
      chunks.forEach((c, i) => { expect(Buffer.from(l.keyBytes(i)).toString('hex')).toBe(c.key) })
    }))
  })

  it('refuses bad entries, naming the entry', () => {
    const ok = { index: 0, key: hex(1), size: 30 }
    expect(() => FileChunkList.of([ok, { ...ok, key: 'ab' }])).toThrow(/file chunk 1: a key/)
    expect(() => FileChunkList.of([ok, { ...ok, index: -1 }])).toThrow(InvalidArgumentError)
    expect(() => FileChunkList.of([{ ...ok, size: 2 ** 32 }])).toThrow(InvalidArgumentError)
    expect(() => FileChunkList.of([ok]).keyBytes(1)).toThrow(RangeError)
  })

  it('compactPayload keeps every field and every chunk, and files without chunks stay without', () => {
    const p: ManifestPayload = {
      files: [
        { path: 'bin/app', type: 'file', mode: 0o755, size: 60, sha256: hex(9), chunks: [{ index: 0, key: hex(2), size: 30 }, { index: 1, key: hex(3), size: 30 }] },
        { path: 'etc', type: 'dir', mode: 0o755, size: 0 },
        { path: 'link', type: 'symlink', mode: 0o777, size: 0, target: 'bin/app' }
      ],
      hooks: { preinstall: 'true' },
      notes: 'n'
    }
    const c = compactPayload(p)
    expect(c.hooks).toEqual(p.hooks)
    expect(c.notes).toBe('n')
    expect(c.files.map(f => ({ ...f, ...(f.chunks !== undefined ? { chunks: [...f.chunks] } : {}) }))).toEqual(p.files)
    expect('chunks' in (c.files[1] as object)).toBe(false)
  })
})
