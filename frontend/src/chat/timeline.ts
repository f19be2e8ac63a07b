/* The message list as a value: what is shown, in id order, and where the
 * live feed resumes from. Pure functions, so React renders a snapshot and
 * the tests (timeline.test.ts) pin every merge rule without a browser.
 *
 * Sources: live MESSAGEs (including an x-since-id replay), the REST
 * `recent` read, history pages on scroll-up, and pages that fill a resume
 * gap. All merge by id: a message already shown is never shown twice, a
 * deleted one never comes back. */

import { compareIds, maxId } from './ids';
import type { ChatMessage, HistoryPage } from './types';

export interface Gap {
  /** The newest id shown before the resume (older side of the hole). */
  after: string;
  /** The oldest id shown past the hole: fill it with pages `before` this. */
  before: string;
}

export interface Timeline {
  /** CHAT/JOIN/LEAVE messages shown, ascending by id. */
  readonly messages: readonly ChatMessage[];
  readonly ids: ReadonlySet<string>;
  /** Ids a moderator removed: never shown again, whichever source brings them. */
  readonly deleted: ReadonlySet<string>;
  /** The newest id of the feed seen (DELETEs included): the next x-since-id. */
  readonly lastSeen: string | null;
  /** A resume that could not replay everything (x-resume-gap) leaves a hole. */
  readonly gap: Gap | null;
  /** The archive has nothing older. */
  readonly reachedStart: boolean;
  /** Live MESSAGEs that repeated one already shown (should stay 0). */
  readonly duplicates: number;
}

export const emptyTimeline: Timeline = {
  messages: [],
  ids: new Set(),
  deleted: new Set(),
  lastSeen: null,
  gap: null,
  reachedStart: false,
  duplicates: 0,
};

type Source = 'live' | 'recent' | 'history';

/** Merge messages from one source. `live` and `recent` advance the resume point. */
export function merge(t: Timeline, incoming: readonly ChatMessage[], source: Source): Timeline {
  let messages = t.messages;
  let ids = t.ids;
  let deleted = t.deleted;
  let lastSeen = t.lastSeen;
  let duplicates = t.duplicates;
  let copied = false;
  const own = () => {
    if (!copied) {
      messages = messages.slice();
      ids = new Set(ids);
      copied = true;
    }
  };
  for (const m of incoming) {
    if (source !== 'history') lastSeen = maxId(lastSeen, m.id);
    if (m.type === 'DELETE') {
      if (m.target === undefined || deleted.has(m.target)) continue;
      deleted = new Set(deleted).add(m.target);
      if (ids.has(m.target)) {
        own();
        const target = m.target;
        messages = messages.filter((x) => x.id !== target);
        (ids as Set<string>).delete(target);
      }
      continue;
    }
    if (deleted.has(m.id)) continue;
    if (ids.has(m.id)) {
      if (source === 'live') duplicates++;
      continue;
    }
    own();
    const at = insertionPoint(messages, m.id);
    (messages as ChatMessage[]).splice(at, 0, m);
    (ids as Set<string>).add(m.id);
  }
  if (messages === t.messages && deleted === t.deleted && lastSeen === t.lastSeen && duplicates === t.duplicates) {
    return t;
  }
  return { ...t, messages, ids, deleted, lastSeen, duplicates };
}

/** The first replayed MESSAGE said x-resume-gap: messages between the old
 * resume point and it are only on /api/messages. */
export function markGap(t: Timeline, resumedFrom: string, firstReplayed: string): Timeline {
  if (compareIds(firstReplayed, resumedFrom) <= 0) return t;
  return { ...t, gap: { after: resumedFrom, before: firstReplayed } };
}

/** A page of older history (scroll-up): reaching its end marks the start. */
export function mergeOlder(t: Timeline, page: HistoryPage): Timeline {
  const merged = merge(t, page.messages, 'history');
  const atStart = page.next_before === null || page.messages.length === 0;
  return atStart === merged.reachedStart ? merged : { ...merged, reachedStart: atStart };
}

/** A page read to fill the resume gap: the gap shrinks to what is still missing. */
export function mergeGapPage(t: Timeline, page: HistoryPage): Timeline {
  const merged = merge(t, page.messages, 'history');
  const gap = t.gap;
  if (gap === null) return merged;
  const oldest = page.messages.length ? page.messages.reduce((a, m) => (compareIds(m.id, a) < 0 ? m.id : a), page.messages[0].id) : null;
  const closed = page.next_before === null || oldest === null || compareIds(oldest, gap.after) <= 0;
  return { ...merged, gap: closed ? null : { after: gap.after, before: oldest } };
}

/** The id to ask for older pages `before`: the oldest shown, or none. */
export function oldestId(t: Timeline): string | null {
  return t.messages.length ? t.messages[0].id : null;
}

function insertionPoint(list: readonly ChatMessage[], id: string): number {
  // Nearly always the end (live) or the start (history): check those first.
  if (list.length === 0 || compareIds(list[list.length - 1].id, id) < 0) return list.length;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareIds(list[mid].id, id) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** CHAT messages by others after `seenUpTo`: the unread count (tab title, "new messages" pill). */
export function unreadAfter(t: Timeline, seenUpTo: string | null, myNames: ReadonlySet<string>): number {
  if (seenUpTo === null) return 0;
  let n = 0;
  for (let i = t.messages.length - 1; i >= 0; i--) {
    const m = t.messages[i];
    if (compareIds(m.id, seenUpTo) <= 0) break;
    if (m.type === 'CHAT' && !myNames.has(m.sender)) n++;
  }
  return n;
}

/** The newest id shown, or null. */
export function newestId(t: Timeline): string | null {
  return t.messages.length ? t.messages[t.messages.length - 1].id : null;
}
