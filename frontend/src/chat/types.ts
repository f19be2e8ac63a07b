/* The wire shapes of the anonchat contract (CONTRACT.md), as the client sees them. */

export type MessageType = 'CHAT' | 'JOIN' | 'LEAVE' | 'DELETE';

export interface ChatMessage {
  id: string;
  type: MessageType;
  sender: string;
  content: string;
  timestamp: string;
  /** Only on DELETE: the id of the message a moderator removed. */
  target?: string;
}

export interface OnlineUser {
  name: string;
  since?: string;
}

export interface TypingEvent {
  sender: string;
  typing: boolean;
}

export interface AppError {
  code: string;
  message?: string;
  receipt?: string;
  /** MUTED: when the mute ends (ISO-8601), or null/absent when it has no end. */
  until?: string | null;
  /** SLOW_MODE: seconds until the next message may go. */
  retry_after?: number | string;
}

export interface HistoryPage {
  messages: ChatMessage[];
  next_before: string | null;
}

export interface ServerSettings {
  max_content: number;
  slow_mode: number;
  access: 'open' | 'token';
}

export const DEFAULT_SETTINGS: ServerSettings = { max_content: 1000, slow_mode: 0, access: 'open' };

const ID = /^\d+-\d+$/;

/** A message object from the server, or null when it does not look like one. */
export function asChatMessage(value: unknown): ChatMessage | null {
  if (typeof value !== 'object' || value === null) return null;
  const m = value as Record<string, unknown>;
  if (typeof m.id !== 'string' || !ID.test(m.id) || typeof m.sender !== 'string') return null;
  if (m.type !== 'CHAT' && m.type !== 'JOIN' && m.type !== 'LEAVE' && m.type !== 'DELETE') return null;
  if (m.type === 'DELETE' && (typeof m.target !== 'string' || !ID.test(m.target))) return null;
  return {
    id: m.id,
    type: m.type,
    sender: m.sender,
    content: typeof m.content === 'string' ? m.content : '',
    timestamp: typeof m.timestamp === 'string' ? m.timestamp : '',
    ...(m.type === 'DELETE' ? { target: m.target as string } : {}),
  };
}
