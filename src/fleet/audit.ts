// `shoal fleet audit`: which endpoints run software the policy does not allow. The policy
// (docs/fleet.md) is a JSON file of package name patterns:
//   { "allow": ["app", "lib*"], "deny": ["telnetd", "*-dbg"] }
// A package violates it when it matches a `deny` pattern, or when `allow` is given and it matches
// none of its patterns. Patterns are whole-name globs: `*` any run of characters, `?` one.
import { ShoalError } from '../core/errors.js'
import type { InventoryRow } from './store.js'

export class AuditPolicyError extends ShoalError {
  constructor (message: string) {
    super('ERR_AUDIT_POLICY', `audit policy: ${message}`)
  }
}

export interface AuditPolicy { allow?: string[], deny?: string[] }
export interface Violation extends InventoryRow { rule: 'denied' | 'not-allowed', pattern?: string }

const MAX_PATTERNS = 10_000
const PATTERN = /^[\x21-\x7e]{1,256}$/

export function parsePolicy (text: string, file = 'policy.json'): AuditPolicy {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new AuditPolicyError(`${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new AuditPolicyError(`${file} must be a JSON object with "allow" and/or "deny" lists`)
  const o = raw as Record<string, unknown>
  const out: AuditPolicy = {}
  for (const k of Object.keys(o)) {
    if (k === '$comment') continue
    if (k !== 'allow' && k !== 'deny') throw new AuditPolicyError(`${file} has an unknown field "${k.slice(0, 40)}" (only "allow", "deny", "$comment")`)
    const v = o[k]
    if (!Array.isArray(v) || v.length > MAX_PATTERNS || v.some(p => typeof p !== 'string' || !PATTERN.test(p))) {
      throw new AuditPolicyError(`"${k}" in ${file} must be a list of at most ${MAX_PATTERNS} patterns (printable, no spaces, ≤ 256 characters)`)
    }
    out[k] = v as string[]
  }
  if (out.allow === undefined && out.deny === undefined) throw new AuditPolicyError(`${file} has neither "allow" nor "deny": it would allow everything`)
  return out
}

export function globToRegExp (pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${body}$`)
}

/** The rows that break `policy`, each with the rule and (for deny) the pattern it matched. */
export function audit (rows: InventoryRow[], policy: AuditPolicy): Violation[] {
  const deny = (policy.deny ?? []).map(p => ({ p, re: globToRegExp(p) }))
  const allow = policy.allow?.map(globToRegExp)
  const out: Violation[] = []
  for (const r of rows) {
    const d = deny.find(x => x.re.test(r.name))
    if (d !== undefined) { out.push({ ...r, rule: 'denied', pattern: d.p }); continue }
    if (allow !== undefined && !allow.some(re => re.test(r.name))) out.push({ ...r, rule: 'not-allowed' })
  }
  return out
}
