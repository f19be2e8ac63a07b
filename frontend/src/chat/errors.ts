/* Application errors from /user/queue/errors, in words a user reads.
 * Slow mode and mutes say when sending works again. */

import { clockTime, parseTime } from './rows';
import type { AppError } from './types';

/** Codes that refuse a chat SEND (the message was not stored). */
const SEND_REFUSALS = new Set([
  'RATE_LIMITED', 'NOT_STORED', 'EMPTY_CONTENT', 'CONTENT_TOO_LONG', 'INVALID_TEXT', 'INVALID_JSON',
  'INVALID_CONTENT', 'MUTED', 'SLOW_MODE', 'BLOCKED_CONTENT',
]);

export function refusesSend(error: AppError): boolean {
  return SEND_REFUSALS.has(error.code);
}

export interface ErrorContext {
  maxContent: number;
  timeZone?: string;
}

export function errorText(error: AppError, ctx: ErrorContext): string {
  switch (error.code) {
    case 'RATE_LIMITED':
      return '너무 빨리 보내고 있어요. 잠시 후 다시 보내 주세요.';
    case 'NOT_STORED':
      return '메시지를 저장하지 못했어요. 다시 보내 주세요.';
    case 'EMPTY_CONTENT':
      return '빈 메시지는 보낼 수 없어요.';
    case 'CONTENT_TOO_LONG':
      return `메시지가 너무 길어요 (최대 ${ctx.maxContent}자).`;
    case 'INVALID_TEXT':
      return '보낼 수 없는 문자가 들어 있어요.';
    case 'REPLAY_FAILED':
      return '끊긴 동안의 메시지를 모두 불러오지 못했어요.';
    case 'BLOCKED_CONTENT':
      return '허용되지 않는 표현이 들어 있어 보내지 않았어요.';
    case 'NOT_FOUND':
      return '그 메시지를 찾을 수 없어요. 이미 지워졌을 수 있어요.';
    case 'SLOW_MODE': {
      const seconds = Math.max(1, Math.ceil(Number(error.retry_after)));
      return Number.isFinite(seconds)
        ? `슬로우 모드예요. ${seconds}초 후에 다시 보낼 수 있어요.`
        : '슬로우 모드예요. 잠시 후에 다시 보낼 수 있어요.';
    }
    case 'MUTED': {
      const until = typeof error.until === 'string' ? parseTime(error.until) : null;
      return until
        ? `관리자가 채팅을 제한했어요. ${clockTime(until, ctx.timeZone)}까지 보낼 수 없어요.`
        : '관리자가 채팅을 제한했어요. 해제될 때까지 보낼 수 없어요.';
    }
    default:
      return typeof error.message === 'string' && error.message ? error.message : '오류가 발생했어요.';
  }
}

export function asAppError(value: unknown): AppError | null {
  if (typeof value !== 'object' || value === null) return null;
  const e = value as Record<string, unknown>;
  if (typeof e.code !== 'string') return null;
  return {
    code: e.code,
    message: typeof e.message === 'string' ? e.message : undefined,
    receipt: typeof e.receipt === 'string' ? e.receipt : undefined,
    until: typeof e.until === 'string' ? e.until : null,
    retry_after: typeof e.retry_after === 'number' || typeof e.retry_after === 'string' ? e.retry_after : undefined,
  };
}
