// A task that runs one at a time, where asking for a run while one is under way asks for exactly
// one more run after it (any number of requests meanwhile coalesce into that one). The endpoint's
// sync passes and the fleet reporter's sends are both this.

export class CoalescedTask {
  private running: Promise<void> | undefined
  private again = false
  private stopped = false

  /** `onError` hears of a run that failed (not after stop); the next request runs again. */
  constructor (private readonly task: () => Promise<void>, private readonly onError: (err: unknown) => void) {}

  /** Runs the task now, or once more right after the run under way. */
  request (): void {
    if (this.stopped) return
    if (this.running !== undefined) { this.again = true; return }
    this.running = this.task()
      .catch(err => { if (!this.stopped) this.onError(err) })
      .finally(() => {
        this.running = undefined
        if (this.again && !this.stopped) { this.again = false; this.request() }
      })
  }

  /** A run is under way. */
  get busy (): boolean {
    return this.running !== undefined
  }

  /** Resolves when no run is under way or pending. */
  async idle (): Promise<void> {
    while (this.running !== undefined) await this.running
  }

  /** No run starts any more; resolves when the one under way has ended. */
  async stop (): Promise<void> {
    this.stopped = true
    await this.running
  }
}
