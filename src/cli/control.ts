// `shoal promote`, `shoal halt`, `shoal rollback`: sign a control record (docs/rollout.md §3) with
// the publisher keys and send it to the seed, which verifies it against its pinned root, stores it
// and carries it to the endpoints. With --out the record is also written to a file.
import type { Command } from 'commander'
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { InvalidArgumentError } from '../core/errors.js'
import { validatePackageName, validateVersion } from '../core/manifest.js'
import { loadPublisherKeys } from '../publish/keys-dir.js'
import { SeedSession, type RecordResult } from '../publish/push.js'
import { describeRecord, signRecord, type RecordAction } from '../rollout/records.js'
import { parseDuration, parseIntArg, printJson, withBloblessSession } from './common.js'

interface ControlFlags {
  keys: string
  seed?: string
  out?: string
  seq?: string
  expires: string
  json?: boolean
  ring?: string
  to?: string
}

/** "app@1.2.0" → package and version, each checked. */
export function parseRelease (text: string): { package: string, version: string } {
  const at = text.indexOf('@')
  if (at <= 0 || at === text.length - 1) throw new InvalidArgumentError(`"${text}" is not <package>@<version>, e.g. hello@1.2.0`)
  const pkg = text.slice(0, at)
  const version = text.slice(at + 1)
  validatePackageName(pkg)
  validateVersion(version)
  return { package: pkg, version }
}

async function run (action: RecordAction, release: string, o: ControlFlags): Promise<void> {
  const { package: pkg, version } = parseRelease(release)
  if (o.seed === undefined && o.out === undefined) throw new InvalidArgumentError('give --seed <seed multiaddr>, --out <file>, or both')
  if (o.out !== undefined && o.seed === undefined && o.seq === undefined) throw new InvalidArgumentError('without --seed, give --seq (the seed that would know the next number is not asked)')
  const expiresMs = parseDuration(o.expires, '--expires')
  const keysDir = resolve(o.keys)
  const keys = await loadPublisherKeys(keysDir)
  const sign = async (session?: SeedSession): Promise<void> => {
    const seq = o.seq !== undefined ? parseIntArg(o.seq, '--seq', 1, Number.MAX_SAFE_INTEGER) : (await (session as SeedSession).recordSeq(pkg)) + 1
    const now = new Date()
    const { bytes, id, record } = signRecord({
      action, package: pkg, version, seq, issued: now, expires: new Date(now.getTime() + expiresMs), signers: keys.publisherKeys,
      ...(o.ring !== undefined ? { ring: o.ring } : {}),
      ...(action === 'rollback' ? { to: o.to } : {})
    })
    if (o.out !== undefined) await writeFile(resolve(o.out), bytes)
    let sent: RecordResult | undefined
    if (session !== undefined) sent = await session.sendRecord(bytes)
    for (const w of sent?.warnings ?? []) process.stderr.write(`shoal: warning: ${w}\n`)
    if (o.json === true) {
      printJson({ id, record: record.signed, ...(o.out !== undefined ? { out: resolve(o.out) } : {}), ...(sent !== undefined ? { seed: { to: o.seed, ...sent } } : {}) })
    } else {
      process.stdout.write(`signed ${describeRecord(record.signed)}, id ${id}\n`)
      if (o.out !== undefined) process.stdout.write(`  written to ${resolve(o.out)}\n`)
      if (sent !== undefined) {
        process.stdout.write(sent.accepted === 'same'
          ? `  the seed already holds this record\n`
          : `  accepted by the seed, pushed to ${sent.pushed} connected peer(s); endpoints also poll it\n`)
      }
    }
  }
  if (o.seed === undefined) await sign()
  else await withBloblessSession(keysDir, o.seed, keys.fleet.networkKey, sign)
}

function common (cmd: Command): Command {
  return cmd
    .requiredOption('--keys <dir>', 'the keys folder from `shoal keys init` (its publisher keys sign the record)')
    .option('--seed <multiaddr>', 'the seed to send the record to (…/p2p/<seed PeerId>); your PeerId must be in its "publishers" when that list is not empty')
    .option('--out <file>', 'also write the signed record to this file')
    .option('--seq <n>', 'record sequence number (default: one more than the seed holds for the package)')
    .option('--expires <duration>', 'how long the record may be delivered (endpoints that first hear of it later ignore it)', '365d')
    .option('--json', 'print the record and the seed\'s answer as JSON')
}

const TRAILER = `
Exit codes: 0 ok, 1 failure (seed unreachable), 2 usage, 3 refused by a trust check (a record not
signed by the publisher threshold, expired, or replayed: a seq not above the seed's).`

export function registerControl (program: Command): void {
  common(program.command('promote')
    .description('open a ring of a release whose rollout policy holds it (approval gate, or early for a time gate)')
    .argument('<release>', '<package>@<version>')
    .requiredOption('--ring <label>', 'the ring to open'))
    .addHelpText('after', `
Examples:
  shoal promote hello@1.2.0 --ring broad --keys ./fleet-keys --seed /ip4/10.0.0.5/tcp/7700/p2p/12D3KooW…
  shoal promote hello@1.2.0 --ring pilot --keys ./fleet-keys --out promote-pilot.json --seq 7
${TRAILER}`)
    .action(async (release: string, o: ControlFlags) => { await run('promote', release, o) })

  common(program.command('halt')
    .description('stop a release: endpoints that have not started installing it do not')
    .argument('<release>', '<package>@<version>'))
    .addHelpText('after', `
Halt is final for the release (a later promote does not reopen it); publish a new version to resume.

Examples:
  shoal halt hello@1.2.0 --keys ./fleet-keys --seed /ip4/10.0.0.5/tcp/7700/p2p/12D3KooW…
${TRAILER}`)
    .action(async (release: string, o: ControlFlags) => { await run('halt', release, o) })

  common(program.command('rollback')
    .description('halt a release and send the endpoints running it back to an earlier version they still hold')
    .argument('<release>', '<package>@<version> (the release to leave)')
    .requiredOption('--to <version>', 'the version to go back to (endpoints keep the previous version\'s blobs)'))
    .addHelpText('after', `
Examples:
  shoal rollback hello@1.2.0 --to 1.1.0 --keys ./fleet-keys --seed /ip4/10.0.0.5/tcp/7700/p2p/12D3KooW…
${TRAILER}`)
    .action(async (release: string, o: ControlFlags) => { await run('rollback', release, o) })
}
