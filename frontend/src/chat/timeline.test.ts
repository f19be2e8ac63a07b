import { describe, expect, it } from 'vitest';

import { emptyTimeline, markGap, merge, mergeGapPage, mergeOlder, oldestId, unreadAfter } from './timeline';
import type { ChatMessage } from './types';

const chat = (id: string, sender = '익명-11111', content = `m ${id}`): ChatMessage =>
  ({ id, type: 'CHAT', sender, content, timestamp: '2026-11-24T06:11:54.123Z' });
const del = (id: string, target: string): ChatMessage =>
  ({ id, type: 'DELETE', sender: '', content: '', timestamp: '2026-11-24T06:11:55.000Z', target });
const ids = (t: { messages: readonly ChatMessage[] }) => t.messages.map((m) => m.id);

describe('merge: dedupe by id', () => {
  it('shows a message once whatever source brings it again', () => {
    let t = merge(emptyTimeline, [chat('1-0'), chat('2-0')], 'recent');
    t = merge(t, [chat('2-0'), chat('3-0')], 'live');
    t = merge(t, [chat('1-0')], 'history');
    expect(ids(t)).toEqual(['1-0', '2-0', '3-0']);
    expect(t.duplicates).toBe(1);
  });

  it('keeps id order, comparing ids as numbers not strings', () => {
    const t = merge(emptyTimeline, [chat('10-0'), chat('9-0'), chat('10-2'), chat('10-10')], 'history');
    expect(ids(t)).toEqual(['9-0', '10-0', '10-2', '10-10']);
  });

  it('returns the same object when nothing changed (no re-render)', () => {
    const t = merge(emptyTimeline, [chat('1-0')], 'live');
    expect(merge(t, [chat('1-0')], 'history')).toBe(t);
  });

  it('drops what does not belong to the list and counts nothing', () => {
    const t = merge(emptyTimeline, [], 'live');
    expect(t).toBe(emptyTimeline);
  });
});

describe('merge: the resume point', () => {
  it('live and recent advance it, history pages never do', () => {
    let t = merge(emptyTimeline, [chat('5-0')], 'recent');
    expect(t.lastSeen).toBe('5-0');
    t = merge(t, [chat('1-0')], 'history');
    expect(t.lastSeen).toBe('5-0');
    t = merge(t, [chat('6-0')], 'live');
    expect(t.lastSeen).toBe('6-0');
  });

  it('a DELETE moves it too (it is in the feed)', () => {
    const t = merge(merge(emptyTimeline, [chat('1-0')], 'live'), [del('2-0', '1-0')], 'live');
    expect(t.lastSeen).toBe('2-0');
  });
});

describe('resume merge after a reconnect', () => {
  it('a replay overlapping what is shown adds only the missed ones, in order', () => {
    let t = merge(emptyTimeline, [chat('1-0'), chat('2-0'), chat('3-0')], 'live');
    // x-since-id 3-0 replays 4-0, 5-0; a racing live copy of 5-0 and a late recent read overlap
    t = merge(t, [chat('4-0'), chat('5-0')], 'live');
    t = merge(t, [chat('2-0'), chat('3-0'), chat('4-0'), chat('5-0')], 'recent');
    expect(ids(t)).toEqual(['1-0', '2-0', '3-0', '4-0', '5-0']);
    expect(t.lastSeen).toBe('5-0');
  });

  it('x-resume-gap leaves a hole that gap pages fill from the newer side', () => {
    let t = merge(emptyTimeline, [chat('1-0'), chat('2-0')], 'live');
    t = markGap(t, '2-0', '50-0');
    t = merge(t, [chat('50-0'), chat('51-0')], 'live');
    expect(t.gap).toEqual({ after: '2-0', before: '50-0' });

    t = mergeGapPage(t, { messages: [chat('30-0'), chat('40-0')], next_before: '30-0' });
    expect(t.gap).toEqual({ after: '2-0', before: '30-0' });
    t = mergeGapPage(t, { messages: [chat('2-0'), chat('10-0'), chat('20-0')], next_before: '2-0' });
    expect(t.gap).toBeNull();
    expect(ids(t)).toEqual(['1-0', '2-0', '10-0', '20-0', '30-0', '40-0', '50-0', '51-0']);
  });

  it('a gap closes when the archive has nothing older', () => {
    let t = markGap(merge(emptyTimeline, [chat('2-0')], 'live'), '2-0', '9-0');
    t = mergeGapPage(t, { messages: [chat('5-0')], next_before: null });
    expect(t.gap).toBeNull();
  });

  it('no gap is marked when the replay starts at or before what is shown', () => {
    const t = merge(emptyTimeline, [chat('5-0')], 'live');
    expect(markGap(t, '5-0', '5-0')).toBe(t);
  });
});

describe('DELETE removes from view', () => {
  it('removes a shown message and keeps it out when it comes again', () => {
    let t = merge(emptyTimeline, [chat('1-0'), chat('2-0')], 'live');
    t = merge(t, [del('3-0', '1-0')], 'live');
    expect(ids(t)).toEqual(['2-0']);
    t = merge(t, [chat('1-0')], 'history');
    expect(ids(t)).toEqual(['2-0']);
    expect(t.ids.has('1-0')).toBe(false);
  });

  it('a DELETE that arrives before its target (replay, slow history page) still hides it', () => {
    let t = merge(emptyTimeline, [del('9-0', '4-0')], 'live');
    t = merge(t, [chat('3-0'), chat('4-0'), chat('5-0')], 'history');
    expect(ids(t)).toEqual(['3-0', '5-0']);
  });

  it('DELETE messages themselves are never shown', () => {
    const t = merge(emptyTimeline, [del('9-0', '4-0')], 'live');
    expect(t.messages).toEqual([]);
  });
});

describe('history pages', () => {
  it('older pages prepend and the last one marks the start', () => {
    let t = merge(emptyTimeline, [chat('10-0')], 'recent');
    expect(oldestId(t)).toBe('10-0');
    t = mergeOlder(t, { messages: [chat('8-0'), chat('9-0')], next_before: '8-0' });
    expect(t.reachedStart).toBe(false);
    t = mergeOlder(t, { messages: [chat('7-0')], next_before: null });
    expect(ids(t)).toEqual(['7-0', '8-0', '9-0', '10-0']);
    expect(t.reachedStart).toBe(true);
  });
});

describe('unread', () => {
  it('counts chat by others after the seen point, not own messages or notices', () => {
    const me = new Set(['익명-00001']);
    const t = merge(emptyTimeline, [
      chat('1-0'), chat('2-0'), chat('3-0', '익명-00001'),
      { id: '4-0', type: 'JOIN', sender: '익명-22222', content: '', timestamp: '' }, chat('5-0'),
    ], 'live');
    expect(unreadAfter(t, '1-0', me)).toBe(2);
    expect(unreadAfter(t, '5-0', me)).toBe(0);
    expect(unreadAfter(t, null, me)).toBe(0);
  });
});
