// `npm run bench`: every benchmark, each beside its ceiling measured in the same run; results
// go to bench/results/<name>.json and a table to stdout. `--bytes N` scales the data sets
// (default 1 GiB; use less on a busy machine), `--only name,name` picks benchmarks; `--full` makes
// the scale simulation run every site instead of a sample; `--peers`, `--workers`, `--seconds` size
// the load run (default 200 peers in 4 processes for 60 s).
import '../src/polyfills.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { benchChunker } from './chunker.js'
import { benchSeal } from './seal.js'
import { benchPublish } from './publish.js'
import { benchNet } from './net.js'
import { benchReleases } from './releases.js'
import { benchDelta } from './delta.js'
import { benchDaemon } from './daemon.js'
import { benchDeltaReleases } from './delta-releases.js'
import { benchSwarm } from './swarm.js'
import { benchScale } from './scale.js'
import { benchLoad } from './load.js'
import { benchInstall } from './install.js'

const MiB = 1024 * 1024
const arg = (name: string): string | undefined => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined }
const bytes = Number(arg('--bytes') ?? 1024 * MiB)
const only = arg('--only')?.split(',')
const results = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'bench', 'results')

const benches: Record<string, () => Promise<unknown>> = {
  chunker: async () => await benchChunker({ bytes }),
  seal: async () => await benchSeal({ bytes: Math.min(bytes, 64 * MiB) }),
  publish: async () => await benchPublish({ bytes }),
  releases: async () => await benchReleases(),
  delta: async () => await benchDelta(),
  'delta-releases': async () => await benchDeltaReleases(),
  swarm: async () => await benchSwarm({ bytes: Math.min(bytes, 200 * MiB), endpoints: arg('--endpoints')?.split(',').map(Number), log: (l) => { console.log(l) } }),
  install: async () => await benchInstall({ bytes: Math.min(bytes, 200 * MiB), log: (l) => { console.log(l) } }),
  daemon: async () => await benchDaemon({ bytes, log: (l) => { console.log(l) } }),
  net: async () => await benchNet({ bytes } as Parameters<typeof benchNet>[0]),
  scale: async () => await benchScale({ full: process.argv.includes('--full'), log: (l) => { console.log(l) } }),
  load: async () => await benchLoad({ peers: Number(arg('--peers') ?? 200), workers: Number(arg('--workers') ?? 4), seconds: Number(arg('--seconds') ?? 60), log: (l) => { console.log(l) } })
}

await mkdir(results, { recursive: true })
for (const [name, run] of Object.entries(benches)) {
  if (only !== undefined && !only.includes(name)) continue
  process.stdout.write(`\n== ${name} (${(bytes / MiB).toFixed(0)} MiB)\n`)
  const r = await run()
  console.table(r)
  await writeFile(join(results, `${name}.json`), JSON.stringify({ at: new Date().toISOString(), node: process.version, bytes, result: r }, null, 2) + '\n')
}
