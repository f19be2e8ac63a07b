/* The anonchat page: the reference client a React developer copies from.
 *
 * Query parameters (for trying transports by hand and for the browser tests):
 *   ?transport=sockjs (default) | websocket (raw STOMP WebSocket) | one SockJS transport alone:
 *              xhr-streaming, xhr-polling, iframe-eventsource, iframe-htmlfile, ... (sockjs-client's names)
 *   ?page=N    messages per history page (default 50)
 */

import { useCallback, useEffect, useMemo, useState } from 'react';

import { SOCKJS_TRANSPORTS } from './chat/connection';
import type { Transport } from './chat/connection';
import { errorText } from './chat/errors';
import { buildRows } from './chat/rows';
import { newestId, unreadAfter } from './chat/timeline';
import type { ChatMessage } from './chat/types';
import { useChat } from './chat/useChat';
import { Composer } from './components/Composer';
import { DeleteDialog, ModeratorDialog, ReportDialog, SanctionDialog } from './components/Dialogs';
import type { SanctionKind } from './components/Dialogs';
import { MessageList } from './components/MessageList';
import type { MessageActions } from './components/MessageList';
import { TopBar } from './components/TopBar';
import { UsersPanel } from './components/UsersPanel';

const TITLE = 'anonchat · 익명 채팅';
const TRANSPORTS: readonly string[] = ['sockjs', 'websocket', ...SOCKJS_TRANSPORTS];

type Open =
  | { kind: 'report'; m: ChatMessage }
  | { kind: 'delete'; m: ChatMessage }
  | { kind: SanctionKind; name: string }
  | { kind: 'moderator' }
  | null;

function options() {
  const params = new URLSearchParams(location.search);
  const t = (params.get('transport') ?? '').replace(/_/g, '-');
  const page = Number.parseInt(params.get('page') ?? '', 10);
  return {
    transport: (TRANSPORTS.includes(t) ? t : 'sockjs') as Transport,
    pageSize: Math.max(1, Math.min(500, Number.isFinite(page) ? page : 50)),
  } as const;
}

