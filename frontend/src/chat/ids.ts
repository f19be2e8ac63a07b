/* Message ids are "<ms>-<seq>" (a Redis stream id): compare them as two
 * numbers, never as strings ("9-0" < "10-0"). */

export function compareIds(a: string, b: string): number {
  const [am, as] = split(a);
  const [bm, bs] = split(b);
  return am - bm || as - bs;
}

function split(id: string): [number, number] {
  const dash = id.indexOf('-');
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

/** The larger of two ids, null counting as smallest. */
export function maxId(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareIds(a, b) >= 0 ? a : b;
}
