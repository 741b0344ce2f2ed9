// The installer: versions side by side under an install root, one atomically switched `current`
// symlink per package, hooks around the switch, and a `recover` that turns whatever a crash left
// into "the old tree or the new one". docs/install.md walks through the argument step by step.
import { lstat, mkdir, readFile, readdir, readlink, rename, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { InvalidArgumentError } from '../core/errors.js'
import { HookFailedError, InstallStateError, VersionNotInstalledError } from './errors.js'
import { fsyncDir, randomSuffix, removeDurably, replaceSymlink, writeFileAtomic } from './durable.js'
import { hookEnv, runHook, type HookName, type HookResult } from './hooks.js'
import { safeName } from './paths.js'
import { planTree, writeTree, type InstallSpec, type StageProgress } from './stage.js'

export interface InstallerOptions {
  /** Keep setuid/setgid bits in installed trees (refused by default). */
  allowSetid?: boolean
  /** SIGTERM → SIGKILL delay for a hook's process group. Default 5 s. */
  hookKillGraceMs?: number
  /** Bytes of hook output kept for reports. Default 4 KiB. */
  hookLogTailBytes?: number
  /** Where hook script files are written (a private 0700 folder each run). Default: the package's folder. */
  hookTmpDir?: string
}

export interface InstallOptions {
  /** Deadline per hook; the hook's process group is killed when it passes. */
  hookTimeoutMs: number
  /** Extra variables for hooks (upper-case names; cannot replace PATH, LANG or SHOAL_*). */
  env?: Record<string, string>
  onProgress?: (p: StageProgress) => void
}

export interface InstallResult {
  status: 'installed' | 'noop'
  package: string
  version: string
  /** The version that was active before (null: none); for a no-op, the version itself. */
  previous: string | null
  /** The installed tree: `<root>/<package>/versions/<version>`. */
  dir: string
  files: number
  bytes: number
  /** Files taken from the installed version by `spec.reuse` (verified), and guesses that failed. */
  reused: number
  reuseFailed: number
  hooks: { preinstall?: HookResult, postinstall?: HookResult }
}

export interface RecoverResult {
  package: string
  /** What `current` points to afterwards. */
  current: string | null
  /** Leftovers removed: staging and trash folders, temporary links and files, incomplete versions. */
  removed: string[]
  /** An install that switched `current` but never confirmed its postinstall, undone by recover. */
  interrupted?: { version: string, restored: string | null }
  /** `current` pointed at nothing usable and was removed. */
  droppedCurrent?: string
}

interface Pending { version: string, previous: string | null }

const CURRENT = 'current'
const CURRENT_TMP = 'current.tmp-'
const VERSIONS = 'versions'
const PENDING = 'pending.json'
const STAGING = '.staging-'
const TRASH = '.trash-'
// runHook's private script folders (mkdtemp adds six characters); in the package folder by default
// so a crash mid-hook leaves nothing in /tmp that recover cannot find.
const HOOK_TMP = 'shoal-hook-'
const TMP_FILE = /\.tmp-[0-9a-f]{12}$/
const MARKER = /^\.(.+)\.complete$/

// One operation per package at a time, across every Installer in this process.
const locks = new Map<string, Promise<void>>()

async function withLock<T> (key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve()
  let release!: () => void
  const mine = new Promise<void>(r => { release = r })
  const chained = prev.then(() => mine)
  locks.set(key, chained)
  await prev
  try {
    return await fn()
  } finally {
    release()
    if (locks.get(key) === chained) locks.delete(key)
  }
}

function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}

/**
 * Installs packages under `root`:
 * `<root>/<package>/versions/<version>/` holds each tree, `versions/.<version>.complete` marks a
 * tree as complete (written last), `<root>/<package>/current` is a relative symlink to
 * `versions/<version>`. One process should own a root; calls for one package are serialised.
 */
export class Installer {
  readonly root: string
  private readonly opts: InstallerOptions

  constructor (root: string, opts: InstallerOptions = {}) {
    this.root = resolve(root)
    this.opts = opts
  }

  /** `<root>/<package>/versions/<version>`. */
  dirOf (pkg: string, version: string): string {
    return join(this.pkgDir(pkg), VERSIONS, safeName('version', version))
  }

