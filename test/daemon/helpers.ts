// A fleet in one process on 127.0.0.1: keys from `keys init`, a seed, endpoints, and a publisher
// that publishes into its own repo and pushes to the seed over /shoal/publish/1.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { parseConfig, type DaemonConfig } from '../../src/daemon/config.js'
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon/daemon.js'
import { createLogger } from '../../src/daemon/log.js'
import { initKeysDir, loadPublisherKeys, type PublisherKeys } from '../../src/publish/keys-dir.js'
import { publishRelease, type PublishResult } from '../../src/publish/publisher.js'
import { SeedSession, type CommitResult } from '../../src/publish/push.js'
import { BlobStore } from '../../src/store/blob-store.js'
import { RepoLayout } from '../../src/store/repo.js'
import { readFile } from 'node:fs/promises'
import { prng, textLike } from '../helpers/tree.js'

export const silent = createLogger('silent')

export class Fleet {
  readonly daemons: Daemon[] = []
  keys!: PublisherKeys
  keysDir!: string
  repo!: string
  seed!: Daemon
  private constructor (readonly dir: string) {}

  static async create (name = 'fleet', keys: Partial<Pick<Parameters<typeof initKeysDir>[0], 'rootKeys' | 'rootThreshold' | 'publisherKeys' | 'publisherThreshold'>> = {}): Promise<Fleet> {
    const f = new Fleet(await mkdtemp(join(tmpdir(), `shoal-${name}-`)))
    f.keysDir = join(f.dir, 'keys')
    f.repo = join(f.dir, 'repo')
    await initKeysDir({ dir: f.keysDir, rootKeys: 1, rootThreshold: 1, publisherKeys: 1, publisherThreshold: 1, ...keys, expires: new Date(Date.now() + 30 * 86400_000) })
    f.keys = await loadPublisherKeys(f.keysDir)
    return f
  }

  config (name: string, raw: Record<string, unknown>): DaemonConfig {
    return parseConfig({
      stateDir: join(this.dir, name),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: null,
      logLevel: 'silent',
      mdns: false,
      ...raw
    }, this.dir)
  }

  async startSeed (raw: Record<string, unknown> = {}, opts: DaemonOptions = {}): Promise<Daemon> {
    this.seed = await this.start(this.config('seed', { role: 'seed', enroll: join(this.keysDir, 'seed-enroll.json'), ...raw }), opts)
    return this.seed
  }

  get seedAddr (): string {
    return this.seed.node.getMultiaddrs()[0]!.toString()
  }

  async startEndpoint (name: string, raw: Record<string, unknown> = {}, opts: DaemonOptions = {}): Promise<Daemon> {
    return await this.start(this.config(name, {
      role: 'endpoint', enroll: join(this.keysDir, 'enroll.json'), seeds: [this.seedAddr], pollInterval: 1000, hookTimeout: 20_000, ...raw
    }), opts)
  }

  async start (cfg: DaemonConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    const d = await startDaemon(cfg, { logger: silent, ...opts })
    this.daemons.push(d)
    return d
  }

  async stopDaemon (d: Daemon): Promise<void> {
    await d.stop()
    const i = this.daemons.indexOf(d)
    if (i >= 0) this.daemons.splice(i, 1)
  }

  /** Publishes `input` into the repo (not pushed). */
  async publish (input: string, version: string, extra: Partial<Parameters<typeof publishRelease>[0]> = {}): Promise<PublishResult> {
    return await publishRelease({
      input, package: 'app', version, channel: 'stable', repoDir: this.repo,
      signers: this.keys.publisherKeys, contentKey: this.keys.fleet.contentKey,
      expires: new Date(Date.now() + 86400_000), threads: 1, ...extra
    })
  }

  /** Sends a published manifest to the seed, as `shoal publish --to` does. */
  async push (manifestPath: string, privateKey?: PrivateKey): Promise<CommitResult> {
    const s = await SeedSession.open({ seed: this.seedAddr, networkKey: this.keys.fleet.networkKey, privateKey: privateKey ?? await generateKeyPair('Ed25519'), blobs: await BlobStore.open(this.repo) })
    try {
      return (await s.publish(await readFile(manifestPath), { contentKey: this.keys.fleet.contentKey, repo: await RepoLayout.open(this.repo) })).commit
    } finally {
      await s.close()
    }
  }

  async cleanup (): Promise<void> {
    for (const d of this.daemons.splice(0).reverse()) await d.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** A folder of generated files: text that changes a little between versions, plus random binary. */
export async function makeTree (dir: string, version: number, opts: { binaryBytes?: number, textBytes?: number } = {}): Promise<string> {
  await mkdir(join(dir, 'lib'), { recursive: true })
  await mkdir(join(dir, 'bin'), { recursive: true })
  const text = textLike(1, opts.textBytes ?? 200_000).toString()
  // each version edits the text in one place and adds a small file
  const edited = text.slice(0, 50_000) + `\n// version ${version}\n` + text.slice(50_000 + version * 10)
  await writeFile(join(dir, 'lib', 'main.js'), edited)
  await writeFile(join(dir, 'bin', 'tool'), prng(7)(opts.binaryBytes ?? 300_000), { mode: 0o755 })
  await writeFile(join(dir, 'VERSION'), `${version}\n`)
  await writeFile(join(dir, 'lib', `notes-${version}.txt`), textLike(100 + version, 5_000))
  return dir
}

/** Polls `cond` until it holds or `ms` pass. */
export async function until (cond: () => Promise<boolean> | boolean, ms = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await new Promise(r => setTimeout(r, 100))
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`)
}

export async function installedVersion (d: Daemon): Promise<string | null> {
  const s = await d.status()
  return s.packages.find(p => p.name === 'app')?.installed ?? null
}
