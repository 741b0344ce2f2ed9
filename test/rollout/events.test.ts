// RolloutEvents: a ring is announced once, however the announcements race.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { ManifestBody } from '../../src/core/manifest.js'
import { RolloutEvents } from '../../src/rollout/events.js'
import type { Webhooks } from '../../src/rollout/webhooks.js'
import { StateDb } from '../../src/store/state-db.js'

let dir = ''
let db: StateDb | undefined

afterEach(async () => {
  await db?.close()
  db = undefined
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

describe('RolloutEvents', () => {
  it('announces a due ring once when the timer\'s ticks and a publish run at the same time', async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-events-'))
    db = await StateDb.open(dir)
    const got: string[] = []
    const hooks = { emit: (event: string, data: { ring?: string }) => { got.push(`${event}${data.ring !== undefined ? ':' + data.ring : ''}`) } } as unknown as Webhooks
    const events = new RolloutEvents(db, hooks)
    const past = new Date(Date.now() - 60_000).toISOString()
    const future = new Date(Date.now() + 3600_000).toISOString()
    const m = {
      package: 'app', version: '2.0.0', channel: 'stable', seq: 2,
      rollout: { formatVersion: 1, rings: [{ ring: 'canary', notBefore: past }, { ring: 'pilot', notBefore: past }, { ring: 'broad', notBefore: future }] }
    } as unknown as ManifestBody
    const now = new Date()
    await Promise.all([events.published(m, 'a'.repeat(64), now), events.tick(now), events.tick(now), events.tick(now)])
    await Promise.all([events.tick(now), events.tick(now)])
    expect(got).toEqual(['published', 'ring-opened:canary', 'ring-opened:pilot'])
    await events.tick(new Date(Date.now() + 2 * 3600_000))
    expect(got.filter(e => e === 'ring-opened:broad')).toHaveLength(1)
  })
})
