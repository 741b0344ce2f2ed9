import type { Command } from 'commander'
import { resolve } from 'node:path'
import { extractRelease } from '../publish/extract.js'
import { printJson } from './common.js'

export function registerExtract (program: Command): void {
  program.command('extract')
    .description('rebuild a release\'s file tree from a repository, verifying every blob and file')
    .requiredOption('--repo <dir>', 'repository folder holding the blobs')
    .requiredOption('--manifest <file>', 'the release manifest')
    .requiredOption('--enroll <enroll.json>', 'endpoint enrollment bundle (trust root + fleet secret)')
    .requiredOption('--to <dir>', 'empty or absent folder to write the tree into')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Example:
  shoal extract --repo ./repo --manifest ./repo/manifests/hello/1.0.0.json --enroll ./fleet-keys/enroll.json --to ./out`)
    .action(async (o: { repo: string, manifest: string, enroll: string, to: string, json?: boolean }) => {
      const res = await extractRelease({ repoDir: resolve(o.repo), manifestPath: resolve(o.manifest), enrollPath: resolve(o.enroll), to: resolve(o.to) })
      if (o.json === true) printJson(res)
      else process.stdout.write(`extracted ${res.package}@${res.version}: ${res.files} entries, ${res.bytes} bytes into ${res.to}\n`)
    })
}
