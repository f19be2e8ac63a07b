import { describe, expect, it } from 'vitest';

import { TypingThrottle } from './typing';

describe('typing updates', () => {
  it('one true while typing, refreshed every period, and one false at the end', () => {
    const t = new TypingThrottle(2000);
    expect(t.update(true, 0)).toBe(true);
    expect(t.update(true, 500)).toBeNull();
    expect(t.update(true, 2000)).toBe(true);
    expect(t.update(false, 2100)).toBe(false);
    expect(t.update(false, 2200)).toBeNull();
  });

  it('a burst of lines sent one after another costs two frames, not three a line', () => {
    const t = new TypingThrottle(2000);
    const sent = [];
    for (let i = 0; i < 100; i++) {
      const now = i * 8; // 100 lines in 0.8 s, as a paste or a test would
      for (const typing of [true, false]) {
        const update = t.update(typing, now);
        if (update !== null) sent.push(update);
      }
    }
    expect(sent).toEqual([true, false]);
  });

  it('after a reset the next keystroke is told at once', () => {
    const t = new TypingThrottle(2000);
    t.update(true, 0);
    t.reset();
    expect(t.update(true, 10)).toBe(true);
  });
});
