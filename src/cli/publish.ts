import type { Command } from 'commander'
import { join, resolve } from 'node:path'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { lastSeq, publishRelease, type PublishResult } from '../publish/publisher.js'
import { loadPublisherKeys } from '../publish/keys-dir.js'
import { SeedSession, type CommitResult, type OfferResult } from '../publish/push.js'
import { loadOrCreatePeerKey } from '../net/peer-key.js'
import { BlobStore } from '../store/blob-store.js'
import { RepoLayout } from '../store/repo.js'
import { writeRepoHead, type RepoHeadResult } from '../publish/repo-head.js'
import { formatBytes, parseDuration, parseIntArg, parseSize, printJson, progressBar } from './common.js'
import { InvalidArgumentError } from '../core/errors.js'
import { parseRolloutSpec } from '../rollout/policy.js'

interface PublishFlags {
  name?: string
  version?: string
  keys: string
  repo?: string
  to?: string
  channel: string
  seq?: string
  expires: string
  preinstall?: string
  postinstall?: string
  notes?: string
  rollout?: string
  minChunk?: string
  avgChunk?: string
  maxChunk?: string
  brotliQuality: string
  threads?: string
  deltaReleases: string
  headLifetime: string
  head: boolean
  refreshHead?: boolean
  json?: boolean
}

