// The installer's typed errors. Each one names the path, version or hook at fault so a fleet
// report tells an admin what to fix without a shell on the endpoint.
import { ShoalError } from '../core/errors.js'

/** A path or symlink target from a manifest that could land outside the install root. */
export class UnsafePathError extends ShoalError {
  readonly path: string
  readonly reason: string
  constructor (path: string, reason: string) {
    super('ERR_UNSAFE_PATH', `refusing unsafe path ${JSON.stringify(path.length > 200 ? path.slice(0, 200) + '…' : path)}: ${reason}`)
    this.path = path
    this.reason = reason
  }
}

/** A file tree that cannot be installed faithfully: duplicates, a file used as a folder, bad fields. */
export class InvalidTreeError extends ShoalError {
  readonly path: string
  constructor (path: string, reason: string) {
    super('ERR_INVALID_TREE', `cannot install ${JSON.stringify(path)}: ${reason}`)
    this.path = path
  }
}

/** A setuid or setgid bit in the tree while the installer was not told to allow them. */
export class UnsafeModeError extends ShoalError {
  readonly path: string
  readonly mode: number
  constructor (path: string, mode: number) {
    super('ERR_UNSAFE_MODE', `${JSON.stringify(path)} has mode 0o${mode.toString(8)} with a setuid/setgid bit; ` +
      'shoal refuses these unless the installer is created with allowSetid: true')
    this.path = path
    this.mode = mode
  }
}

/** The bytes streamed for a file do not match the manifest's size or SHA-256. */
export class FileHashMismatchError extends ShoalError {
  readonly path: string
  readonly field: 'size' | 'sha256'
  readonly expected: string
  readonly actual: string
  constructor (path: string, field: 'size' | 'sha256', expected: string | number, actual: string | number) {
    super('ERR_FILE_MISMATCH', field === 'size'
      ? `${JSON.stringify(path)}: got ${actual} bytes, the manifest says ${expected}`
      : `${JSON.stringify(path)}: SHA-256 is ${actual}, the manifest says ${expected}`)
    this.path = path
    this.field = field
    this.expected = String(expected)
    this.actual = String(actual)
  }
}

/** `writeTree` writes only into an empty or absent folder, never over existing files. */
export class TargetNotEmptyError extends ShoalError {
  readonly dir: string
  constructor (dir: string, reason: string) {
    super('ERR_TARGET_NOT_EMPTY', `cannot write a tree into ${dir}: ${reason}; give an empty or absent folder`)
    this.dir = dir
  }
}

/** What a hook run produced; shared by `runHook` results and `HookFailedError`. */
export interface HookOutcome {
  hook: 'preinstall' | 'postinstall'
  /** Exit status, or null when the shell was killed by a signal. */
  exitCode: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  /** The last bytes (about 4 KiB) of the hook's combined stdout and stderr. */
  logTail: string
}

/** A preinstall or postinstall hook exited non-zero, was killed, or timed out. */
export class HookFailedError extends ShoalError {
  readonly hook: 'preinstall' | 'postinstall'
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  readonly timedOut: boolean
  readonly logTail: string
  readonly package: string
  readonly version: string
  /** The version `current` points to after the failure (null: none); what the endpoint now runs. */
  readonly activeVersion: string | null
  constructor (o: HookOutcome & { package: string, version: string, activeVersion: string | null }) {
    const how = o.timedOut
      ? `timed out and was killed (${o.signal ?? 'exited'})`
      : o.exitCode !== null ? `exited with status ${o.exitCode}` : `was killed by ${o.signal ?? 'a signal'}`
    const now = o.activeVersion === null ? 'no version is active' : `${o.activeVersion} is active`
    super('ERR_HOOK_FAILED', `${o.hook} hook of ${o.package}@${o.version} ${how}; ${now}` +
      (o.logTail === '' ? '' : `; last output:\n${o.logTail}`))
    this.hook = o.hook
    this.exitCode = o.exitCode
    this.signal = o.signal
    this.timedOut = o.timedOut
    this.logTail = o.logTail
    this.package = o.package
    this.version = o.version
    this.activeVersion = o.activeVersion
  }
}

/** `activate` was asked for a version that is not completely installed under the root. */
export class VersionNotInstalledError extends ShoalError {
  constructor (pkg: string, version: string) {
    super('ERR_VERSION_NOT_INSTALLED', `${pkg}@${version} is not installed (no complete versions/${version}); install it first`)
  }
}

/** The install root holds something shoal did not put there (e.g. `current` is a real folder). */
export class InstallStateError extends ShoalError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_INSTALL_STATE', message, options)
  }
}

/**
 * A file of the installed tree is not what its manifest installed (changed, shortened or replaced
 * locally): an update does not read chunks from it. Caught by writeTree, which writes that file
 * from blobs instead; never reaches a caller.
 */
export class InstalledTreeChangedError extends ShoalError {
  readonly path: string
  constructor (path: string, dir: string, what: string) {
    super('ERR_INSTALLED_CHANGED', `${JSON.stringify(path)} in ${dir} ${what} since it was installed; it is written from blobs`)
    this.path = path
  }
}
