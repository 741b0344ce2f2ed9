import type { Command } from 'commander'
import { resolve } from 'node:path'
import { initKeysDir, loadPublisherKeys, rotateKeysDir } from '../publish/keys-dir.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { parseDuration, parseIntArg, printJson, withBloblessSession } from './common.js'

export function registerKeys (program: Command): void {
  const keys = program.command('keys').description('create and manage the fleet\'s keys')
  keys.command('init')
    .description('create a trust root, publisher/online keys, the fleet secret and the enrollment bundles')
    .requiredOption('--dir <dir>', 'empty folder to write the keys into (created 0700)')
    .option('--root-keys <n>', 'number of root keys', '1')
    .option('--threshold <t>', 'root signatures needed to accept a new root', '1')
    .option('--publisher-keys <n>', 'number of publisher keys', '1')
    .option('--publisher-threshold <t>', 'publisher signatures needed on a manifest', '1')
    .option('--expires <duration>', 'how long the root stays valid', '365d')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Examples:
  shoal keys init --dir ./fleet-keys
  shoal keys init --dir ./fleet-keys --root-keys 3 --threshold 2 --publisher-keys 2 --publisher-threshold 2

Hand enroll.json to endpoints and seed-enroll.json to seeds; keep root-*.key offline.`)
    .action(async (o: { dir: string, rootKeys: string, threshold: string, publisherKeys: string, publisherThreshold: string, expires: string, json?: boolean }) => {
      const rootKeys = parseIntArg(o.rootKeys, '--root-keys', 1, 32)
      const publisherKeys = parseIntArg(o.publisherKeys, '--publisher-keys', 1, 32)
      const res = await initKeysDir({
        dir: resolve(o.dir),
        rootKeys,
        rootThreshold: parseIntArg(o.threshold, '--threshold', 1, rootKeys),
        publisherKeys,
        publisherThreshold: parseIntArg(o.publisherThreshold, '--publisher-threshold', 1, publisherKeys),
        expires: new Date(Date.now() + parseDuration(o.expires, '--expires'))
      })
      if (o.json === true) { printJson(res); return }
      process.stdout.write(`keys written to ${res.dir}:\n${res.files.map(f => `  ${f}`).join('\n')}\n` +
        `root keys: ${res.rootKeyIds.length} · publisher keys: ${res.publisherKeyIds.length} · online key: ${res.onlineKeyId.slice(0, 16)}…\n` +
        'next: give enroll.json to endpoints, seed-enroll.json to seeds; move root-*.key offline.\n')
    })
  keys.command('rotate')
    .description('sign the next root.json: new keys for the roles named, or the same keys with a new expiry')
    .requiredOption('--dir <dir>', 'the keys folder from `shoal keys init`, with its root-*.key files back from offline')
    .option('--online', 'replace the online (head-signing) key')
    .option('--publisher', 'replace the publisher keys (same number, same threshold)')
    .option('--root', 'replace the root keys (the new root is signed by the old and the new ones)')
    .option('--expires <duration>', 'how long the new root stays valid', '365d')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Examples:
  shoal keys rotate --dir ./fleet-keys --online          # a stolen or leaked online key
  shoal keys rotate --dir ./fleet-keys                   # renew the root before it expires
  shoal keys push-root --keys ./fleet-keys --seed /ip4/…/tcp/7700/p2p/<seed>

Replaced keys and the previous root.json move to retired-v<N>/. After a new online key, restart
each seed with the new seed-enroll.json; endpoints take the new root from their seeds.`)
    .action(async (o: { dir: string, online?: boolean, publisher?: boolean, root?: boolean, expires: string, json?: boolean }) => {
      const res = await rotateKeysDir({
        dir: resolve(o.dir),
        rotate: { online: o.online === true, publisher: o.publisher === true, root: o.root === true },
        expires: new Date(Date.now() + parseDuration(o.expires, '--expires'))
      })
      if (o.json === true) { printJson(res); return }
      process.stdout.write(`root.json v${res.version} written to ${res.dir} (was v${res.previousVersion}); ` +
        `${res.rotated.length > 0 ? `new keys: ${res.rotated.join(', ')}` : 'same keys, new expiry'}\n` +
        `replaced files are in ${res.retiredDir}\n` +
        `next: shoal keys push-root --keys ${res.dir} --seed <seed multiaddr>` +
        `${res.rotated.includes('online') ? '; then restart each seed with the new seed-enroll.json' : ''}; move root-*.key offline again.\n`)
    })
  keys.command('push-root')
    .description('send the keys folder\'s root.json to a seed, which checks it and serves it to endpoints')
    .requiredOption('--keys <dir>', 'the keys folder (its root.json is sent; its PeerId must be in the seed\'s "publishers" when that list is not empty)')
    .requiredOption('--seed <multiaddr>', 'the seed (…/p2p/<seed PeerId>)')
    .option('--json', 'print the seed\'s answer as JSON')
    .action(async (o: { keys: string, seed: string, json?: boolean }) => {
      const dir = resolve(o.keys)
      const keys = await loadPublisherKeys(dir)
      const version = keys.root.signed.version
      const r = await withBloblessSession(dir, o.seed, keys.fleet.networkKey, async (session) => await session.sendRoot(keys.rootBytes))
      if (o.json === true) { printJson({ sent: version, ...r }); return }
      process.stdout.write(`the seed accepted root.json v${r.version}${r.onlineChanged ? ' (new online role)' : ''}; endpoints take it at their next poll\n`)
      if (!r.signsHeads) process.stderr.write('shoal: warning: this seed\'s online key is not in the new root: restart it with the new seed-enroll.json, or its heads are refused\n')
    })
  keys.command('peer-id')
    .description('print the publisher\'s libp2p PeerId (created on first use) for a seed\'s "publishers" list')
    .requiredOption('--keys <dir>', 'the keys folder from `shoal keys init`')
    .action(async (o: { keys: string }) => {
      const key = await loadOrCreatePeerKey(resolve(o.keys))
      process.stdout.write(peerIdFromPrivateKey(key).toString() + '\n')
    })
}
