// The endpoint's plan for a payload without delta blobs (wholeChunksWanted) against planFetch,
// which it short-cuts: the same chunks wanted, the same bytes, from a plain or a compact payload.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { ChunkTable, compactPayload } from '../../src/core/chunk-table.js'
import { planFetch } from '../../src/core/delta-apply.js'
import type { ManifestPayload } from '../../src/core/manifest.js'
import { wholeChunksWanted } from '../../src/daemon/delta-download.js'
import { HaveMap } from '../../src/swarm/have-map.js'

const hex = (n: number): string => n.toString(16).padStart(64, '0')

const caseArb = fc.integer({ min: 1, max: 40 }).chain(n => fc.record({
  sizes: fc.array(fc.integer({ min: 30, max: 100_000 }), { minLength: n, maxLength: n }),
  files: fc.array(fc.array(fc.nat({ max: n - 1 }), { maxLength: 30 }), { maxLength: 5 }),
  held: fc.array(fc.boolean(), { minLength: n, maxLength: n })
}))

describe('wholeChunksWanted', () => {
  it('wants what planFetch fetches whole when the payload has no deltas', () => {
    fc.assert(fc.property(caseArb, ({ sizes, files, held }) => {
      const refs = sizes.map((size, i) => ({ cid: hex(i + 1), size }))
      const payload: ManifestPayload = {
        files: files.map((idx, f) => ({ path: `f${f}`, type: 'file' as const, mode: 0o644, size: idx.length, sha256: hex(0), chunks: idx.map(i => ({ index: i, key: hex(1000 + i), size: 1 })) }))
      }
      const { table, indexOf } = ChunkTable.of(refs).distinct()
      const have = new HaveMap(table.length)
      held.forEach((h, i) => { if (h) have.set(i) })
      const plan = planFetch({ chunks: refs }, payload, cid => held[parseInt(cid, 16) - 1] === true)
      const expected = plan.items.map(x => x.kind === 'full' ? x.chunk.index : -1).sort((a, b) => a - b)
      for (const p of [payload, compactPayload(payload)]) {
        const got = wholeChunksWanted(p, table, indexOf, have)
        expect(got.want.indices()).toEqual(expected)
        expect(got.bytes).toBe(plan.bytes)
      }
    }))
  })
})
