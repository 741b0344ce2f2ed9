import type { Command } from 'commander'
import { resolve } from 'node:path'
import { initKeysDir } from '../publish/keys-dir.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { parseDuration, parseIntArg, printJson } from './common.js'

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
  keys.command('peer-id')
    .description('print the publisher\'s libp2p PeerId (created on first use) for a seed\'s "publishers" list')
    .requiredOption('--keys <dir>', 'the keys folder from `shoal keys init`')
    .action(async (o: { keys: string }) => {
      const key = await loadOrCreatePeerKey(resolve(o.keys))
      process.stdout.write(peerIdFromPrivateKey(key).toString() + '\n')
    })
}
