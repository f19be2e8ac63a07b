/* The conversation: history on scroll-up (keeping what the reader looks
 * at in place), following new messages while the reader is at the bottom,
 * and a "new messages" pill when they are not. */

import { memo, useEffect, useLayoutEffect, useRef } from 'react';

import type { PendingSend } from '../chat/pending';
import { clockTime, foldedText, parseTime } from '../chat/rows';
import type { Row } from '../chat/rows';
import type { ChatMessage } from '../chat/types';
import type { HistoryState } from '../chat/useChat';
import { Avatar } from './Avatar';
import { MessageText } from './MessageText';

export interface MessageActions {
  report(m: ChatMessage): void;
  remove?(m: ChatMessage): void;
  mute?(name: string): void;
  ban?(name: string): void;
}

interface Props {
  rows: Row[];
  pending: readonly PendingSend[];
  me: string | null;
  reachedStart: boolean;
  history: HistoryState;
  unread: number;
  actions: MessageActions;
  onLoadOlder(): void;
  onFillGap(): void;
  onRetry(key: string): void;
  onStuck(stuck: boolean): void;
}

const NEAR_BOTTOM = 80;
const NEAR_TOP = 120;

export function MessageList(props: Props) {
  const { rows, pending, reachedStart, history, unread, onLoadOlder, onStuck } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const stuck = useRef(true);
  const before = useRef({ firstKey: '', lastKey: '', height: 0, pending: 0 });

  const setStuck = (value: boolean) => {
    if (stuck.current !== value) {
      stuck.current = value;
      onStuck(value);
    }
  };

  const toBottom = () => {
    const s = scroller.current;
    if (s) s.scrollTop = s.scrollHeight;
    setStuck(true);
  };

  // After each change: keep the reader's place when older rows came in on
  // top, follow the end when they are at the bottom or sent something.
  useLayoutEffect(() => {
    const s = scroller.current;
    if (!s) return;
    const firstKey = rows.find((r) => r.kind !== 'date')?.key ?? '';
    const lastKey = rows.length ? rows[rows.length - 1].key : '';
    const prev = before.current;
    const ownSend = pending.length > prev.pending;
    if (stuck.current || ownSend) {
      s.scrollTop = s.scrollHeight;
      if (ownSend) setStuck(true);
    } else if (firstKey !== prev.firstKey && lastKey === prev.lastKey && prev.height) {
      s.scrollTop += s.scrollHeight - prev.height;
    }
    before.current = { firstKey, lastKey, height: s.scrollHeight, pending: pending.length };
  });

  // Until the list overflows there is nothing to scroll: load more.
  useEffect(() => {
    const s = scroller.current;
    if (s && !reachedStart && history === 'idle' && s.scrollHeight <= s.clientHeight + 40) onLoadOlder();
  }, [rows, reachedStart, history, onLoadOlder]);

  const onScroll = () => {
    const s = scroller.current;
    if (!s) return;
    if (s.scrollTop < NEAR_TOP) onLoadOlder();
    setStuck(s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM);
  };

  const mark = reachedStart ? '대화의 처음이에요'
    : history === 'loading' ? '이전 메시지를 불러오는 중…'
      : history === 'failed' ? '이전 메시지를 불러오지 못했어요'
        : '위로 스크롤하면 이전 메시지';

  return (
    <>
      <div id="scroller" className="scroller" ref={scroller} onScroll={onScroll} tabIndex={0}
           role="region" aria-label="메시지 목록">
        <div id="history-mark" className={reachedStart ? 'history-mark start' : 'history-mark'}>
          {history === 'failed' && !reachedStart
            ? <button type="button" className="link-button" onClick={onLoadOlder}>{mark} · 다시 시도</button>
            : mark}
        </div>
        <ol id="messages" className="messages" aria-live="polite" aria-relevant="additions">
          {rows.map((row) => <RowView key={row.key} row={row} actions={props.actions} onFillGap={props.onFillGap} />)}
          {pending.map((p) => <PendingView key={p.key} p={p} onRetry={props.onRetry} />)}
        </ol>
      </div>
      {unread > 0 && (
        <button id="new-pill" className="new-pill" type="button" onClick={toBottom}>
          새 메시지 {unread}개 ↓
        </button>
      )}
    </>
  );
}

