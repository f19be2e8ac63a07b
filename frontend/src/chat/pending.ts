/* Own messages between "send" and seeing them come back from the feed.
 *
 * A SEND goes out with a receipt: the RECEIPT means stored, an error on
 * /user/queue/errors naming the receipt means refused (retry offered).
 * The message itself then arrives on /topic/chat like anyone's; the first
 * own CHAT with the same content adopts (removes) the local copy, so it is
 * shown once, at its place in id order. */

import type { ChatMessage } from './types';

export type PendingState = 'sending' | 'sent' | 'failed';

export interface PendingSend {
  readonly key: string;       // the receipt id, also the React key
  readonly content: string;
  readonly state: PendingState;
  readonly at: string;        // local ISO time of the send, shown until adopted
}

export function addPending(list: readonly PendingSend[], p: PendingSend): PendingSend[] {
  return [...list, p];
}

export function settlePending(list: readonly PendingSend[], key: string, state: PendingState): readonly PendingSend[] {
  const i = list.findIndex((p) => p.key === key);
  if (i === -1 || list[i].state === state) return list;
  // A RECEIPT after a failure (or the reverse) cannot happen; "sent" wins anyway.
  if (list[i].state === 'sent' && state === 'failed') return list;
  const next = list.slice();
  next[i] = { ...list[i], state };
  return next;
}

/** The connection went away: whatever had no answer yet may not be stored. */
export function failUnanswered(list: readonly PendingSend[]): readonly PendingSend[] {
  return list.some((p) => p.state === 'sending')
    ? list.map((p) => (p.state === 'sending' ? { ...p, state: 'failed' as const } : p))
    : list;
}

/** An own CHAT came back on the feed: drop the oldest local copy of it. */
export function adoptPending(list: readonly PendingSend[], m: ChatMessage): readonly PendingSend[] {
  if (m.type !== 'CHAT') return list;
  const i = list.findIndex((p) => p.content === m.content);
  return i === -1 ? list : [...list.slice(0, i), ...list.slice(i + 1)];
}

export function removePending(list: readonly PendingSend[], key: string): readonly PendingSend[] {
  return list.filter((p) => p.key !== key);
}
