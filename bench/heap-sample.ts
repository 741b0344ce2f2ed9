// Allocation sampling for a daemon under a bench: preload with
//   SHOAL_BENCH_NODE_FLAGS="--import $PWD/dist/bench/heap-sample.js" SHOAL_HEAP_SAMPLE_DIR=/tmp/hs node dist/bench/daemon.js …
// V8's sampling heap profiler, started through the inspector with the objects that minor and major
// collections freed kept in the profile — what `node --heap-prof` leaves out, and what a GC-bound
// receive path is made of (docs/bench-daemon.md, session 10). At exit it writes
// <dir>/heap-<pid>.json (a Chrome DevTools .heapprofile); `node dist/bench/heap-sample.js FILE`
// prints the top allocation sites by self and inclusive bytes.
import { Session } from 'node:inspector'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

interface HeapNode { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: HeapNode[] }

const SAMPLE_BYTES = 16 * 1024

function start (dir: string): void {
  const s = new Session()
  s.connect()
  s.post('HeapProfiler.enable')
  s.post('HeapProfiler.startSampling', { samplingInterval: SAMPLE_BYTES, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true })
  let written = false
  const dump = (): void => {
    if (written) return
    written = true
    // the inspector answers synchronously within the same thread, so this completes before exit
    s.post('HeapProfiler.stopSampling', (err, r) => {
      if (err === null) writeFileSync(join(dir, `heap-${process.pid}.json`), JSON.stringify(r.profile))
    })
  }
  process.once('exit', dump)
  const exit = process.exit.bind(process)
  process.exit = ((code?: number) => { dump(); exit(code) }) as typeof process.exit
}

function frameName (n: HeapNode): string {
  const cf = n.callFrame
  const url = cf.url.replace(/.*node_modules\//, '').replace(/.*\/dist\//, '')
  return `${cf.functionName === '' ? '(anonymous)' : cf.functionName} ${url}:${cf.lineNumber + 1}`
}

/** Self and inclusive sampled bytes per function, largest first. */
export function summarizeHeapProfile (head: HeapNode, top = 30): { totalBytes: number, self: Array<[string, number]>, inclusive: Array<[string, number]> } {
  const self = new Map<string, number>()
  const incl = new Map<string, number>()
  let totalBytes = 0
  const walk = (n: HeapNode, stack: string[]): void => {
    const name = frameName(n)
    totalBytes += n.selfSize
    self.set(name, (self.get(name) ?? 0) + n.selfSize)
    const on = [...stack, name]
    for (const f of new Set(on)) incl.set(f, (incl.get(f) ?? 0) + n.selfSize)
    for (const c of n.children) walk(c, on)
  }
  walk(head, [])
  const sorted = (m: Map<string, number>): Array<[string, number]> => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
  return { totalBytes, self: sorted(self), inclusive: sorted(incl) }
}

const dir = process.env.SHOAL_HEAP_SAMPLE_DIR
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2]
  if (file === undefined) { console.error('usage: node dist/bench/heap-sample.js heap-<pid>.json'); process.exit(2) }
  const { head } = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }
  const s = summarizeHeapProfile(head)
  const mb = (n: number): string => (n / 1e6).toFixed(1).padStart(8)
  console.log(`sampled allocations: ${(s.totalBytes / 1e6).toFixed(1)} MB`)
  console.log('-- self'); for (const [f, n] of s.self) console.log(mb(n), f)
  console.log('-- inclusive'); for (const [f, n] of s.inclusive) console.log(mb(n), f)
} else if (dir !== undefined && dir !== '') {
  start(dir)
}