  /**
   * Stage, verify, preinstall, switch, postinstall. The same version already current is a no-op.
   * A failing preinstall leaves `current` alone; a failing postinstall switches back to the
   * previous version (or removes `current` if there was none). Either throws `HookFailedError`;
   * a bad tree throws before anything is switched (`UnsafePathError`, `FileHashMismatchError`, …).
   */
  async install (spec: InstallSpec, opts: InstallOptions): Promise<InstallResult> {
    const pkg = safeName('package', spec.package)
    const version = safeName('version', spec.version)
    // Everything that can be refused without the disk is refused here, before any write.
    const plan = planTree(spec.files, { allowSetid: this.opts.allowSetid })
    if (!(opts.hookTimeoutMs > 0)) throw new InvalidArgumentError(`hookTimeoutMs must be a positive number, got ${opts.hookTimeoutMs}`)
    const envFor = (hook: HookName, previous: string | null): Record<string, string> =>
      hookEnv({ hook, package: pkg, version, installDir: this.dirOf(pkg, version), previousVersion: previous }, opts.env)
    envFor('preinstall', null) // validates opts.env now
    return await withLock(this.lockKey(pkg), async () => {
      await this.recoverLocked(pkg)
      const previous = await this.readCurrent(pkg)
      const dir = this.dirOf(pkg, version)
      const result: InstallResult = { status: 'noop', package: pkg, version, previous, dir, files: plan.files.length, bytes: plan.totalBytes, reused: 0, reuseFailed: 0, hooks: {} }
      if (previous === version) return result
      result.status = 'installed'

      const pdir = this.pkgDir(pkg)
      const vdir = join(pdir, VERSIONS)
      await mkdir(vdir, { recursive: true, mode: 0o755 })
      await this.removeVersion(pkg, version) // a stale, non-current copy: rebuild rather than trust
      const staging = join(pdir, `${STAGING}${version}-${randomSuffix()}`)
      const written = await writeTree(staging, spec, { allowSetid: this.opts.allowSetid, onProgress: opts.onProgress })
      result.reused = written.reused
      result.reuseFailed = written.reuseFailed
      await rename(staging, dir)
      await fsyncDir(pdir)
      await fsyncDir(vdir)
      await writeFileAtomic(this.markerOf(pkg, version), JSON.stringify({ package: pkg, version, files: plan.files.length, bytes: plan.totalBytes, completedAt: new Date().toISOString() }) + '\n')

      if (spec.hooks?.preinstall !== undefined) {
        const r = await this.hook(pkg, 'preinstall', spec.hooks.preinstall, dir, envFor('preinstall', previous), opts.hookTimeoutMs)
        result.hooks.preinstall = r
        if (!r.ok) {
          await this.removeVersion(pkg, version)
          throw new HookFailedError({ ...r, package: pkg, version, activeVersion: previous })
        }
      }

      // The journal goes down before the switch: if we die before postinstall confirms, recover
      // knows what to restore.
      await writeFileAtomic(join(pdir, PENDING), JSON.stringify({ version, previous } satisfies Pending) + '\n')
      await this.switchTo(pkg, version)

      if (spec.hooks?.postinstall !== undefined) {
        const r = await this.hook(pkg, 'postinstall', spec.hooks.postinstall, dir, envFor('postinstall', previous), opts.hookTimeoutMs)
        result.hooks.postinstall = r
        if (!r.ok) {
          await this.switchTo(pkg, previous)
          await removeDurably(join(pdir, PENDING))
          await this.removeVersion(pkg, version)
          throw new HookFailedError({ ...r, package: pkg, version, activeVersion: previous })
        }
      }
      await removeDurably(join(pdir, PENDING))
      return result
    })
  }

  /** The version `current` points to, if that version is complete; otherwise null. */
  async current (pkg: string): Promise<string | null> {
    const v = await this.readCurrent(safeName('package', pkg))
    if (v === null || v === '' || !(await this.isComplete(pkg, v))) return null
    return v
  }

  /** Complete versions present on disk, sorted by name. */
  async versions (pkg: string): Promise<string[]> {
    const out: string[] = []
    for (const name of await this.versionDirs(safeName('package', pkg))) if (await this.isComplete(pkg, name)) out.push(name)
    return out.sort()
  }

