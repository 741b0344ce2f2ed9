// The daemon's explicit collections (src/daemon/gc.ts): they really collect, more than once, and
// only for manifests large enough to matter.
import { describe, expect, it } from 'vitest'
import { fullGc, gcAfterManifest, MANIFEST_GC_BYTES } from '../../src/daemon/gc.js'

function garbage (): WeakRef<object> {
  return new WeakRef({ big: new Array(1000).fill('x') })
}

describe('fullGc', () => {
  it('collects what nothing references, every time it is called', async () => {
    for (let round = 0; round < 2; round++) {
      const ref = garbage()
      await new Promise(resolve => setImmediate(resolve)) // a WeakRef target is kept until the turn ends
      fullGc()
      expect(ref.deref()).toBeUndefined()
    }
  })

  it('runs for large manifests only', async () => {
    const ref = garbage()
    await new Promise(resolve => setImmediate(resolve))
    gcAfterManifest(new Uint8Array(1024))
    expect(ref.deref()).toBeDefined() // a small manifest: no collection (nothing else allocates here)
    await new Promise(resolve => setImmediate(resolve)) // deref() kept it alive for this turn
    gcAfterManifest(new Uint8Array(MANIFEST_GC_BYTES))
    expect(ref.deref()).toBeUndefined()
  })
})
