import { describe, expect, it } from 'vitest';

import { buildRows, foldedText } from './rows';
import type { ChatMessage, MessageType } from './types';

const msg = (id: string, type: MessageType, sender: string, timestamp: string): ChatMessage =>
  ({ id, type, sender, content: type === 'CHAT' ? 'hi' : '', timestamp });
const opts = { myNames: new Set(['익명-00001']), timeZone: 'Asia/Seoul' };

describe('date separators', () => {
  it('puts a line at the top and wherever the local day changes', () => {
    // 14:59 UTC is 23:59 in Seoul; 15:01 UTC is the next day there
    const rows = buildRows([
      msg('1-0', 'CHAT', '익명-11111', '2026-11-24T14:59:00.000Z'),
      msg('2-0', 'CHAT', '익명-11111', '2026-11-24T15:01:00.000Z'),
      msg('3-0', 'CHAT', '익명-11111', '2026-11-24T15:02:00.000Z'),
    ], opts);
    expect(rows.map((r) => r.kind)).toEqual(['date', 'chat', 'date', 'chat', 'chat']);
    expect(rows[0]).toMatchObject({ kind: 'date', dateTime: '2026-11-24', label: '2026년 11월 24일 화요일' });
    expect(rows[2]).toMatchObject({ kind: 'date', dateTime: '2026-11-25' });
  });
});

describe('grouping', () => {
  it('a message right after one from the same sender in the same minute is continued', () => {
    const rows = buildRows([
      msg('1-0', 'CHAT', '익명-11111', '2026-11-24T06:00:01.000Z'),
      msg('2-0', 'CHAT', '익명-11111', '2026-11-24T06:00:30.000Z'),
      msg('3-0', 'CHAT', '익명-11111', '2026-11-24T06:01:00.000Z'),
      msg('4-0', 'CHAT', '익명-00001', '2026-11-24T06:01:10.000Z'),
    ], opts).filter((r) => r.kind === 'chat');
    expect(rows.map((r) => r.kind === 'chat' && [r.continued, r.mine])).toEqual([
      [false, false], [true, false], [false, false], [false, true],
    ]);
  });
});

describe('join/leave runs', () => {
  const t = '2026-11-24T06:00:00.000Z';

  it('three or more in a row fold into one line naming how many came and went', () => {
    const rows = buildRows([
      msg('1-0', 'JOIN', '익명-11111', t), msg('2-0', 'JOIN', '익명-22222', t),
      msg('3-0', 'LEAVE', '익명-11111', t), msg('4-0', 'JOIN', '익명-33333', t),
      msg('5-0', 'CHAT', '익명-22222', t),
      msg('6-0', 'LEAVE', '익명-22222', t), msg('7-0', 'LEAVE', '익명-33333', t),
    ], opts);
    expect(rows.map((r) => r.kind)).toEqual(['date', 'notices', 'chat', 'notice', 'notice']);
    const folded = rows[1];
    expect(folded.kind === 'notices' && [folded.joined, folded.left, folded.messages.length]).toEqual([
      ['익명-11111', '익명-22222', '익명-33333'], ['익명-11111'], 4,
    ]);
  });

  it('says it in Korean', () => {
    expect(foldedText(['a', 'b', 'c'], ['d', 'e'])).toBe('3명이 들어오고 2명이 나갔어요');
    expect(foldedText(['a', 'b', 'c'], [])).toBe('3명이 들어왔어요');
    expect(foldedText([], ['a', 'b', 'c'])).toBe('3명이 나갔어요');
  });

  it('a chat between notices breaks the run, and a run is never merged with the message before it', () => {
    const rows = buildRows([
      msg('1-0', 'JOIN', '익명-1', t), msg('2-0', 'JOIN', '익명-2', t),
      msg('3-0', 'CHAT', '익명-1', t),
      msg('4-0', 'JOIN', '익명-3', t), msg('5-0', 'LEAVE', '익명-3', t),
    ], opts);
    expect(rows.map((r) => r.kind)).toEqual(['date', 'notice', 'notice', 'chat', 'notice', 'notice']);
  });
});

describe('resume gap', () => {
  it('shows a row to fill the hole before the first message past it', () => {
    const t = '2026-11-24T06:00:00.000Z';
    const rows = buildRows([
      msg('1-0', 'CHAT', '익명-1', t), msg('50-0', 'CHAT', '익명-1', t), msg('51-0', 'CHAT', '익명-1', t),
    ], { ...opts, gapBefore: '50-0' });
    expect(rows.map((r) => r.kind)).toEqual(['date', 'chat', 'gap', 'chat', 'chat']);
  });
});
