import type { Command } from 'commander'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runDemo, type DemoReport } from '../daemon/demo.js'
import { formatBytes, parseIntArg, printJson } from './common.js'

// dist/src/cli/demo.js → <package root>/examples/hello-app
const EXAMPLE = fileURLToPath(new URL('../../../examples/hello-app/', import.meta.url))


export function formatDemo (r: DemoReport): string {
  const out: string[] = []
  for (const rel of r.releases) {
    const deltas = rel.deltaBlobs > 0 ? `; with ${rel.deltaBlobs} delta blob(s) a holder of the previous release fetches ${formatBytes(rel.fetchBytesFromPrevious)}` : ''
    out.push(`\n${r.package}@${rel.version}: new blobs ${formatBytes(rel.newBlobBytes)} (release ${formatBytes(rel.blobBytes)})${deltas}, installed everywhere in ${rel.seconds.toFixed(1)} s`)
    for (const s of rel.sites) {
      const ratio = rel.fetchBytesFromPrevious > 0 ? ` = ${(s.wanBytes / rel.fetchBytesFromPrevious).toFixed(2)} × what one endpoint needs` : ''
      out.push(`  ${s.site} (${s.endpoints} endpoints): over the WAN ${formatBytes(s.wanBytes)}${ratio} · from LAN peers ${formatBytes(s.lanBytes)}`)
    }
    for (const e of rel.endpoints) out.push(`    ${e.name.padEnd(12)} installed ${e.installed ?? '-'} · WAN ${formatBytes(e.wanBytes)} · LAN ${formatBytes(e.lanBytes)}`)
  }
  if (r.workDir !== null) out.push(`\nstate, installs and logs kept in ${r.workDir}`)
  return out.join('\n').trimStart() + '\n'
}

export function registerDemo (program: Command): void {
  program.command('demo')
    .description('run a seed and two sites of endpoints on 127.0.0.1, publish a package twice, report where every byte came from')
    .option('--sites <n>', 'number of sites', '2')
    .option('--endpoints <n>', 'endpoints per site', '3')
    .option('--package <name>', 'package name', 'hello-app')
    .option('--v1 <dir>', 'folder published first', resolve(EXAMPLE, 'v1'))
    .option('--v2 <dir>', 'folder published second', resolve(EXAMPLE, 'v2'))
    .option('--keep', 'keep the work folder (state dirs, installed trees)')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', `
Everything runs in this process on 127.0.0.1 with real libp2p, LevelDB and installs into a
temporary folder; sites are formed by label. No root needed.

Examples:
  shoal demo
  shoal demo --sites 3 --endpoints 5 --v1 ./build-1.0 --v2 ./build-1.1 --json`)
    .action(async (o: { sites: string, endpoints: string, package: string, v1: string, v2: string, keep?: boolean, json?: boolean }) => {
      const report = await runDemo({
        sites: parseIntArg(o.sites, '--sites', 1, 10),
        perSite: parseIntArg(o.endpoints, '--endpoints', 1, 20),
        package: o.package,
        releases: [{ version: '1.0.0', dir: resolve(o.v1) }, { version: '1.1.0', dir: resolve(o.v2) }],
        keep: o.keep === true,
        ...(o.json === true ? {} : { onProgress: (line: string) => process.stderr.write(line + '\n') })
      })
      if (o.json === true) printJson(report)
      else process.stdout.write(formatDemo(report))
    })
}