  /** Packages with a folder under the root. */
  async packages (): Promise<string[]> {
    let names: string[]
    try { names = await readdir(this.root) } catch (err) { if (errno(err) === 'ENOENT') return []; throw err }
    const out: string[] = []
    for (const n of names) {
      if (!/^[A-Za-z0-9_+~@-][A-Za-z0-9._+~@-]{0,127}$/.test(n)) continue
      if ((await lstat(join(this.root, n))).isDirectory()) out.push(n)
    }
    return out.sort()
  }

  /**
   * Switch `current` to a version already installed (rollback). Runs no hooks: they belong to the
   * install that brought the version. Returns the version active before.
   */
  async activate (pkg: string, version: string): Promise<{ previous: string | null }> {
    safeName('package', pkg)
    safeName('version', version)
    return await withLock(this.lockKey(pkg), async () => {
      await this.recoverLocked(pkg)
      if (!(await this.isComplete(pkg, version))) throw new VersionNotInstalledError(pkg, version)
      const previous = await this.readCurrent(pkg)
      if (previous !== version) await this.switchTo(pkg, version)
      return { previous }
    })
  }

  /** Delete every version except `current` and those in `keep`. Returns the versions removed. */
  async prune (pkg: string, keep: readonly string[]): Promise<string[]> {
    safeName('package', pkg)
    return await withLock(this.lockKey(pkg), async () => {
      await this.recoverLocked(pkg)
      const cur = await this.readCurrent(pkg)
      const removed: string[] = []
      for (const v of await this.versionDirs(pkg)) {
        if (v === cur || keep.includes(v)) continue
        await this.removeVersion(pkg, v)
        removed.push(v)
      }
      return removed
    })
  }

  /**
   * Run at daemon start (and before every install): remove staging and trash folders, temporary
   * links and files, and versions without their completion marker; undo an install whose
   * postinstall never confirmed; make sure `current` is absent or points to a complete version.
   */
  async recover (pkg: string): Promise<RecoverResult> {
    safeName('package', pkg)
    return await withLock(this.lockKey(pkg), async () => await this.recoverLocked(pkg))
  }

  /** `recover` for every package under the root. */
  async recoverAll (): Promise<RecoverResult[]> {
    const out: RecoverResult[] = []
    for (const p of await this.packages()) out.push(await this.recover(p))
    return out
  }

  private async recoverLocked (pkg: string): Promise<RecoverResult> {
    const pdir = this.pkgDir(pkg)
    const res: RecoverResult = { package: pkg, current: null, removed: [] }
    let names: string[]
    try { names = await readdir(pdir) } catch (err) { if (errno(err) === 'ENOENT') return res; throw err }

    // 1. Leftovers of interrupted steps: nothing reads them, so they simply go.
    for (const n of names) {
      if (n.startsWith(STAGING) || n.startsWith(TRASH) || n.startsWith(CURRENT_TMP) || n.startsWith(HOOK_TMP) || (n.startsWith('.') && TMP_FILE.test(n))) {
        await removeDurably(join(pdir, n))
        res.removed.push(n)
      }
    }
    const vdir = join(pdir, VERSIONS)
    let vnames: string[] = []
    try { vnames = await readdir(vdir) } catch (err) { if (errno(err) !== 'ENOENT') throw err }
    for (const n of vnames) {
      if (n.startsWith('.') && TMP_FILE.test(n)) { await removeDurably(join(vdir, n)); res.removed.push(`${VERSIONS}/${n}`) }
    }

    // 2. An install that switched but did not confirm: its postinstall may have half-run.
    const pending = await this.readPending(pkg)
    let cur = await this.readCurrent(pkg)
    if (pending !== null) {
      if (cur === pending.version) {
        const back = pending.previous !== null && await this.isComplete(pkg, pending.previous) ? pending.previous : null
        await this.switchTo(pkg, back)
        await this.removeVersion(pkg, pending.version)
        res.interrupted = { version: pending.version, restored: back }
        res.removed.push(`${VERSIONS}/${pending.version}`)
        cur = back
      }
      await removeDurably(join(pdir, PENDING))
    }

    // 3. `current` must name a complete version, or not exist.
    if (cur !== null && (cur === '' || !(await this.isComplete(pkg, cur)))) {
      res.droppedCurrent = cur === '' ? await readlink(join(pdir, CURRENT)) : cur
      await this.switchTo(pkg, null)
      cur = null
    }
    res.current = cur

    // 4. Versions without their marker were never finished (or were being deleted); markers
    //    without a version are orphans.
    const dirs = new Set(await this.versionDirs(pkg))
    for (const v of dirs) {
      if (!(await this.isComplete(pkg, v))) {
        await this.removeVersion(pkg, v)
        res.removed.push(`${VERSIONS}/${v}`)
      }
    }
    for (const n of await readdir(vdir).catch(() => [] as string[])) {
      const m = MARKER.exec(n)
      if (m !== null && !dirs.has(m[1] as string)) {
        await removeDurably(join(vdir, n))
        res.removed.push(`${VERSIONS}/${n}`)
      }
    }
    return res
  }

