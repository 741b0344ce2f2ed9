import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CONFIG_DEFAULTS, ConfigError, DAEMON_ENV, DAEMON_NODE_FLAGS, DAEMON_V8_FLAGS, parseConfig, v8FlagsToSet } from '../../src/daemon/config.js'
import { detectLink, detectPower } from '../../src/daemon/host-info.js'
import { REPO_ROOT } from '../helpers/cli.js'

const base = { role: 'endpoint', stateDir: 'state', enroll: 'enroll.json', seeds: ['/ip4/10.0.0.1/tcp/7700/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'] }

describe('daemon config', () => {
  it('fills defaults and resolves paths against the config folder', () => {
    const c = parseConfig(base, '/etc/shoal')
    expect(c.stateDir).toBe('/etc/shoal/state')
    expect(c.installRoot).toBe('/etc/shoal/state/apps')
    expect(c.api).toBe(CONFIG_DEFAULTS.api)
    expect(c.mdns).toBe(true)
  })

  it.each([
    [{ wanRat: 1 }, /unknown config field "wanRat"/],
    [{ role: 'gateway' }, /"role" must be one of/],
    [{ wanRate: -1 }, /"wanRate" must be a whole number/],
    [{ pollInterval: 0 }, /"pollInterval" must be a whole number > 0/],
    [{ api: 'localhost' }, /"api" must be "host:port"/],
    [{ channels: ['ok', 'bad label!'] }, /"channels\[1\]"/],
    [{ mdns: 'yes' }, /"mdns" must be true or false/],
    [{ link: 'fiber' }, /"link" must be one of/],
    [{ seeds: [] }, /needs at least one entry in "seeds".* or in "origins"/],
    [{ reportInterval: 0 }, /"reportInterval" must be a whole number > 0/],
    [{ dashboardToken: 'short' }, /"dashboardToken" must be null or a token of 16 to 256/],
    [{ notify: '' }, /"notify" must be a non-empty string/],
    [{ webhooks: ['ftp://example.org/x'], webhookSecret: 's' }, /"webhooks\[0\]" must be an http:\/\/ or https:\/\/ URL/],
    [{ webhooks: ['https://hooks.example.org/shoal'] }, /"webhooks" needs "webhookSecret"/],
    [{ origins: ['ftp://mirror.example/'] }, /"origins\[0\]".*http:\/\/ or https:\/\//],
    [{ origins: ['https://user:pw@cdn.example/'] }, /"origins\[0\]".*credentials/],
    [{ origins: ['not a url'] }, /"origins\[0\]".*not a URL/],
    [{ cacheSize: 1_000_000 }, /"cacheSize" is for a seed/],
    [{ role: 'seed', seeds: [], cacheSize: 1_000_000 }, /"cacheSize" is for a seed with an upstream/]
  ])('refuses %j by naming the field', (patch, re) => {
    expect(() => parseConfig({ ...base, ...patch }, '/')).toThrow(ConfigError)
    expect(() => parseConfig({ ...base, ...patch }, '/')).toThrow(re)
  })

  it('takes origins instead of seeds for an endpoint, normalized to one trailing slash', () => {
    const c = parseConfig({ ...base, seeds: [], origins: ['https://cdn.example/shoal', 'http://127.0.0.1:8080//'] }, '/')
    expect(c.origins).toEqual(['https://cdn.example/shoal/', 'http://127.0.0.1:8080/'])
    expect(parseConfig(base, '/').origins).toEqual([])
  })

  it('documents every field in docs/config.md', async () => {
    const doc = await readFile(join(REPO_ROOT, 'docs', 'config.md'), 'utf8')
    const fields = Object.keys(parseConfig(base, '/'))
    for (const f of fields) expect(doc, f).toContain(`| \`${f}\` |`)
  })

  it('the systemd unit runs the daemon with the Node flags it is measured with', async () => {
    const unit = await readFile(join(REPO_ROOT, 'examples', 'shoal.service'), 'utf8')
    expect(unit).toContain(`Environment=NODE_OPTIONS=${DAEMON_NODE_FLAGS.join(' ')}\n`)
    for (const [k, v] of Object.entries(DAEMON_ENV)) expect(unit).toContain(`Environment=${k}=${v}\n`)
  })

  it('sets its own GC flags unless the node command line gives them', () => {
    expect(v8FlagsToSet([])).toEqual([...DAEMON_V8_FLAGS])
    expect(v8FlagsToSet(['--max-semi-space-size=4', '--enable-source-maps'])).toEqual([...DAEMON_V8_FLAGS])
    expect(v8FlagsToSet(['--heap-growing-percent=60'])).toEqual([])
    expect(v8FlagsToSet(['--heap_growing_percent=60'])).toEqual([])
  })

  it('parses the shipped examples', async () => {
    for (const name of ['seed.json', 'endpoint.json']) {
      const raw = JSON.parse(await readFile(join(REPO_ROOT, 'examples', name), 'utf8')) as Record<string, unknown>
      if (raw.role === 'endpoint') raw.seeds = base.seeds
      expect(() => parseConfig(raw, join(REPO_ROOT, 'examples'))).not.toThrow()
    }
  })
})

describe('host info', () => {
  let dir: string | undefined
  afterEach(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('reads power and link from sysfs and procfs', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-host-'))
    const ps = join(dir, 'sys', 'class', 'power_supply')
    await mkdir(join(ps, 'BAT0'), { recursive: true })
    await mkdir(join(ps, 'AC'), { recursive: true })
    await writeFile(join(ps, 'BAT0', 'type'), 'Battery\n')
    await writeFile(join(ps, 'BAT0', 'status'), 'Discharging\n')
    await writeFile(join(ps, 'AC', 'type'), 'Mains\n')
    await writeFile(join(ps, 'AC', 'online'), '0\n')
    expect(await detectPower(join(dir, 'sys'))).toBe('battery')
    await writeFile(join(ps, 'AC', 'online'), '1\n')
    expect(await detectPower(join(dir, 'sys'))).toBe('ac')
    expect(await detectPower(join(dir, 'nothing'))).toBe('ac')

    await mkdir(join(dir, 'proc', 'net'), { recursive: true })
    await writeFile(join(dir, 'proc', 'net', 'route'), 'Iface\tDestination\tGateway\nwlan0\t00000000\t0101A8C0\n')
    await mkdir(join(dir, 'sys', 'class', 'net', 'wlan0'), { recursive: true })
    expect(await detectLink(join(dir, 'sys'), join(dir, 'proc'))).toBe('wired')
    await mkdir(join(dir, 'sys', 'class', 'net', 'wlan0', 'wireless'))
    expect(await detectLink(join(dir, 'sys'), join(dir, 'proc'))).toBe('wifi')
    await writeFile(join(dir, 'proc', 'net', 'route'), 'Iface\tDestination\n')
    expect(await detectLink(join(dir, 'sys'), join(dir, 'proc'))).toBe('unknown')
  })
})
