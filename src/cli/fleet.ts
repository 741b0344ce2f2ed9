// `shoal fleet status|endpoints|failures|inventory|audit`: what the seed knows from its endpoints'
// reports (docs/fleet.md), asked over /shoal/fleet/1 with the publisher's PeerId from the keys folder.
import type { Command } from 'commander'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { InvalidArgumentError } from '../core/errors.js'
import { AuditPolicyError, audit, parsePolicy } from '../fleet/audit.js'
import { FleetClient, type FleetAnswers } from '../fleet/client.js'
import type { FleetOp } from '../fleet/service.js'
import { STATE_BUCKETS } from '../fleet/store.js'
import { seedMultiaddr } from '../net/peer-addr.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import { loadPublisherKeys } from '../publish/keys-dir.js'
import { EXIT, formatBytes, formatDuration, printJson } from './common.js'

interface Common { seed: string, keys: string, json?: boolean, package?: string }

async function ask<O extends FleetOp> (o: Common, op: O): Promise<FleetAnswers[O]> {
  if (o.package !== undefined && !/^[\x21-\x7e]{1,256}$/.test(o.package)) throw new InvalidArgumentError(`--package "${o.package.slice(0, 60)}" is not a package name (1–256 printable characters, no spaces)`)
  seedMultiaddr(o.seed, '--seed') // a typo is a usage error, found before the keys are read
  const dir = resolve(o.keys)
  const keys = await loadPublisherKeys(dir)
  const client = await FleetClient.open({ seed: o.seed, networkKey: keys.fleet.networkKey, privateKey: await loadOrCreatePeerKey(dir) })
  try {
    return await client.query(op, o.package !== undefined ? { package: o.package } : {})
  } finally {
    await client.close()
  }
}

function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  return [head, ...rows].map(r => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n') + '\n'
}

const short = (peer: string): string => `${peer.slice(0, 12)}…${peer.slice(-6)}`

function common (cmd: Command, withPackage: boolean): Command {
  cmd.requiredOption('--seed <multiaddr>', 'the seed, with /p2p/<its PeerId>')
    .requiredOption('--keys <dir>', 'the publisher\'s keys folder (its PeerId must be in the seed\'s "publishers")')
    .option('--json', 'print JSON')
  if (withPackage) cmd.option('--package <name>', 'only this package')
  return cmd
}

const EXAMPLE_SEED = '/ip4/10.0.0.5/tcp/7700/p2p/12D3KooW…'