  private pkgDir (pkg: string): string {
    return join(this.root, safeName('package', pkg))
  }

  private markerOf (pkg: string, version: string): string {
    return join(this.pkgDir(pkg), VERSIONS, `.${version}.complete`)
  }

  private lockKey (pkg: string): string {
    return `${this.root}\0${pkg}`
  }

  /** The version named by `current`; '' if it is a symlink shoal did not make; null if absent. */
  private async readCurrent (pkg: string): Promise<string | null> {
    const link = join(this.pkgDir(pkg), CURRENT)
    let st
    try { st = await lstat(link) } catch (err) { if (errno(err) === 'ENOENT') return null; throw err }
    if (!st.isSymbolicLink()) throw new InstallStateError(`${link} is not a symlink; shoal will not replace it — move it away`)
    const m = /^versions\/([^/]+)$/.exec(await readlink(link))
    if (m === null) return ''
    try { return safeName('version', m[1] as string) } catch { return '' }
  }

  private async readPending (pkg: string): Promise<Pending | null> {
    let text: string
    try { text = await readFile(join(this.pkgDir(pkg), PENDING), 'utf8') } catch (err) { if (errno(err) === 'ENOENT') return null; throw err }
    try {
      const p = JSON.parse(text) as Pending
      return { version: safeName('version', p.version), previous: p.previous === null ? null : safeName('version', p.previous) }
    } catch {
      // Written atomically, so a bad one was not written by us; the `current` checks still apply.
      return null
    }
  }

  private async isComplete (pkg: string, version: string): Promise<boolean> {
    try {
      const [d, m] = await Promise.all([lstat(this.dirOf(pkg, version)), lstat(this.markerOf(pkg, version))])
      return d.isDirectory() && m.isFile()
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return false
      throw err
    }
  }

  private async versionDirs (pkg: string): Promise<string[]> {
    let names: string[]
    try { names = await readdir(join(this.pkgDir(pkg), VERSIONS)) } catch (err) { if (errno(err) === 'ENOENT') return []; throw err }
    return names.filter(n => !n.startsWith('.'))
  }

  /** Point `current` at a version (atomic rename of a fresh link), or remove it (null). */
  private async switchTo (pkg: string, version: string | null): Promise<void> {
    const link = join(this.pkgDir(pkg), CURRENT)
    if (version === null) {
      try { await unlink(link) } catch (err) { if (errno(err) !== 'ENOENT') throw err }
      await fsyncDir(this.pkgDir(pkg))
      return
    }
    await replaceSymlink(link, `${VERSIONS}/${safeName('version', version)}`, CURRENT_TMP)
  }

  /**
   * Delete a version so that no crash leaves a half-deleted tree that looks complete: the marker
   * goes first, then the tree is renamed out of `versions/` in one step, then deleted.
   */
  private async removeVersion (pkg: string, version: string): Promise<void> {
    const pdir = this.pkgDir(pkg)
    try { await unlink(this.markerOf(pkg, version)); await fsyncDir(join(pdir, VERSIONS)) } catch (err) { if (errno(err) !== 'ENOENT') throw err }
    const trash = join(pdir, `${TRASH}${randomSuffix()}`)
    try {
      await rename(this.dirOf(pkg, version), trash)
    } catch (err) {
      if (errno(err) === 'ENOENT') return
      throw err
    }
    await fsyncDir(join(pdir, VERSIONS))
    await removeDurably(trash)
  }

  private async hook (pkg: string, name: HookName, script: string, cwd: string, env: Record<string, string>, timeoutMs: number): Promise<HookResult> {
    return await runHook(script, {
      hook: name,
      cwd,
      env,
      timeoutMs,
      killGraceMs: this.opts.hookKillGraceMs,
      logTailBytes: this.opts.hookLogTailBytes,
      tmpDir: this.opts.hookTmpDir ?? this.pkgDir(pkg)
    })
  }
}
