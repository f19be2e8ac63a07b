/* The REST side of the contract: recent messages, history pages, the
 * settings a client should show, and the moderation API. */

import { asChatMessage, DEFAULT_SETTINGS } from './types';
import type { ChatMessage, HistoryPage, ServerSettings } from './types';

export class HttpError extends Error {
  constructor(readonly status: number, path: string) {
    super(`${path} answered ${status}`);
  }
}

async function getJson(path: string, headers: Record<string, string> = {}): Promise<unknown> {
  const response = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json', ...headers } });
  if (!response.ok) throw new HttpError(response.status, path);
  return response.json();
}

function messagesOf(value: unknown): ChatMessage[] {
  if (!Array.isArray(value)) return [];
  return value.map(asChatMessage).filter((m): m is ChatMessage => m !== null);
}

export async function fetchRecent(limit: number): Promise<ChatMessage[]> {
  return messagesOf(await getJson(`/api/messages/recent?limit=${limit}`));
}

export async function fetchHistory(before: string | null, limit: number): Promise<HistoryPage> {
  const query = `limit=${limit}` + (before ? `&before=${encodeURIComponent(before)}` : '');
  const page = (await getJson(`/api/messages?${query}`)) as { messages?: unknown; next_before?: unknown };
  return {
    messages: messagesOf(page?.messages),
    next_before: typeof page?.next_before === 'string' ? page.next_before : null,
  };
}

/** /api/settings, or the defaults from a server that does not have it yet. */
export async function fetchSettings(): Promise<ServerSettings> {
  try {
    const s = (await getJson('/api/settings')) as Partial<ServerSettings>;
    return {
      max_content: typeof s.max_content === 'number' && s.max_content > 0 ? s.max_content : DEFAULT_SETTINGS.max_content,
      slow_mode: typeof s.slow_mode === 'number' && s.slow_mode >= 0 ? s.slow_mode : DEFAULT_SETTINGS.slow_mode,
      access: s.access === 'token' ? 'token' : 'open',
    };
  } catch {
    return DEFAULT_SETTINGS;
  }
}

/* ---- moderation (/api/admin/, Bearer admin token) ------------------------ */

export type AdminCheck = 'ok' | 'wrong-token' | 'unavailable';

async function admin(token: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`/api/admin/${path}`, {
    method,
    cache: 'no-store',
    headers: {
      Accept: 'application/json',
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Is this the admin token? (401/403: no; 404: moderation is off on this server.) */
export async function checkAdminToken(token: string): Promise<AdminCheck> {
  const response = await admin(token, 'GET', 'users');
  if (response.ok) return 'ok';
  if (response.status === 401 || response.status === 403) return 'wrong-token';
  return 'unavailable';
}

async function expectOk(response: Response, what: string): Promise<void> {
  if (!response.ok) throw new HttpError(response.status, what);
}

export async function deleteMessage(token: string, id: string): Promise<void> {
  await expectOk(await admin(token, 'DELETE', `messages/${encodeURIComponent(id)}`), 'messages');
}

export interface Sanction {
  name: string;
  minutes: number;
  reason: string;
}

export async function muteUser(token: string, s: Sanction): Promise<void> {
  await expectOk(await admin(token, 'POST', 'mutes', s), 'mutes');
}

export async function banUser(token: string, s: Sanction): Promise<void> {
  await expectOk(await admin(token, 'POST', 'bans', s), 'bans');
}