export function registerFleet (program: Command): void {
  const fleet = program.command('fleet').description('what the fleet runs, from the endpoints\' reports to the seed')

  common(fleet.command('status'), true)
    .description('per release and ring, endpoints by state; bytes from LAN vs WAN per site')
    .addHelpText('after', `
States: pending (announced), downloading (also installing), waiting-for-ring, installed, failed,
other (superseded and states this shoal does not know).

Examples:
  shoal fleet status --seed ${EXAMPLE_SEED} --keys ./fleet-keys
  shoal fleet status --seed ${EXAMPLE_SEED} --keys ./fleet-keys --package hello-app --json`)
    .action(async (o: Common) => {
      const s = await ask(o, 'status')
      if (o.json === true) { printJson(s); return }
      const stale = (s.stale ?? 0) > 0 ? ` · ${s.stale} not reporting for ${formatDuration(s.staleAfterMs)} (not counted; \`shoal fleet endpoints\` lists them)` : ''
      let out = `${s.endpoints} endpoints · rings ${Object.entries(s.rings).map(([r, n]) => `${r} ${n}`).join(', ') || '-'}${stale}\n`
      const rows: string[][] = []
      for (const r of s.releases) {
        for (const [ring, c] of Object.entries(r.rings).sort(([a], [b]) => a.localeCompare(b))) {
          rows.push([`${r.package}@${r.version}`, ring, ...STATE_BUCKETS.map(b => String(c[b]))])
        }
      }
      out += rows.length > 0 ? table(['RELEASE', 'RING', ...STATE_BUCKETS.map(b => b.toUpperCase())], rows) : 'no releases reported yet\n'
      if (s.sites.length > 0) {
        out += table(['SITE', 'ENDPOINTS', 'LAN', 'WAN', 'LAN SHARE'], s.sites.map(x => [x.site, String(x.endpoints), formatBytes(x.lan), formatBytes(x.wan), `${x.lanPercent} %`]))
      }
      process.stdout.write(out)
    })

  common(fleet.command('endpoints'), false)
    .description('every endpoint that reported: ring, site, versions, last report')
    .addHelpText('after', `
Examples:
  shoal fleet endpoints --seed ${EXAMPLE_SEED} --keys ./fleet-keys
  shoal fleet endpoints --seed ${EXAMPLE_SEED} --keys ./fleet-keys --json | jq '.[].peerId'`)
    .action(async (o: Common) => {
      const list = await ask(o, 'endpoints')
      if (o.json === true) { printJson(list); return }
      process.stdout.write(list.length === 0
        ? 'no endpoint has reported yet\n'
        : table(['ENDPOINT', 'RING', 'SITE', 'SHOAL', 'INSTALLED', 'INVENTORY', 'REPORTED'], list.map(e => [
          e.peerId, e.ring, e.site ?? '-', e.daemonVersion, e.installed.map(p => `${p.package}@${p.version}`).join(',') || '-',
          `${e.inventory.source} ${e.inventory.count}${e.inventory.truncated ? '+' : ''}`, e.receivedAt + (e.stale === true ? ' (stale)' : '')
        ])))
    })

  common(fleet.command('failures'), true)
    .description('failed installs: endpoint, release, error code, hook exit code, log tail')
    .addHelpText('after', `
Examples:
  shoal fleet failures --seed ${EXAMPLE_SEED} --keys ./fleet-keys
  shoal fleet failures --seed ${EXAMPLE_SEED} --keys ./fleet-keys --package hello-app --json`)
    .action(async (o: Common) => {
      const list = await ask(o, 'failures')
      if (o.json === true) { printJson(list); return }
      if (list.length === 0) { process.stdout.write('no failures reported\n'); return }
      let out = ''
      for (const f of list) {
        out += `${f.package}@${f.version} on ${short(f.peerId)} (ring ${f.ring}${f.site !== null ? `, site ${f.site}` : ''}): ${f.code}${f.exitCode !== undefined ? ` exit ${f.exitCode}` : ''} — ${f.message}\n`
        if (f.logTail !== undefined && f.logTail !== '') out += f.logTail.trimEnd().split('\n').slice(-10).map(l => `    ${l}`).join('\n') + '\n'
      }
      process.stdout.write(out)
    })

  common(fleet.command('inventory'), true)
    .description('who has what: shoal-managed and OS packages (dpkg, rpm) per endpoint')
    .addHelpText('after', `
Examples:
  shoal fleet inventory --seed ${EXAMPLE_SEED} --keys ./fleet-keys --package openssl
  shoal fleet inventory --seed ${EXAMPLE_SEED} --keys ./fleet-keys --json > inventory.json`)
    .action(async (o: Common) => {
      const inv = await ask(o, 'inventory')
      if (o.json === true) { printJson(inv); return }
      let out = inv.rows.length === 0 ? `no endpoint reports ${o.package !== undefined ? `a package named ${o.package}` : 'any package'}\n` : table(['PACKAGE', 'VERSION', 'SOURCE', 'ENDPOINT', 'RING', 'SITE'], inv.rows.map(r => [r.name, r.version, r.source, r.peerId, r.ring, r.site ?? '-']))
      for (const i of inv.incomplete) out += `note: ${short(i.peerId)}: OS inventory ${i.truncated ? 'truncated' : 'empty'}${i.reason !== undefined ? ` (${i.reason})` : ''}\n`
      process.stdout.write(out)
    })

  common(fleet.command('audit'), false)
    .description('list packages the policy does not allow (exit 1 when there are any)')
    .requiredOption('--policy <file>', 'policy.json: {"allow": [patterns], "deny": [patterns]} (docs/fleet.md)')
    .addHelpText('after', `
A package violates the policy when its name matches a "deny" pattern, or when "allow" is given
and it matches none. Patterns are whole-name globs (* and ?). Exit 0: no violation; 1: violations
(listed); 2: the policy file is wrong.

Examples:
  echo '{"deny": ["telnetd", "*-dbg"]}' > policy.json
  shoal fleet audit --seed ${EXAMPLE_SEED} --keys ./fleet-keys --policy policy.json`)
    .action(async (o: Common & { policy: string }) => {
      let text: string
      try {
        text = await readFile(resolve(o.policy), 'utf8')
      } catch (err) {
        throw new AuditPolicyError(`cannot read ${o.policy}: ${(err as Error).message}`)
      }
      const policy = parsePolicy(text, o.policy)
      const inv = await ask(o, 'inventory')
      const violations = audit(inv.rows, policy)
      if (o.json === true) printJson({ violations, incomplete: inv.incomplete })
      else {
        process.stdout.write(violations.length === 0
          ? `no violations across ${new Set(inv.rows.map(r => r.peerId)).size} endpoints\n`
          : table(['ENDPOINT', 'RING', 'PACKAGE', 'VERSION', 'SOURCE', 'RULE'], violations.map(v => [v.peerId, v.ring, v.name, v.version, v.source, v.rule === 'denied' ? `denied by ${v.pattern ?? ''}` : 'not allowed'])))
      }
      if (violations.length > 0) process.exitCode = EXIT.failure
    })
}
