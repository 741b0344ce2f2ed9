import type { Command } from 'commander'
import { ShoalError } from '../core/errors.js'
import type { DaemonStatus } from '../daemon/daemon.js'
import { printJson } from './common.js'

export class ApiUnreachableError extends ShoalError {
  constructor (address: string, detail: string) {
    super('ERR_API_UNREACHABLE', `no shoal daemon answers on http://${address} (${detail}); is it running, and is "api" in its config this address?`)
  }
}

const human = (n: number): string => n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`

export async function fetchStatus (address: string): Promise<DaemonStatus> {
  let res: Response
  try {
    res = await fetch(`http://${address}/status`, { signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    throw new ApiUnreachableError(address, (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message)
  }
  if (!res.ok) throw new ApiUnreachableError(address, `HTTP ${res.status}`)
  return await res.json() as DaemonStatus
}

export function formatStatus (s: DaemonStatus): string {
  const lines = [
    `${s.role} ${s.peerId} · shoal ${s.version} · ring ${s.ring}${s.site !== null ? ` · site ${s.site}` : ''}${s.paused ? ' · PAUSED' : ''}`,
    `listening on ${s.listen.join(', ') || '(nothing)'}`,
    `peers ${new Set(s.peers.map(p => p.peerId)).size} · blobs stored ${s.blobs.stored} · received from seed ${human(s.bytes.seed)}, LAN ${human(s.bytes.lan)} · served ${human(s.bytes.served)}`
  ]
  // a daemon from before delta blobs has no `deltas`
  const d = s.deltas as DaemonStatus['deltas'] | undefined
  if (d !== undefined && (d.rebuilt > 0 || d.fallbacks > 0)) {
    const last = d.lastFallback
    lines.push(`delta blobs: ${d.rebuilt} chunk(s) rebuilt · ${d.fallbacks} fallback(s) to full blobs${last !== undefined ? ` (last: ${last.release}, ${last.reason}: ${last.message})` : ''}`)
  }
  // a daemon from before root rotation has no `root`; a refused new root must be seen
  const r = s.root as DaemonStatus['root'] | undefined
  if (r?.error !== undefined) lines.push(`root.json v${r.version} kept — a newer one was refused: ${r.error}`)
  for (const h of s.heads) {
    lines.push(`channel ${h.channel}: head seq ${h.seq}, expires ${h.expires || '-'}${h.stale ? ' — STALE' : ''}${h.error !== undefined ? ` — ${h.error}` : ''}`)
  }
  if (s.packages.length > 0) {
    const rows = s.packages.map(p => {
      const prog = p.progress !== undefined && p.state === 'downloading'
        ? ` ${Math.floor(100 * p.progress.bytes / Math.max(1, p.progress.bytesTotal))}% (${p.progress.blobs}/${p.progress.blobsTotal} blobs)`
        : ''
      const why = p.state === 'waiting-for-ring' && p.gate !== undefined
        ? ` (${p.gate.reason}${p.gate.opensAt !== undefined ? `; opens ${p.gate.opensAt}` : ''})`
        : p.state === 'deferred' && p.deferUntil !== undefined ? ` (by notify, until ${p.deferUntil})`
          : p.state === 'halted' && p.rollbackTo !== undefined ? ` (rolled back to ${p.rollbackTo})` : ''
      return [p.name, p.installed ?? '-', p.target ?? '-', p.state + prog + why, p.error !== undefined ? `${p.error.code}${p.error.exitCode !== undefined ? ` exit ${p.error.exitCode}` : ''}` : '']
    })
    const head = ['PACKAGE', 'INSTALLED', 'TARGET', 'STATE', 'ERROR']
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
    for (const r of [head, ...rows]) lines.push(r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd())
  } else if (s.role === 'endpoint') {
    lines.push('no packages yet')
  }
  return lines.join('\n') + '\n'
}

export function registerStatus (program: Command): void {
  program.command('status')
    .description('show what a running daemon is doing (its local API)')
    .option('--api <host:port>', 'the daemon\'s "api" address', '127.0.0.1:7701')
    .option('--json', 'print the raw status JSON')
    .addHelpText('after', `
Examples:
  shoal status
  shoal status --api 127.0.0.1:7711 --json | jq '.packages'`)
    .action(async (o: { api: string, json?: boolean }) => {
      const s = await fetchStatus(o.api)
      if (o.json === true) printJson(s)
      else process.stdout.write(formatStatus(s))
    })
}
