// What an endpoint reports about its own machine for the site's ownership weights: on mains power
// or battery, on a wired, Wi-Fi or metered link. Read from Linux's /sys and /proc; anything we
// cannot read counts as "ac" / "wired" (servers and desktops), and the config can always say.
import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'

import type { HostReport, Link, Power } from '../swarm/ownership.js'

export type HostInfo = HostReport

async function read (path: string): Promise<string | null> {
  try { return (await readFile(path, 'utf8')).trim() } catch { return null }
}

/** Battery when a battery discharges and no mains supply is online. */
export async function detectPower (sysRoot = '/sys'): Promise<Power> {
  const dir = join(sysRoot, 'class', 'power_supply')
  let names: string[]
  try { names = await readdir(dir) } catch { return 'ac' }
  let mainsOnline = false
  let discharging = false
  for (const n of names) {
    const type = await read(join(dir, n, 'type'))
    if (type === 'Mains' && await read(join(dir, n, 'online')) === '1') mainsOnline = true
    if (type === 'Battery' && await read(join(dir, n, 'status')) === 'Discharging') discharging = true
  }
  return discharging && !mainsOnline ? 'battery' : 'ac'
}

/** The link of the default route's interface: Wi-Fi if it has a wireless phy, else wired. */
export async function detectLink (sysRoot = '/sys', procRoot = '/proc'): Promise<Link> {
  const route = await read(join(procRoot, 'net', 'route'))
  const iface = route?.split('\n').slice(1).map(l => l.split(/\s+/)).find(f => f[1] === '00000000')?.[0]
  if (iface === undefined) return 'unknown'
  for (const probe of ['wireless', 'phy80211']) {
    try {
      await stat(join(sysRoot, 'class', 'net', iface, probe))
      return 'wifi'
    } catch {
      // absent: try the next probe
    }
  }
  return 'wired'
}

export async function detectHost (cfg: { power: Power | 'auto', link: Link | 'auto' }): Promise<HostInfo> {
  return {
    power: cfg.power === 'auto' ? await detectPower() : cfg.power,
    link: cfg.link === 'auto' ? await detectLink() : cfg.link
  }
}
