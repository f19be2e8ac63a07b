import { describe, expect, it } from 'vitest';

import { asAppError, errorText, refusesSend } from './errors';

const ctx = { maxContent: 500, timeZone: 'Asia/Seoul' };

describe('application errors in words', () => {
  it('slow mode says how long to wait', () => {
    expect(errorText({ code: 'SLOW_MODE', retry_after: 12.2 }, ctx)).toBe('슬로우 모드예요. 13초 후에 다시 보낼 수 있어요.');
    expect(errorText({ code: 'SLOW_MODE' }, ctx)).toBe('슬로우 모드예요. 잠시 후에 다시 보낼 수 있어요.');
  });

  it('a mute says until when, in local time', () => {
    expect(errorText({ code: 'MUTED', until: '2026-11-24T06:30:00.000Z' }, ctx))
      .toBe('관리자가 채팅을 제한했어요. 15:30까지 보낼 수 없어요.');
    expect(errorText({ code: 'MUTED', until: null }, ctx)).toBe('관리자가 채팅을 제한했어요. 해제될 때까지 보낼 수 없어요.');
  });

  it('uses the server limit, and falls back to the server text for unknown codes', () => {
    expect(errorText({ code: 'CONTENT_TOO_LONG' }, ctx)).toContain('최대 500자');
    expect(errorText({ code: 'SOMETHING_NEW', message: 'plain words' }, ctx)).toBe('plain words');
  });

  it('knows which codes refuse a SEND', () => {
    expect(['MUTED', 'SLOW_MODE', 'RATE_LIMITED', 'NOT_STORED'].every((code) => refusesSend({ code }))).toBe(true);
    expect(refusesSend({ code: 'NOT_FOUND' })).toBe(false);
    expect(refusesSend({ code: 'REPLAY_FAILED' })).toBe(false);
  });

  it('reads the receipt from the body', () => {
    expect(asAppError({ code: 'RATE_LIMITED', receipt: 'r-1' })?.receipt).toBe('r-1');
    expect(asAppError({ nope: 1 })).toBeNull();
  });
});