async function readText (path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new InvalidArgumentError(`${flag}: cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
}

export function formatPublish (r: PublishResult): string {
  return `published ${r.package}@${r.version} to channel ${r.channel} (seq ${r.seq})\n` +
    `  files ${r.files} · chunks ${r.chunks} (${r.uniqueChunks} distinct, ${r.newChunks} new)\n` +
    `  input ${formatBytes(r.inputBytes)} · blobs ${formatBytes(r.blobBytes)} · new blobs ${formatBytes(r.newBlobBytes)} · ${r.mbPerSec.toFixed(1)} MB/s\n` +
    `  manifest ${r.manifestPath} (${r.manifestBytes} bytes, id ${r.manifestId})\n`
}

function formatHead (h: RepoHeadResult | null): string {
  return h === null
    ? '  no channel head written: the keys folder has no online.key (an origin needs one; a seed signs its own)\n'
    : `  channel ${h.channel} head seq ${h.seq}, expires ${h.expires}: ${h.path}\n`
}

function formatPush (seed: string, offer: OfferResult, c: CommitResult): string {
  if (c.already) return `the seed ${seed} already serves ${c.package}@${c.version}; nothing sent\n`
  return `sent to seed ${seed}: ${c.fetched} blob(s), ${c.fetchedBytes} bytes (${offer.missing} were missing there)\n` +
    `  channel ${c.channel} head is now seq ${c.headSeq}\n`
}

export function registerPublish (program: Command): void {
  program.command('publish')
    .description('chunk, compress, encrypt and sign a release into a repository folder')
    .argument('[input]', 'a folder, .tar, .tgz/.tar.gz or .zip (archives are unpacked first); not with --refresh-head')
    .option('--name <package>', 'package name ([a-z0-9][a-z0-9._-]*); required unless --refresh-head')
    .option('--version <semver>', 'release version (semantic version); required unless --refresh-head')
    .requiredOption('--keys <dir>', 'the keys folder from `shoal keys init`')
    .option('--repo <dir>', 'repository folder to write blobs and the manifest into (created if absent); required without --to')
    .option('--to <multiaddr>', 'also send the release to this seed (…/p2p/<seed PeerId>); only blobs it lacks travel')
    .option('--channel <name>', 'release channel', 'stable')
    .option('--seq <n>', 'manifest sequence number (default: one more than the highest in the repo)')
    .option('--expires <duration>', 'manifest lifetime', '365d')
    .option('--preinstall <script>', 'shell script run before the switch (signed into the manifest)')
    .option('--postinstall <script>', 'shell script run after the switch')
    .option('--notes <file>', 'release notes (text, sealed in the payload) given to the endpoints\' notify command before install')
    .option('--rollout <spec>', 'rollout policy, e.g. "canary:now,pilot:+1d/deadline=+3d,broad:approval,window=22:00-06:00" (docs/rollout.md §2.2); default: every ring installs at once')
    .option('--min-chunk <size>', 'FastCDC minimum chunk size (default 4KiB)')
    .option('--avg-chunk <size>', 'FastCDC average chunk size (default 16KiB)')
    .option('--max-chunk <size>', 'FastCDC maximum chunk size (default 64KiB)')
    .option('--brotli-quality <q>', 'per-chunk brotli quality 0–11', '5')
    .option('--threads <n>', 'sealing worker threads (default: all cores)')
    .option('--delta-releases <n>', 'also publish delta blobs against this many previous releases of the package in the repo (0 = off)', '2')
    .option('--head-lifetime <duration>', 'lifetime of the signed channel head written to --repo (heads/<channel>.json, for static-HTTP origins)', '7d')
    .option('--no-head', 'do not sign a channel head into --repo (the repo is only pushed to seeds)')
    .option('--refresh-head', 'only re-sign the channel head of --repo for --channel with a new lifetime (cron this for an origin); no input')
    .option('--json', 'print the result as JSON (with deltaBlobs, deltaBytes, fetchBytesFromPrevious)')
    .addHelpText('after', `
Examples:
  shoal publish ./build --name hello --version 1.0.0 --keys ./fleet-keys --repo ./repo
  shoal publish app-2.1.0.tgz --name app --version 2.1.0 --keys ./fleet-keys --repo ./repo --json
  shoal publish ./build --name hello --version 1.0.1 --keys ./fleet-keys --to /ip4/10.0.0.5/tcp/7700/p2p/12D3KooW…
  shoal publish ./build --name hello --version 1.1.0 --keys ./fleet-keys --to /ip4/10.0.0.5/tcp/7700/p2p/12D3KooW… \
      --rollout "canary:now,pilot:+1d,broad:approval/deadline=+14d" --notes CHANGES.txt
  shoal publish --refresh-head --repo ./repo --keys ./fleet-keys --channel stable

With --repo and the keys folder's online.key, the channel head is signed into the repo too, so
the folder served by any static HTTP server (nginx root, S3, a CDN) is an origin (docs/protocol.md
§3).

With --to, the publisher's PeerId (\`shoal keys peer-id --keys <dir>\`) must be in the seed's
"publishers" list when that list is not empty.`)
    .action(async (input: string | undefined, o: PublishFlags) => {
      if (o.repo === undefined && o.to === undefined) throw new InvalidArgumentError('give --repo <dir>, --to <seed multiaddr>, or both')
      // Parsed first: a bad spec is a usage error before any key is read or byte is sealed.
      const rollout = o.rollout !== undefined ? parseRolloutSpec(o.rollout, new Date()) : undefined
      const keysDir = resolve(o.keys)
      const keys = await loadPublisherKeys(keysDir)
      const headLifetime = parseDuration(o.headLifetime, '--head-lifetime')
      if (o.refreshHead === true) {
        if (input !== undefined) throw new InvalidArgumentError('--refresh-head takes no input: it only re-signs the repo\'s channel head')
        if (o.repo === undefined || o.to !== undefined) throw new InvalidArgumentError('--refresh-head needs --repo <dir> and no --to')
        if (keys.onlineKey === null) throw new InvalidArgumentError(`${keysDir} has no online.key of this root: it cannot sign a channel head`)
        const h = await writeRepoHead({ repoDir: resolve(o.repo), channel: o.channel, onlineKey: keys.onlineKey, root: keys.root, lifetimeMs: headLifetime })
        if (o.json === true) printJson(h)
        else process.stdout.write(formatHead(h).trimStart())
        return
      }
      if (input === undefined) throw new InvalidArgumentError('give the input folder or archive to publish')
      if (o.name === undefined || o.version === undefined) throw new InvalidArgumentError('give --name <package> and --version <semver>')
      const name = o.name
      const version = o.version
      const chunker: Record<string, number> = {}
      if (o.minChunk !== undefined) chunker.minSize = parseSize(o.minChunk, '--min-chunk')
      if (o.avgChunk !== undefined) chunker.avgSize = parseSize(o.avgChunk, '--avg-chunk')
      if (o.maxChunk !== undefined) chunker.maxSize = parseSize(o.maxChunk, '--max-chunk')
      const hooks: { preinstall?: string, postinstall?: string } = {}
      if (o.preinstall !== undefined) hooks.preinstall = await readText(o.preinstall, '--preinstall')
      if (o.postinstall !== undefined) hooks.postinstall = await readText(o.postinstall, '--postinstall')
      const tempRepo = o.repo === undefined ? await mkdtemp(join(tmpdir(), 'shoal-publish-')) : undefined
      const repoDir = resolve(o.repo ?? tempRepo as string)
      let session: SeedSession | undefined
      const bar = progressBar('publish', 0, o.json !== true)
      let total = -1
      try {
        let seq = o.seq !== undefined ? parseIntArg(o.seq, '--seq', 1, Number.MAX_SAFE_INTEGER) : undefined
        if (o.to !== undefined) {
          session = await SeedSession.open({
            seed: o.to, networkKey: keys.fleet.networkKey, privateKey: await loadOrCreatePeerKey(keysDir), blobs: await BlobStore.open(repoDir)
          })
          // The seed's head decides what "newer" means; the local repo may be fresh or behind.
          if (seq === undefined) {
            const remote = await session.latest(name, o.channel)
            const local = await lastSeq(await RepoLayout.create(repoDir), name)
            seq = Math.max(remote.seq, local) + 1
          }
        }
        const res = await publishRelease({
          input: resolve(input),
          package: name,
          version,
          channel: o.channel,
          repoDir,
          signers: keys.publisherKeys,
          contentKey: keys.fleet.contentKey,
          ...(seq !== undefined ? { seq } : {}),
          expires: new Date(Date.now() + parseDuration(o.expires, '--expires')),
          chunker,
          brotliQuality: parseIntArg(o.brotliQuality, '--brotli-quality', 0, 11),
          ...(o.threads !== undefined ? { threads: parseIntArg(o.threads, '--threads', 1, 64) } : {}),
          hooks,
          deltaReleases: parseIntArg(o.deltaReleases, '--delta-releases', 0, 16),
          ...(o.notes !== undefined ? { notes: await readText(o.notes, '--notes') } : {}),
          ...(rollout !== undefined ? { rollout } : {}),
          onProgress: (done, t) => {
            if (t !== total) { total = t; bar.setTotal(t) }
            bar.update(done)
          }
        })
        bar.stop()
        let head: RepoHeadResult | null | undefined
        if (tempRepo === undefined && o.head) {
          head = keys.onlineKey === null
            ? null
            : await writeRepoHead({ repoDir, channel: o.channel, onlineKey: keys.onlineKey, root: keys.root, lifetimeMs: headLifetime, manifestBytes: await readFile(res.manifestPath) })
        }
        let pushed: { offer: OfferResult, commit: CommitResult, patches: number } | undefined
        if (session !== undefined) {
          pushed = await session.publish(await readFile(res.manifestPath), { contentKey: keys.fleet.contentKey, repo: await RepoLayout.open(repoDir) })
        }
        const withHead = head === undefined ? res : { ...res, head }
        if (o.json === true) printJson(pushed === undefined ? withHead : { ...withHead, seed: { to: o.to, ...pushed.commit, missingBefore: pushed.offer.missing, payloadPatches: pushed.patches } })
        else {
          process.stdout.write(tempRepo === undefined ? formatPublish(res) : formatPublish(res).replace(/\n {2}manifest .*\n$/, '\n'))
          if (head !== undefined) process.stdout.write(formatHead(head))
          if (pushed !== undefined) process.stdout.write(formatPush(o.to as string, pushed.offer, pushed.commit))
        }
      } finally {
        bar.stop()
        await session?.close()
        if (tempRepo !== undefined) await rm(tempRepo, { recursive: true, force: true })
      }
    })
}
