// Which rollout events the seed announces by webhook, and when (docs/rollout.md §6): `published`
// when a release enters a channel head, `ring-opened` when a ring's gate opens (its notBefore
// passes, checked by `tick`, or a promote record names it), `halted` and `rolled-back` when such
// a record is accepted. Rings already announced are remembered in the state database, so a seed
// restart does not announce them twice.
import type { ManifestBody } from '../core/manifest.js'
import type { StateDb } from '../store/state-db.js'
import type { RecordBody } from './records.js'
import type { Webhooks } from './webhooks.js'

interface Tracked {
  package: string
  version: string
  channel: string
  /** Time-gated rings not yet announced: label → notBefore. */
  pending: Record<string, string>
}

const PREFIX = 'rollout-events/'

export class RolloutEvents {
  // Updates of the tracked rings run one after another: the timer's tick and the one a publish
  // runs overlapped under load, both saw a ring due and both announced it (a duplicate webhook).
  private queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly db: StateDb, private readonly hooks: Webhooks) {}

  private async serial<T> (task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task)
    this.queue = run.catch(() => {})
    return await run
  }

  /** A release entered its channel head: `published`, then `ring-opened` for every ring already open. */
  async published (m: ManifestBody, manifestId: string, now: Date): Promise<void> {
    const policy = m.rollout
    this.hooks.emit('published', {
      package: m.package, version: m.version, channel: m.channel, seq: m.seq, manifest: manifestId,
      rings: policy?.rings.map(r => ({ ring: r.ring, ...(r.notBefore !== undefined ? { notBefore: r.notBefore } : { approval: true }), ...(r.deadline !== undefined ? { deadline: r.deadline } : {}) })) ?? null
    })
    if (policy === undefined) return
    const pending: Record<string, string> = {}
    for (const r of policy.rings) if (r.notBefore !== undefined) pending[r.ring] = r.notBefore
    const t: Tracked = { package: m.package, version: m.version, channel: m.channel, pending }
    await this.serial(async () => { await this.db.kv.put(PREFIX + `${m.package}@${m.version}`, t) })
    await this.tick(now)
  }

  /** An accepted control record; `effective` false for a promote that opens nothing (no event then). */
  async record (r: RecordBody, effective = true): Promise<void> {
    const base = { package: r.package, version: r.version, seq: r.seq }
    if (r.action === 'promote') {
      if (!effective) return
      await this.serial(async () => {
        this.hooks.emit('ring-opened', { ...base, ring: r.ring, by: 'promote' })
        const key = PREFIX + `${r.package}@${r.version}`
        const t = await this.db.kv.get(key) as Tracked | null
        if (t !== null && r.ring !== undefined && r.ring in t.pending) {
          delete t.pending[r.ring]
          await this.db.kv.put(key, t)
        }
      })
    } else if (r.action === 'halt') {
      this.hooks.emit('halted', base)
    } else {
      this.hooks.emit('rolled-back', { ...base, to: r.to })
    }
  }

  /** Announces the time-gated rings whose notBefore has come. */
  async tick (now: Date): Promise<void> {
    await this.serial(async () => { await this.announceDue(now) })
  }

  private async announceDue (now: Date): Promise<void> {
    for await (const [key, value] of this.db.kv.entries({ gte: PREFIX, lt: PREFIX.slice(0, -1) + '0' })) {
      const t = value as Tracked
      let changed = false
      for (const [ring, notBefore] of Object.entries(t.pending)) {
        if (Date.parse(notBefore) > now.getTime()) continue
        this.hooks.emit('ring-opened', { package: t.package, version: t.version, channel: t.channel, ring, by: 'time', notBefore })
        delete t.pending[ring]
        changed = true
      }
      if (!changed) continue
      if (Object.keys(t.pending).length === 0) await this.db.kv.del(key)
      else await this.db.kv.put(key, t)
    }
  }
}
