/* From the timeline to what the list shows: a date line where the local
 * day changes, consecutive messages of one sender in one minute grouped
 * (no repeated avatar and name), and runs of join/leave notices folded
 * into one line so a busy room's comings and goings don't bury the talk. */

import { compareIds } from './ids';
import type { ChatMessage } from './types';

export type Row =
  | { kind: 'date'; key: string; label: string; dateTime: string }
  | { kind: 'chat'; key: string; message: ChatMessage; mine: boolean; continued: boolean }
  | { kind: 'notice'; key: string; message: ChatMessage }
  | { kind: 'notices'; key: string; messages: ChatMessage[]; joined: string[]; left: string[] }
  | { kind: 'gap'; key: string };

export interface RowOptions {
  myNames: ReadonlySet<string>;
  /** IANA zone for days and minutes; the browser's own when absent. */
  timeZone?: string;
  /** A run of this many join/leave notices or more is folded. */
  foldAt?: number;
  /** A resume hole sits just before this id (Timeline.gap.before). */
  gapBefore?: string | null;
}

export const DEFAULT_FOLD_AT = 3;

export function buildRows(messages: readonly ChatMessage[], options: RowOptions): Row[] {
  const foldAt = options.foldAt ?? DEFAULT_FOLD_AT;
  const day = dayFormat(options.timeZone);
  const minute = minuteFormat(options.timeZone);
  const rows: Row[] = [];
  let run: ChatMessage[] = [];
  let lastDay: string | null = null;
  let prevChat: { sender: string; minute: string } | null = null;
  let gapBefore = options.gapBefore ?? null;

  const flushRun = () => {
    if (run.length === 0) return;
    if (run.length >= foldAt) {
      rows.push({
        kind: 'notices',
        key: 'notices-' + run[0].id,
        messages: run,
        joined: distinct(run.filter((m) => m.type === 'JOIN').map((m) => m.sender)),
        left: distinct(run.filter((m) => m.type === 'LEAVE').map((m) => m.sender)),
      });
    } else {
      for (const m of run) rows.push({ kind: 'notice', key: m.id, message: m });
    }
    run = [];
  };

  for (const m of messages) {
    if (gapBefore && compareIds(m.id, gapBefore) >= 0) {
      gapBefore = null;
      flushRun();
      rows.push({ kind: 'gap', key: 'gap-' + m.id });
      prevChat = null;
    }
    const date = parseTime(m.timestamp);
    if (date !== null) {
      const d = day.format(date);
      if (d !== lastDay) {
        flushRun();
        if (lastDay !== null || rows.length === 0) {
          rows.push({ kind: 'date', key: 'date-' + d, label: dayLabel(date, options.timeZone), dateTime: d });
        }
        lastDay = d;
        prevChat = null;
      }
    }
    if (m.type === 'JOIN' || m.type === 'LEAVE') {
      run.push(m);
      prevChat = null;
      continue;
    }
    if (m.type !== 'CHAT') continue;
    flushRun();
    const min = date === null ? '' : minute.format(date);
    const continued = prevChat !== null && prevChat.sender === m.sender && prevChat.minute === min && min !== '';
    rows.push({ kind: 'chat', key: m.id, message: m, mine: options.myNames.has(m.sender), continued });
    prevChat = { sender: m.sender, minute: min };
  }
  flushRun();
  return rows;
}

/** "3명이 들어오고 2명이 나갔어요" */
export function foldedText(joined: readonly string[], left: readonly string[]): string {
  if (joined.length && left.length) return `${joined.length}명이 들어오고 ${left.length}명이 나갔어요`;
  if (joined.length) return `${joined.length}명이 들어왔어요`;
  return `${left.length}명이 나갔어요`;
}

function distinct(names: string[]): string[] {
  return Array.from(new Set(names));
}

export function parseTime(timestamp: string): Date | null {
  const d = new Date(timestamp);
  return Number.isNaN(d.getTime()) ? null : d;
}

const formats = new Map<string, Intl.DateTimeFormat>();
function cached(key: string, make: () => Intl.DateTimeFormat): Intl.DateTimeFormat {
  let f = formats.get(key);
  if (f === undefined) {
    f = make();
    formats.set(key, f);
  }
  return f;
}

function dayFormat(timeZone?: string): Intl.DateTimeFormat {
  return cached('day' + (timeZone ?? ''), () =>
    new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }));
}

function minuteFormat(timeZone?: string): Intl.DateTimeFormat {
  return cached('minute' + (timeZone ?? ''), () =>
    new Intl.DateTimeFormat('en-CA', {
      timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }));
}

/** "2026년 11월 24일 화요일" */
export function dayLabel(date: Date, timeZone?: string): string {
  return cached('label' + (timeZone ?? ''), () =>
    new Intl.DateTimeFormat('ko-KR', { timeZone, year: 'numeric', month: 'long', day: 'numeric', weekday: 'long' }))
    .format(date);
}

/** "14:05", the local time of a message. */
export function clockTime(date: Date, timeZone?: string): string {
  return cached('clock' + (timeZone ?? ''), () =>
    new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }))
    .format(date);
}
