/**
 * The k items with the largest keys, largest first, in O(n log k): a min-heap
 * of the best so far, so a page of 200 out of 200,000 is not a full sort.
 */
export function topK<T>(items: Iterable<T>, k: number, key: (item: T) => number): T[] {
  // Whole items only: a fraction let the heap take one more, and NaN (no item is "fewer than NaN")
  // went on to read the empty heap's top.
  k = Math.floor(k);
  if (!(k > 0)) return [];
  const heap: { item: T; key: number }[] = [];
  const less = (i: number, j: number) => heap[i].key < heap[j].key;
  const swap = (i: number, j: number) => ([heap[i], heap[j]] = [heap[j], heap[i]]);
  for (const item of items) {
    const entry = { item, key: key(item) };
    if (heap.length < k) {
      heap.push(entry);
      for (let i = heap.length - 1; i > 0; ) {
        const p = (i - 1) >> 1;
        if (!less(i, p)) break;
        swap(i, p);
        i = p;
      }
    } else if (entry.key > heap[0].key) {
      heap[0] = entry;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(l, m)) m = l;
        if (r < heap.length && less(r, m)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    }
  }
  return heap.sort((a, b) => b.key - a.key).map((e) => e.item);
}
