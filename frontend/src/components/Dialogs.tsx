/* The dialogs: report a message, moderator sign-in, delete, mute and ban. */

import { useState } from 'react';

import type { AdminCheck } from '../chat/api';
import type { ChatMessage } from '../chat/types';
import { Dialog } from './Dialog';

const REASONS = ['스팸·광고', '욕설·괴롭힘', '개인정보 노출', '기타'];

function Quote({ m }: { m: ChatMessage }) {
  return (
    <blockquote className="quote">
      <b>{m.sender}</b>
      <span>{m.content.length > 140 ? m.content.slice(0, 140) + '…' : m.content}</span>
    </blockquote>
  );
}

export function ReportDialog({ m, onReport, onClose }: { m: ChatMessage; onReport(reason: string): void; onClose(): void }) {
  const [reason, setReason] = useState(REASONS[0]);
  const [detail, setDetail] = useState('');
  return (
    <Dialog title="메시지 신고" submitLabel="신고하기" onClose={onClose}
            onSubmit={() => { onReport(detail.trim() ? `${reason}: ${detail.trim()}` : reason); onClose(); }}>
      <Quote m={m} />
      <fieldset className="reasons">
        <legend>이유</legend>
        {REASONS.map((r) => (
          <label key={r}>
            <input type="radio" name="reason" value={r} checked={reason === r} onChange={() => setReason(r)} /> {r}
          </label>
        ))}
      </fieldset>
      <label className="field">
        <span>자세히 (선택)</span>
        <input type="text" value={detail} maxLength={200} onChange={(e) => setDetail(e.target.value)} />
      </label>
    </Dialog>
  );
}

export function ModeratorDialog({ onEnter, onClose }: { onEnter(token: string): Promise<AdminCheck>; onClose(): void }) {
  const [token, setToken] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    if (!token.trim()) return;
    setBusy(true);
    try {
      const result = await onEnter(token.trim());
      if (result === 'ok') onClose();
      else setProblem(result === 'wrong-token' ? '관리자 토큰이 맞지 않아요.' : '이 서버에서는 관리 기능이 꺼져 있어요.');
    } catch {
      setProblem('서버에 연결하지 못했어요.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title="관리자 모드" submitLabel="들어가기" onClose={onClose} onSubmit={() => void submit()} busy={busy}>
      <p className="hint">관리자 토큰을 넣으면 메시지 삭제, 채팅 제한(뮤트), 차단을 할 수 있어요. 토큰은 이 탭에만 남아요.</p>
      <label className="field">
        <span>관리자 토큰</span>
        <input id="admin-token" type="password" autoComplete="off" value={token} autoFocus
               onChange={(e) => { setToken(e.target.value); setProblem(null); }}
               aria-invalid={problem !== null} aria-describedby={problem ? 'admin-problem' : undefined} />
      </label>
      {problem && <p id="admin-problem" className="field-error" role="alert">{problem}</p>}
    </Dialog>
  );
}

export function DeleteDialog({ m, onDelete, onClose }: { m: ChatMessage; onDelete(): void; onClose(): void }) {
  return (
    <Dialog title="메시지 삭제" submitLabel="삭제" danger onClose={onClose} onSubmit={() => { onDelete(); onClose(); }}>
      <p className="hint">모든 사람의 화면과 기록에서 지워져요.</p>
      <Quote m={m} />
    </Dialog>
  );
}

export type SanctionKind = 'mute' | 'ban';

export function SanctionDialog({ kind, name, onApply, onClose }: {
  kind: SanctionKind; name: string; onApply(minutes: number, reason: string): void; onClose(): void;
}) {
  const [minutes, setMinutes] = useState(kind === 'mute' ? 10 : 60);
  const [reason, setReason] = useState('');
  const title = kind === 'mute' ? `${name} 님 채팅 제한` : `${name} 님 차단`;
  return (
    <Dialog title={title} submitLabel={kind === 'mute' ? '제한하기' : '차단하기'} danger onClose={onClose}
            onSubmit={() => { onApply(minutes, reason.trim()); onClose(); }}>
      <p className="hint">
        {kind === 'mute' ? '접속은 그대로 두고 메시지만 보내지 못하게 해요.' : '모든 연결을 끊고 다시 들어오지 못하게 해요.'}
      </p>
      <label className="field">
        <span>기간 (분, 0이면 해제할 때까지)</span>
        <input type="number" min={0} max={525600} value={minutes}
               onChange={(e) => setMinutes(Math.max(0, Math.floor(Number(e.target.value) || 0)))} />
      </label>
      <label className="field">
        <span>사유</span>
        <input type="text" value={reason} maxLength={200} onChange={(e) => setReason(e.target.value)} />
      </label>
    </Dialog>
  );
}
