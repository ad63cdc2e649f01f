/**
 * The most recent samples (time, value) in a fixed ring: adding is O(1)
 * whatever the rate, which a heartbeat-rate event stream needs. At rates
 * above capacity per window the window holds only the newest `capacity`.
 */
export class SampleWindow {
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  private next = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  add(t: number, v: number): void {
    this.times[this.next] = t;
    this.values[this.next] = v;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** The time of the oldest sample held, or null when empty. */
  get oldestAt(): number | null {
    if (this.size === 0) return null;
    return this.times[this.size < this.capacity ? 0 : this.next];
  }

  /** Whether the ring is full: older samples have been overwritten. */
  get full(): boolean {
    return this.size === this.capacity;
  }

  /** Values of the samples taken at or after `since`, sorted ascending. */
  sortedSince(since: number): Float64Array {
    const out = new Float64Array(this.size);
    let n = 0;
    for (let i = 0; i < this.size; i++) {
      const j = (this.next - 1 - i + this.capacity) % this.capacity;
      if (this.times[j] < since) break; // newest first: the rest are older still
      out[n++] = this.values[j];
    }
    return out.subarray(0, n).sort();
  }
}
