// A full garbage collection at the few points where the daemon knows a burst of garbage just
// ended: the steps of opening a large manifest.
//
// Opening the manifest of a 1 GiB release (12.3 MB) allocates ~60 MB of heap in one synchronous
// run (the JSON text, its parsed tree with a 64-character string per cid, the decrypted payload
// and its tree) that is garbage once the compact tables are built (src/core/chunk-table.ts). V8
// collects it only when its allocation limit says so, which happened after the payload was open:
// the whole burst sat in the heap at once and set the endpoint's RSS peak for the release, 204–223
// MB against the 200 MB target. A collection before decoding (the fetch's transport buffers),
// after verifying and after compacting keeps one step's garbage from stacking on the next's:
// 181–188 MB, three collections of ~5–10 ms each per release (docs/bench-daemon.md, "Compact
// tables and the manifest phase"). Small manifests skip it: a young-generation scavenge's business.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Manifests from this size on get a collection between the steps of opening them. */
export const MANIFEST_GC_BYTES = 4 * 1024 * 1024

let collect: (() => void) | undefined

/** Runs a full, synchronous garbage collection. */
export function fullGc (): void {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc
    if (typeof exposed === 'function') collect = exposed
    else {
      // --expose-gc only adds `gc` to contexts made after it is set: a fresh one hands it over.
      setFlagsFromString('--expose-gc')
      collect = runInNewContext('gc') as () => void
    }
  }
  collect()
}

/** fullGc() when `bytes` is a large manifest's (MANIFEST_GC_BYTES), else nothing. */
export function gcAfterManifest (bytes: Uint8Array): void {
  if (bytes.byteLength >= MANIFEST_GC_BYTES) fullGc()
}
