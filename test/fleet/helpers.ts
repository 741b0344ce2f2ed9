// A reporting fleet on loopback for the fleet tests: a seed whose "publishers" holds the publisher's
// PeerId (from the keys folder, as `shoal keys peer-id` prints it), and three endpoints in two
// rings and two sites. v1's postinstall fails on e3 only, so the reports carry a real hook failure.
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Daemon } from '../../src/daemon/daemon.js'
import type { FleetEvents, FleetEventName } from '../../src/fleet/store.js'
import { loadOrCreatePeerKey } from '../../src/net/peer-key.js'
import { Fleet, makeTree, until } from '../daemon/helpers.js'

export const FAILING_HOOK = 'case "$SHOAL_INSTALL_DIR" in\n  */e3/*) echo "disk check failed on $SHOAL_VERSION"; exit 9;;\nesac\n'

export interface ReportingFleet {
  fleet: Fleet
  seed: Daemon
  eps: Daemon[]
  publisherKey: PrivateKey
  publisherId: string
  events: Array<{ event: FleetEventName, payload: FleetEvents[FleetEventName] }>
}

export async function reportingFleet (seedRaw: Record<string, unknown> = {}): Promise<ReportingFleet> {
  const fleet = await Fleet.create('fleet-reports')
  const publisherKey = await loadOrCreatePeerKey(fleet.keysDir)
  const publisherId = peerIdFromPrivateKey(publisherKey).toString()
  const seed = await fleet.startSeed({ publishers: [publisherId], ...seedRaw })
  const events: ReportingFleet['events'] = []
  seed.fleet!.onEvent((event, payload) => { events.push({ event, payload }) })
  const eps = [
    await fleet.startEndpoint('e1', { ring: 'canary', site: 'office' }),
    await fleet.startEndpoint('e2', { ring: 'broad', site: 'office' }),
    await fleet.startEndpoint('e3', { ring: 'broad', site: 'home' })
  ]
  const p = await fleet.publish(await makeTree(join(fleet.dir, 'v1'), 1), '1.0.0', { hooks: { postinstall: FAILING_HOOK } })
  await fleet.push(p.manifestPath, publisherKey)
  const want = ['installed', 'installed', 'failed']
  for (const [i, e] of eps.entries()) {
    await until(async () => (await e.status()).packages[0]?.state === want[i], 60_000, `${e.cfg.stateDir}: ${want[i]}`)
  }
  // Every endpoint's latest report at the seed says what its own status says.
  await until(() => {
    const list = seed.fleet!.list()
    return list.length === 3 && eps.every((e, i) => list.find(r => r.peerId === e.node.peerId.toString())?.releases[0]?.state === want[i])
  }, 30_000, 'reports at the seed')
  return { fleet, seed, eps, publisherKey, publisherId, events }
}
