/**
 * A bounded set of recently seen ids; the least recently seen is forgotten first. Bounded
 * in count and in characters: the gateway chooses the ids, and 4,096 of
 * 64 KB each would be a quarter of a gigabyte.
 */
export class RecentIds {
  private readonly ids = new Set<string>();
  private chars = 0;

  constructor(
    private readonly capacity: number,
    /** Characters of all ids held; an id longer than a tenth of it is not remembered. */
    private readonly maxChars = capacity * 256,
  ) {}

  /**
   * Adds `id`; false if it was already there, and then it becomes the newest
   * again: an id the gateway re-sends (after each reconnect, until the
   * acknowledgement reaches it) stays remembered while newer ids go through.
   * An id too long to remember is taken as new.
   */
  add(id: string): boolean {
    if (this.ids.has(id)) {
      this.ids.delete(id);
      this.ids.add(id);
      return false;
    }
    if (id.length > this.maxChars / 10) return true;
    this.ids.add(id);
    this.chars += id.length;
    while (this.ids.size > this.capacity || this.chars > this.maxChars) {
      const oldest = this.ids.values().next().value!;
      this.ids.delete(oldest);
      this.chars -= oldest.length;
    }
    return true;
  }

  get size(): number {
    return this.ids.size;
  }

  /** Characters of the ids held. */
  get heldChars(): number {
    return this.chars;
  }
}
