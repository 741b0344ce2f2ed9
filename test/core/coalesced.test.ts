import { describe, expect, it } from 'vitest'
import { CoalescedTask } from '../../src/core/coalesced.js'

describe('CoalescedTask', () => {
  it('runs one at a time; requests during a run coalesce into one more run', async () => {
    let runs = 0
    let active = 0
    let maxActive = 0
    const t = new CoalescedTask(async () => {
      runs++
      active++
      maxActive = Math.max(maxActive, active)
      await new Promise(resolve => setTimeout(resolve, 20))
      active--
    }, () => {})
    t.request()
    for (let i = 0; i < 10; i++) t.request()
    await t.idle()
    expect(runs).toBe(2)
    expect(maxActive).toBe(1)
    t.request()
    await t.idle()
    expect(runs).toBe(3)
  })

  it('reports a failed run and runs again on the next request; after stop nothing runs or reports', async () => {
    const errors: unknown[] = []
    let runs = 0
    const t = new CoalescedTask(async () => { runs++; throw new Error(`run ${runs}`) }, err => { errors.push(err) })
    t.request()
    await t.idle()
    t.request()
    await t.idle()
    expect(errors.map(e => (e as Error).message)).toEqual(['run 1', 'run 2'])
    t.request()
    await t.stop()
    t.request()
    await t.idle()
    expect(runs).toBe(3)
    expect(errors).toHaveLength(2)
  })
})
