import type { Status } from '../chat/connection';
import { Avatar } from './Avatar';

/** The connection in plain words (the transport is only in the tooltip). */
export function statusText(status: Status): string {
  switch (status.kind) {
    case 'connecting':
      return status.attempt ? '다시 연결하는 중…' : '연결하는 중…';
    case 'connected':
      return '연결됨';
    case 'waiting':
      return `연결 끊김 · ${status.seconds}초 후 다시 연결`;
    case 'offline':
      return '오프라인 · 네트워크가 돌아오면 다시 연결해요';
  }
}

interface Props {
  status: Status;
  me: string | null;
  userCount: number;
  usersOpen: boolean;
  onToggleUsers(): void;
}

export function TopBar({ status, me, userCount, usersOpen, onToggleUsers }: Props) {
  const kind = status.kind === 'waiting' ? 'disconnected' : status.kind;
  return (
    <header className="topbar">
      <div className="brand">
        <span className="logo" aria-hidden="true" />
        <div>
          <h1>anonchat</h1>
          <p className="subtitle">이름 없이, 가볍게 대화해요</p>
        </div>
      </div>
      <div className="topbar-right">
        <div id="status" className={`status ${kind}`} role="status" aria-live="polite"
             title={status.kind === 'connected' ? `연결 방식: ${status.transport}` : undefined}
             data-transport={status.kind === 'connected' ? status.transport : undefined}>
          <span className="dot" aria-hidden="true" /><span id="status-text">{statusText(status)}</span>
        </div>
        <div className="identity" title="이 연결의 닉네임">
          {me && <Avatar name={me} />}
          <span className="identity-label">나</span>
          <strong id="me">{me ?? '…'}</strong>
        </div>
        <button id="users-toggle" className="users-toggle pill-button" type="button" aria-controls="users-panel"
                aria-expanded={usersOpen} onClick={(e) => { e.stopPropagation(); onToggleUsers(); }}>
          접속자 <span id="user-count">{userCount}</span>
        </button>
      </div>
    </header>
  );
}
