// The seed's read-only dashboard (docs/fleet.md): one HTML page, one small script, one JSON
// endpoint it polls, served on the seed's local API address behind `dashboardToken`. No framework,
// no external URL, charts as inline SVG; the script builds the DOM with textContent only, so nothing
// an endpoint reports is ever parsed as HTML.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FleetStore } from './store.js'

/** How often the page polls /dashboard/data. */
export const DASHBOARD_REFRESH_MS = 2000

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/** Compares in constant time (digests first, so the length of the token leaks nothing either). */
export function tokenMatches (given: string | null, expected: string): boolean {
  if (given === null) return false
  return timingSafeEqual(digest(given), digest(expected))
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'"
}

function reply (res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { 'content-type': type, ...SECURITY_HEADERS })
  res.end(body)
}

function givenToken (req: IncomingMessage, url: URL): string | null {
  const auth = req.headers.authorization
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7)
  return url.searchParams.get('token')
}

/**
 * The dashboard's routes for the API server: returns true when it answered `req`. With no token
 * configured the dashboard is off and every route says so (404).
 */
export function dashboardRoutes (store: FleetStore, token: string | null, now: () => Date = () => new Date()) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    if (req.method !== 'GET' || (url.pathname !== '/dashboard' && !url.pathname.startsWith('/dashboard/'))) return false
    if (token === null) { reply(res, 404, 'application/json', '{"error":"the dashboard is off: set \\"dashboardToken\\" in the seed\'s config"}'); return true }
    if (url.pathname === '/dashboard/app.js') { reply(res, 200, 'text/javascript; charset=utf-8', APP_JS); return true }
    if (!tokenMatches(givenToken(req, url), token)) { reply(res, 401, 'application/json', '{"error":"missing or wrong dashboard token"}'); return true }
    if (url.pathname === '/dashboard') { reply(res, 200, 'text/html; charset=utf-8', PAGE); return true }
    if (url.pathname === '/dashboard/data') {
      const pkg = url.searchParams.get('package') ?? undefined
      const filter = pkg !== undefined && pkg !== '' ? { package: pkg } : {}
      reply(res, 200, 'application/json', JSON.stringify({ status: store.status(filter, now()), failures: store.failures(filter), refreshMs: DASHBOARD_REFRESH_MS }))
      return true
    }
    reply(res, 404, 'application/json', '{"error":"no such dashboard route"}')
    return true
  }
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>shoal fleet</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8 }
  header { background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline }
  header h1 { font-size: 18px; margin: 0 }
  main { padding: 16px 24px; display: grid; gap: 16px; max-width: 1100px }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002 }
  h2 { font-size: 15px; margin: 0 0 8px }
  table { border-collapse: collapse; width: 100% }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6e8ec; vertical-align: top }
  th { font-weight: 600; color: #555 } td.n { text-align: right; font-variant-numeric: tabular-nums }
  pre { margin: 0; max-height: 8em; overflow: auto; font-size: 12px; background: #f5f6f8; padding: 4px }
  .legend span { display: inline-block; margin-right: 12px } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px }
  .muted { color: #777 } select { font: inherit }
</style></head>
<body>
<header><h1>shoal fleet</h1><span id="summary" class="muted">loading…</span><span id="updated" class="muted"></span></header>
<main>
  <section><h2>Rollout by ring <select id="release" aria-label="release"></select></h2>
    <div class="legend" id="legend"></div>
    <table id="rings"><thead><tr><th>ring</th><th>endpoints</th><th>pending</th><th>downloading</th><th>waiting for ring</th><th>installed</th><th>failed</th><th></th></tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Bytes by site: LAN vs WAN</h2>
    <table id="sites"><thead><tr><th>site</th><th>endpoints</th><th>LAN</th><th>WAN</th><th>saved by LAN</th><th></th></tr></thead><tbody></tbody></table>
  </section>
  <section><h2>Failures <span id="failure-count" class="muted"></span></h2>
    <table id="failures"><thead><tr><th>endpoint</th><th>ring</th><th>release</th><th>error</th><th>exit</th><th>log tail</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script src="/dashboard/app.js"></script>
</body></html>
`

const APP_JS = `'use strict'
const token = new URLSearchParams(location.search).get('token') || ''
const STATES = ['pending', 'downloading', 'waiting-for-ring', 'installed', 'failed']
const COLORS = { pending: '#b8bfcc', downloading: '#4a90d9', 'waiting-for-ring': '#e0b040', installed: '#3aa564', failed: '#d9534f' }
const SVG = 'http://www.w3.org/2000/svg'
let chosen = null
let last = null
const el = (tag, attrs, text) => { const e = document.createElement(tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); if (text !== undefined) e.textContent = String(text); return e }
const svg = (tag, attrs) => { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v)); return e }
const bytes = n => n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(2) + ' MB' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' kB' : n + ' B'
function bar (parts, total, width) {
  const s = svg('svg', { width, height: 14, role: 'img' })
  let x = 0
  for (const [value, color, label] of parts) {
    if (value <= 0 || total <= 0) continue
    const w = width * value / total
    const r = svg('rect', { x, y: 0, width: w, height: 14, fill: color })
    const t = svg('title', {}); t.textContent = label + ': ' + value; r.appendChild(t)
    s.appendChild(r); x += w
  }
  return s
}
function legend () {
  const l = document.getElementById('legend'); if (l.childElementCount) return
  for (const st of STATES) { const s = el('span'); const i = el('i'); i.style.background = COLORS[st]; s.append(i, st.replace(/-/g, ' ')); l.append(s) }
}
function render (data) {
  const st = data.status
  document.getElementById('summary').textContent = st.endpoints + ' endpoints · ' + Object.keys(st.rings).length + ' rings' + (st.stale > 0 ? ' · ' + st.stale + ' not reporting (not counted)' : '')
  document.getElementById('updated').textContent = 'updated ' + new Date(st.generatedAt).toLocaleTimeString()
  legend()
  const sel = document.getElementById('release')
  const names = st.releases.map(r => r.package + '@' + r.version)
  if (chosen === null || !names.includes(chosen)) chosen = names[names.length - 1] || null
  sel.replaceChildren(...names.map(n => { const o = el('option', { value: n }, n); if (n === chosen) o.selected = true; return o }))
  const rel = st.releases.find(r => r.package + '@' + r.version === chosen)
  const rings = document.querySelector('#rings tbody'); rings.replaceChildren()
  for (const ring of Object.keys(st.rings).sort()) {
    const c = rel && rel.rings[ring] ? rel.rings[ring] : null
    const endpoints = st.rings[ring]
    const tr = el('tr', { 'data-ring': ring })
    tr.append(el('td', {}, ring), el('td', { class: 'n', 'data-state': 'endpoints' }, endpoints))
    for (const s of STATES) tr.append(el('td', { class: 'n', 'data-state': s }, c ? c[s] : 0))
    const cell = el('td'); cell.append(bar(STATES.map(s => [c ? c[s] : 0, COLORS[s], s]), endpoints, 220)); tr.append(cell)
    rings.append(tr)
  }
  const sites = document.querySelector('#sites tbody'); sites.replaceChildren()
  for (const s of st.sites) {
    const tr = el('tr', { 'data-site': s.site })
    tr.append(el('td', {}, s.site), el('td', { class: 'n' }, s.endpoints), el('td', { class: 'n', 'data-bytes': 'lan', 'data-value': s.lan }, bytes(s.lan)),
      el('td', { class: 'n', 'data-bytes': 'wan', 'data-value': s.wan }, bytes(s.wan)), el('td', { class: 'n', 'data-bytes': 'saved' }, s.lanPercent + ' %'))
    const cell = el('td'); cell.append(bar([[s.lan, '#3aa564', 'LAN'], [s.wan, '#4a90d9', 'WAN']], s.lan + s.wan, 220)); tr.append(cell)
    sites.append(tr)
  }
  const fails = document.querySelector('#failures tbody'); fails.replaceChildren()
  document.getElementById('failure-count').textContent = '(' + data.failures.length + ')'
  for (const f of data.failures) {
    const tr = el('tr', { 'data-peer': f.peerId })
    const tail = el('td'); tail.append(el('pre', {}, f.logTail || ''))
    tr.append(el('td', { title: f.peerId }, f.peerId.slice(0, 8) + '…' + f.peerId.slice(-6)), el('td', {}, f.ring), el('td', {}, f.package + '@' + f.version),
      el('td', { title: f.message }, f.code), el('td', { class: 'n', 'data-exit': '' }, f.exitCode === undefined ? '' : f.exitCode), tail)
    fails.append(tr)
  }
  document.body.setAttribute('data-ready', 'true')
}
async function poll () {
  let wait = 2000
  try {
    const res = await fetch('/dashboard/data', { headers: { authorization: 'Bearer ' + token }, cache: 'no-store' })
    if (!res.ok) throw new Error('HTTP ' + res.status)
    const data = await res.json()
    wait = data.refreshMs || wait
    last = data
    render(data)
  } catch (err) {
    document.getElementById('updated').textContent = 'cannot load: ' + err.message
  }
  setTimeout(poll, wait)
}
document.getElementById('release').addEventListener('change', e => { chosen = e.target.value; if (last !== null) render(last) })
poll()
`