function Time({ timestamp }: { timestamp: string }) {
  const date = parseTime(timestamp);
  if (!date) return <time className="time" />;
  return (
    <time className="time" dateTime={timestamp} title={date.toLocaleString('ko-KR')}>{clockTime(date)}</time>
  );
}

const RowView = memo(function RowView({ row, actions, onFillGap }: { row: Row; actions: MessageActions; onFillGap(): void }) {
  switch (row.kind) {
    case 'date':
      return (
        <li className="day-divider" data-day={row.dateTime}>
          <span>{row.label}</span>
        </li>
      );
    case 'gap':
      return (
        <li className="gap-row">
          <button type="button" className="link-button" onClick={onFillGap}>
            끊긴 동안의 메시지가 더 있어요 · 불러오기
          </button>
        </li>
      );
    case 'notice':
      return <Notice m={row.message} />;
    case 'notices':
      return (
        <li className="notice folded" data-count={row.messages.length}>
          <details>
            <summary className="notice-text">{foldedText(row.joined, row.left)}</summary>
            <ul className="folded-list">
              {row.messages.map((m) => (
                <li key={m.id} className={`notice ${m.type.toLowerCase()}`} data-id={m.id} data-sender={m.sender}>
                  <span className="notice-text"><b>{m.sender}</b>{m.type === 'JOIN' ? ' 님이 들어왔어요' : ' 님이 나갔어요'}</span>
                  <Time timestamp={m.timestamp} />
                </li>
              ))}
            </ul>
          </details>
        </li>
      );
    case 'chat':
      return <ChatRow m={row.message} mine={row.mine} continued={row.continued} actions={actions} />;
  }
});

function Notice({ m }: { m: ChatMessage }) {
  return (
    <li className={`notice ${m.type.toLowerCase()}`} data-id={m.id} data-type={m.type} data-sender={m.sender}>
      <span className="notice-text"><b>{m.sender}</b>{m.type === 'JOIN' ? ' 님이 들어왔어요' : ' 님이 나갔어요'}</span>
      <Time timestamp={m.timestamp} />
    </li>
  );
}

function ChatRow({ m, mine, continued, actions }: { m: ChatMessage; mine: boolean; continued: boolean; actions: MessageActions }) {
  const cls = ['msg', mine && 'mine', continued && 'continued'].filter(Boolean).join(' ');
  return (
    <li className={cls} data-id={m.id} data-type="CHAT" data-sender={m.sender}>
      {!mine && <Avatar name={m.sender} />}
      <div className="msg-main">
        {!mine && <div className="sender">{m.sender}</div>}
        <div className="msg-row">
          <div className="bubble"><MessageText text={m.content} /></div>
          <div className="msg-side">
            <Time timestamp={m.timestamp} />
            <div className="msg-actions">
              {!mine && (
                <button type="button" className="action report" onClick={() => actions.report(m)}
                        aria-label={`${m.sender} 님의 메시지 신고`}>신고</button>
              )}
              {actions.remove && (
                <button type="button" className="action mod delete" onClick={() => actions.remove?.(m)}
                        aria-label={`${m.sender} 님의 메시지 삭제`}>삭제</button>
              )}
              {actions.mute && !mine && (
                <button type="button" className="action mod mute" onClick={() => actions.mute?.(m.sender)}
                        aria-label={`${m.sender} 님 채팅 제한`}>뮤트</button>
              )}
              {actions.ban && !mine && (
                <button type="button" className="action mod ban" onClick={() => actions.ban?.(m.sender)}
                        aria-label={`${m.sender} 님 차단`}>차단</button>
              )}
            </div>
          </div>
        </div>
      </div>
    </li>
  );
}

const PendingView = memo(function PendingView({ p, onRetry }: { p: PendingSend; onRetry(key: string): void }) {
  const cls = ['msg', 'mine', 'local', p.state === 'sending' && 'pending', p.state === 'failed' && 'failed']
    .filter(Boolean).join(' ');
  return (
    <li className={cls} data-key={p.key}>
      <div className="msg-main">
        <div className="msg-row">
          <div className="bubble"><MessageText text={p.content} /></div>
          <div className="msg-side">
            <span className="msg-state">{p.state === 'sending' ? '전송 중' : p.state === 'failed' ? '전송 실패' : ''}</span>
            {p.state === 'failed' && (
              <button type="button" className="retry" onClick={() => onRetry(p.key)}>다시 보내기</button>
            )}
            <Time timestamp={p.at} />
          </div>
        </div>
      </div>
    </li>
  );
});
