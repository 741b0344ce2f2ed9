// Every path and symlink target in a manifest is hostile until proven otherwise: shoal writes as
// root, so one `../` or one symlink pointing out of the tree would let a publisher (or whoever holds
// a stolen key) write anywhere. These checks are pure: they run on the whole file list before
// anything touches the disk.
import { join, sep } from 'node:path'
import { UnsafePathError } from './errors.js'

export const MAX_PATH_BYTES = 4096
export const MAX_SEGMENT_BYTES = 255
/** Linux gives up after 40 symlinks in one lookup (ELOOP); a chain longer than that is refused. */
const MAX_SYMLINK_HOPS = 40

// C0 controls, DEL and lone UTF-16 surrogates (which would silently become U+FFFD on disk, so two
// distinct manifest paths could name one file).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x1f\x7f]/
const LONE_SURROGATE = /\p{Cs}/u

/**
 * Returns `p` unchanged if it is a canonical relative POSIX path: no leading `/`, no empty, `.` or
 * `..` segment, no NUL, backslash or control character, at most 4096 bytes and 255 bytes per
 * segment. Anything else throws `UnsafePathError`: we refuse rather than normalise, so the path
 * that is checked is the path that is written.
 */
export function safeRelativePath (p: string): string {
  if (typeof p !== 'string') throw new UnsafePathError(String(p), 'not a string')
  if (p === '') throw new UnsafePathError(p, 'empty path')
  if (p.includes('\0')) throw new UnsafePathError(p, 'contains a NUL byte')
  if (p.includes('\\')) throw new UnsafePathError(p, 'contains a backslash')
  if (CONTROL.test(p)) throw new UnsafePathError(p, 'contains a control character')
  if (LONE_SURROGATE.test(p)) throw new UnsafePathError(p, 'is not well-formed Unicode')
  if (p.startsWith('/')) throw new UnsafePathError(p, 'is absolute')
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) throw new UnsafePathError(p, `is longer than ${MAX_PATH_BYTES} bytes`)
  for (const seg of p.split('/')) {
    if (seg === '') throw new UnsafePathError(p, 'has an empty segment (`//` or a trailing `/`)')
    if (seg === '.') throw new UnsafePathError(p, 'has a `.` segment')
    if (seg === '..') throw new UnsafePathError(p, 'has a `..` segment')
    if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES) throw new UnsafePathError(p, `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`)
  }
  return p
}

/** The absolute path of `rel` under `root`, after `safeRelativePath(rel)`; never outside `root`. */
export function resolveInside (root: string, rel: string): string {
  const safe = safeRelativePath(rel)
  const abs = join(root, ...safe.split('/'))
  const base = root.endsWith(sep) ? root : root + sep
  // Unreachable after safeRelativePath; kept so a future change to the rules cannot open a hole.
  if (!abs.startsWith(base)) throw new UnsafePathError(rel, `resolves outside ${root}`)
  return abs
}

/**
 * A package or version name used as one folder name in the install layout: 1–128 bytes of
 * `[A-Za-z0-9._+~@-]`, not starting with `.` (dot-names are the installer's own bookkeeping).
 */
export function safeName (kind: 'package' | 'version', name: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_+~@-][A-Za-z0-9._+~@-]{0,127}$/.test(name)) {
    throw new UnsafePathError(String(name), `is not a usable ${kind} name (1–128 of A–Z a–z 0–9 . _ + ~ @ -, not starting with a dot)`)
  }
  return name
}

/**
 * A symlink's target on its own: relative, non-empty, no NUL or control character, and lexically
 * inside the package (`dirname(path)/target`, normalised, does not climb above the root).
 */
export function checkSymlinkTarget (path: string, target: string): void {
  const what = `${path} -> ${String(target)}`
  if (typeof target !== 'string' || target === '') throw new UnsafePathError(what, 'symlink has no target')
  if (target.includes('\0') || CONTROL.test(target)) throw new UnsafePathError(what, 'symlink target contains a NUL or control character')
  if (LONE_SURROGATE.test(target)) throw new UnsafePathError(what, 'symlink target is not well-formed Unicode')
  if (target.startsWith('/')) throw new UnsafePathError(what, 'symlink target is absolute')
  if (Buffer.byteLength(target, 'utf8') > MAX_PATH_BYTES) throw new UnsafePathError(what, `symlink target is longer than ${MAX_PATH_BYTES} bytes`)
  const depth = path.split('/').length - 1
  let level = depth
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') {
      level--
      if (level < 0) throw new UnsafePathError(what, 'symlink target points outside the package')
    } else {
      level++
    }
  }
}

export interface TreeEntryShape { path: string, type: 'file' | 'dir' | 'symlink', target?: string }

/**
 * Checks every symlink the way the kernel will resolve it, following the tree's other symlinks:
 * `d/s -> ..` and `e -> d/s/..` each look harmless alone, but `e` lands one level above the root.
 * A lookup that reaches a missing name or a file stops there (ENOENT/ENOTDIR at run time), so it
 * cannot escape; a chain of more than 40 links is refused. Paths must already be safe.
 */
export function checkTreeSymlinks (entries: readonly TreeEntryShape[]): void {
  const byPath = new Map<string, TreeEntryShape>()
  for (const e of entries) byPath.set(e.path, e)
  const links = entries.filter(e => e.type === 'symlink')
  // Every target is checked on its own first, so the walk below only ever sees relative targets.
  for (const e of links) checkSymlinkTarget(e.path, e.target as string)
  for (const e of links) resolveInTree(e, byPath)
}

function resolveInTree (link: TreeEntryShape, byPath: Map<string, TreeEntryShape>): void {
  const what = `${link.path} -> ${String(link.target)}`
  const dir = link.path.split('/').slice(0, -1)
  let todo = splitTarget(link.target as string)
  let hops = 1
  while (todo.length > 0) {
    const seg = todo.shift() as string
    if (seg === '..') {
      if (dir.length === 0) throw new UnsafePathError(what, 'symlink resolves outside the package through other links in it')
      dir.pop()
      continue
    }
    const here = [...dir, seg].join('/')
    const e = byPath.get(here)
    if (e === undefined) return // ENOENT at run time: the lookup stops inside the tree
    if (e.type === 'file') return // the end of the path, or ENOTDIR
    if (e.type === 'dir') { dir.push(seg); continue }
    if (++hops > MAX_SYMLINK_HOPS) throw new UnsafePathError(what, `symlink chain is longer than ${MAX_SYMLINK_HOPS} links (or loops)`)
    todo = [...splitTarget(e.target as string), ...todo]
  }
}

function splitTarget (target: string): string[] {
  return target.split('/').filter(s => s !== '' && s !== '.')
}
