import type { Command } from 'commander'
import { decodeRoot, verifyRoot, MAX_ROOT_BYTES } from '../core/root.js'
import { decodeManifest, manifestId, verifyManifest, MAX_MANIFEST_BYTES } from '../core/manifest.js'
import { describeError, exitCodeFor, printJson } from './common.js'
import { readInput } from './files.js'

export function registerVerify (program: Command): void {
  program.command('verify')
    .description('check a release manifest: signed by a threshold of publisher keys, not expired, well formed')
    .argument('<manifest>', 'manifest file (repo/manifests/<package>/<version>.json)')
    .requiredOption('--root <root.json>', 'the trust root to check against')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Exit status: 0 valid; 3 refused (signature, expiry, format); 1 unreadable; 2 usage.
Example:
  shoal verify repo/manifests/hello/1.0.0.json --root fleet-keys/root.json`)
    .action(async (file: string, o: { root: string, json?: boolean }) => {
      try {
        const now = new Date()
        const root = decodeRoot(await readInput(o.root, 'root', MAX_ROOT_BYTES))
        verifyRoot(root, now)
        const bytes = await readInput(file, 'manifest', MAX_MANIFEST_BYTES)
        const m = decodeManifest(bytes)
        verifyManifest(m, root, now)
        const res = { valid: true, manifestId: manifestId(bytes), package: m.signed.package, version: m.signed.version, seq: m.signed.seq, channel: m.signed.channel, expires: m.signed.expires, chunks: m.signed.chunks.length, signatures: m.signatures.length }
        if (o.json === true) printJson(res)
        else process.stdout.write(`valid: ${res.package}@${res.version} (seq ${res.seq}, channel ${res.channel}) expires ${res.expires}, ${res.signatures} signature(s), ${res.chunks} blobs\n`)
      } catch (err) {
        if (o.json === true) printJson({ valid: false, error: describeError(err) })
        else process.stderr.write(`invalid: ${describeError(err)}\n`)
        process.exitCode = exitCodeFor(err)
      }
    })
}
