import { describe, expect, it } from 'vitest';

import { addPending, adoptPending, failUnanswered, settlePending } from './pending';
import type { PendingSend } from './pending';

const p = (key: string, content: string, state: PendingSend['state'] = 'sending'): PendingSend =>
  ({ key, content, state, at: '2026-11-24T06:00:00.000Z' });
const echo = (content: string) =>
  ({ id: '9-0', type: 'CHAT' as const, sender: '익명-00001', content, timestamp: '' });

describe('own messages until they come back', () => {
  it('a RECEIPT marks sent; an error naming the receipt marks failed', () => {
    let list = addPending(addPending([], p('r-1', 'a')), p('r-2', 'b'));
    list = [...settlePending(list, 'r-1', 'sent')];
    list = [...settlePending(list, 'r-2', 'failed')];
    expect(list.map((x) => x.state)).toEqual(['sent', 'failed']);
    expect(settlePending(list, 'r-1', 'failed')).toBe(list);
  });

  it('the echo on the feed adopts the oldest copy with the same content, once', () => {
    const list = [p('r-1', 'same', 'sent'), p('r-2', 'same'), p('r-3', 'other')];
    const after = adoptPending(list, echo('same'));
    expect(after.map((x) => x.key)).toEqual(['r-2', 'r-3']);
    expect(adoptPending(after, echo('nothing like it'))).toBe(after);
  });

  it('a failed send whose echo arrives after all (stored, answer lost) is adopted too', () => {
    expect(adoptPending([p('r-1', 'x', 'failed')], echo('x'))).toEqual([]);
  });

  it('a closed connection fails what had no answer, keeps what was sent', () => {
    const list = failUnanswered([p('r-1', 'a', 'sent'), p('r-2', 'b')]);
    expect(list.map((x) => x.state)).toEqual(['sent', 'failed']);
  });
});
