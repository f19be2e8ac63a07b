import type { OnlineUser } from '../chat/types';
import { Avatar } from './Avatar';

interface Props {
  users: OnlineUser[];
  me: string | null;
  connected: boolean;
  open: boolean;
  moderator: boolean;
  onModeration(): void;
  onMute?(name: string): void;
  onBan?(name: string): void;
}

/** Who is online; while this page is disconnected nobody is shown as online (we cannot know). */
export function UsersPanel({ users, me, connected, open, moderator, onModeration, onMute, onBan }: Props) {
  const names = users.map((u) => u.name).sort((a, b) => {
    if (a === me) return -1;
    if (b === me) return 1;
    return a.localeCompare(b, 'ko');
  });
  return (
    <aside id="users-panel" className={`users-panel${connected ? '' : ' stale'}${open ? ' open' : ''}`}
           aria-label="접속 중인 사람" onClick={(e) => e.stopPropagation()}>
      <h2>{connected ? '지금 접속 중' : '연결이 끊겨 접속 상태를 알 수 없어요'}</h2>
      <ul id="users" className="users">
        {names.map((name) => (
          <li key={name} className={`user${name === me ? ' me' : ''}${connected ? '' : ' offline'}`} data-name={name}>
            <Avatar name={name} />
            <span className="user-name">{name}</span>
            {name === me && <span className="you">나</span>}
            {!connected && <span className="visually-hidden">(오프라인)</span>}
            {name !== me && onMute && (
              <button type="button" className="action mod mute" onClick={() => onMute(name)}
                      aria-label={`${name} 님 채팅 제한`}>뮤트</button>
            )}
            {name !== me && onBan && (
              <button type="button" className="action mod ban" onClick={() => onBan(name)}
                      aria-label={`${name} 님 차단`}>차단</button>
            )}
          </li>
        ))}
      </ul>
      <div className="panel-footer">
        <button type="button" id="moderation" className={moderator ? 'pill-button on' : 'pill-button'}
                onClick={onModeration} aria-pressed={moderator}>
          {moderator ? '관리자 모드 끄기' : '관리자 모드'}
        </button>
      </div>
    </aside>
  );
}
