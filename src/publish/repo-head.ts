// The signed channel head of a repository (`heads/<channel>.json`, docs/protocol.md §3), so the
// repository served as is by a static-HTTP origin is a complete WAN source: endpoints with no seed
// learn releases from it. The publisher signs it with the online key of its keys folder
// (`online.key`, the same key the seeds hold), exactly as a seed would: the next sequence, the
// package's entry replaced, a short lifetime. Re-signing before it lapses is `shoal publish
// --refresh-head` (or any new publish); an origin whose head expired is a frozen mirror to endpoints.
import { readFile } from 'node:fs/promises'
import { checkHeadAdvance, decodeHead, signHead, verifyHead, type HeadEntry } from '../core/head.js'
import type { KeyPair } from '../core/keys.js'
import { decodeManifest, manifestId } from '../core/manifest.js'
import type { SignedRoot } from '../core/root.js'
import { RollbackError } from '../core/signed.js'
import { RepoLayout } from '../store/repo.js'

/** Default lifetime of a repository head: an origin is refreshed by cron or by the next publish. */
export const DEFAULT_REPO_HEAD_LIFETIME_MS = 7 * 86400_000

export interface RepoHeadOptions {
  repoDir: string
  channel: string
  onlineKey: KeyPair
  root: SignedRoot
  lifetimeMs: number
  now?: Date
  /** The package entry to set (from a just-published manifest); none = re-sign as is. */
  manifestBytes?: Uint8Array
}

export interface RepoHeadResult { path: string, channel: string, seq: number, expires: string }

async function readHead (path: string): Promise<Uint8Array | null> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/**
 * Signs the next head of `channel` into the repository. The head already there is decoded and
 * checked against the root first (a damaged or foreign file is refused, not overwritten); it may
 * have expired. A manifest whose package sequence does not move forward is ERR_ROLLBACK.
 */
export async function writeRepoHead (o: RepoHeadOptions): Promise<RepoHeadResult> {
  const repo = await RepoLayout.open(o.repoDir)
  const now = o.now ?? new Date()
  const lastBytes = await readHead(repo.headPath(o.channel))
  const last = lastBytes === null ? null : decodeHead(lastBytes)
  // Checked as of its own issue time: expiry is no reason to refuse it here, refreshing a lapsed
  // head is the point; a bad signature or another channel is.
  if (last !== null) verifyHead(last, o.root, new Date(Date.parse(last.signed.issued)), { expectChannel: o.channel })
  const packages: Record<string, HeadEntry> = { ...last?.signed.packages }
  if (o.manifestBytes !== undefined) {
    const m = decodeManifest(o.manifestBytes).signed
    const cur = packages[m.package]
    if (cur !== undefined && cur.seq >= m.seq && cur.manifest !== manifestId(o.manifestBytes)) {
      throw new RollbackError(`${m.package}@${m.version} has seq ${m.seq}, but the repository's ${o.channel} head already lists ${cur.version} with seq ${cur.seq}`)
    }
    packages[m.package] = { manifest: manifestId(o.manifestBytes), seq: m.seq, version: m.version }
  }
  const { bytes, head } = signHead({
    channel: o.channel,
    seq: (last?.signed.seq ?? 0) + 1,
    issued: now,
    expires: new Date(now.getTime() + o.lifetimeMs),
    packages,
    signers: [o.onlineKey]
  })
  if (last !== null) checkHeadAdvance(last.signed, head.signed)
  const path = await repo.writeHead(o.channel, bytes)
  return { path, channel: o.channel, seq: head.signed.seq, expires: head.signed.expires }
}