export function App() {
  const opts = useMemo(options, []);
  const chat = useChat(opts);
  const { timeline, pending, status, me, myNames, users, typers, settings, banner, history, moderation, actions } = chat;
  const [usersOpen, setUsersOpen] = useState(false);
  const [open, setOpen] = useState<Open>(null);
  const [stuck, setStuck] = useState(true);
  const [visible, setVisible] = useState(() => document.visibilityState === 'visible');
  const [seenUpTo, setSeenUpTo] = useState<string | null>(null);

  const rows = useMemo(
    () => buildRows(timeline.messages, { myNames, gapBefore: timeline.gap?.before }),
    [timeline.messages, timeline.gap, myNames],
  );

  // Unread: chat from others that arrived while the tab was hidden or the
  // reader was scrolled up. Seen once visible at the bottom.
  const newest = newestId(timeline);
  useEffect(() => {
    if ((visible && stuck) || seenUpTo === null) setSeenUpTo(newest);
  }, [visible, stuck, newest, seenUpTo]);
  const unread = unreadAfter(timeline, seenUpTo, myNames);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${TITLE}` : TITLE;
  }, [unread]);
  useEffect(() => {
    const change = () => setVisible(document.visibilityState === 'visible');
    document.addEventListener('visibilitychange', change);
    return () => document.removeEventListener('visibilitychange', change);
  }, []);

  // On small screens the online list is a pop-over: a tap elsewhere or Escape closes it.
  useEffect(() => {
    if (!usersOpen) return;
    const close = () => setUsersOpen(false);
    const key = (e: KeyboardEvent) => e.key === 'Escape' && close();
    document.addEventListener('click', close);
    document.addEventListener('keydown', key);
    return () => {
      document.removeEventListener('click', close);
      document.removeEventListener('keydown', key);
    };
  }, [usersOpen]);

  useEffect(() => {
    document.body.dataset.state = status.kind === 'waiting' ? 'disconnected' : status.kind;
  }, [status]);

  const messageActions: MessageActions = useMemo(() => ({
    report: (m) => setOpen({ kind: 'report', m }),
    ...(moderation ? {
      remove: (m: ChatMessage) => setOpen({ kind: 'delete', m }),
      mute: (name: string) => setOpen({ kind: 'mute', name }),
      ban: (name: string) => setOpen({ kind: 'ban', name }),
    } : {}),
  }), [moderation]);

  const close = useCallback(() => setOpen(null), []);
  const onStuck = useCallback((value: boolean) => setStuck(value), []);

  return (
    <div className={moderation ? 'app moderating' : 'app'}>
      <TopBar status={status} me={me} userCount={users.length} usersOpen={usersOpen}
              onToggleUsers={() => setUsersOpen((o) => !o)} />
      <main className="chat">
        <section className="conversation" aria-label="대화">
          {moderation && (
            <p className="mod-banner">
              <span>관리자 모드 · 메시지마다 삭제, 뮤트, 차단을 할 수 있어요</span>
              <button type="button" className="link-button" onClick={actions.leaveModeration}>끄기</button>
            </p>
          )}
          <MessageList rows={rows} pending={pending} me={me} reachedStart={timeline.reachedStart} history={history}
                       unread={stuck ? 0 : unread} actions={messageActions}
                       onLoadOlder={actions.loadOlder} onFillGap={actions.fillGap} onRetry={actions.retry}
                       onStuck={onStuck} />
          <div id="typing" className="typing" hidden={typers.length === 0} aria-live="polite">
            <span className="typing-dots" aria-hidden="true"><i /><i /><i /></span>
            <span id="typing-text">
              {typers.length > 3 ? '여러 명이 입력 중' : typers.length ? `${typers.join(', ')} 님이 입력 중` : ''}
            </span>
          </div>
          {banner && (
            <div id={banner.kind === 'error' ? 'error' : 'notice'} className={banner.kind === 'error' ? 'error' : 'info'}
                 role={banner.kind === 'error' ? 'alert' : 'status'}>
              <span id={banner.kind === 'error' ? 'error-text' : 'notice-text'}>{banner.text}</span>
              <button type="button" aria-label="닫기" onClick={actions.dismissBanner}>×</button>
            </div>
          )}
          <Composer connected={chat.connected} maxContent={settings.max_content} slowMode={settings.slow_mode}
                    onSend={actions.send} onTyping={actions.sendTyping}
                    onTooLong={() => actions.notify('error', errorText({ code: 'CONTENT_TOO_LONG' }, { maxContent: settings.max_content }))} />
        </section>
        <UsersPanel users={users} me={me} connected={chat.connected} open={usersOpen} moderator={moderation !== null}
                    onModeration={() => (moderation ? actions.leaveModeration() : setOpen({ kind: 'moderator' }))}
                    onMute={moderation ? (name) => setOpen({ kind: 'mute', name }) : undefined}
                    onBan={moderation ? (name) => setOpen({ kind: 'ban', name }) : undefined} />
      </main>

      {open?.kind === 'report' && (
        <ReportDialog m={open.m} onClose={close} onReport={(reason) => actions.report(open.m.id, reason)} />
      )}
      {open?.kind === 'moderator' && <ModeratorDialog onClose={close} onEnter={actions.enterModeration} />}
      {open?.kind === 'delete' && moderation && (
        <DeleteDialog m={open.m} onClose={close} onDelete={() => void moderation.remove(open.m.id)} />
      )}
      {(open?.kind === 'mute' || open?.kind === 'ban') && moderation && (
        <SanctionDialog kind={open.kind} name={open.name} onClose={close}
                        onApply={(minutes, reason) => void moderation[open.kind]({ name: open.name, minutes, reason })} />
      )}
    </div>
  );
}
