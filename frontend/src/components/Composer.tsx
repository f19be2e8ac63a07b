import { useLayoutEffect, useRef, useState } from 'react';
import type { FormEvent, KeyboardEvent } from 'react';

interface Props {
  connected: boolean;
  maxContent: number;
  slowMode: number;
  onSend(text: string): void;
  onTyping(on: boolean): void;
  onTooLong(): void;
}

/** Characters as the server counts them (code points, so an emoji is one). */
export function codePoints(text: string): number {
  return Array.from(text).length;
}

export function Composer({ connected, maxContent, slowMode, onSend, onTyping, onTooLong }: Props) {
  const [text, setText] = useState('');
  const input = useRef<HTMLTextAreaElement>(null);
  const length = codePoints(text);
  const canSend = connected && text.trim() !== '' && length <= maxContent;

  useLayoutEffect(() => {
    const el = input.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 140)}px`;
  }, [text]);

  const submit = () => {
    if (!text.trim() || !connected) return;
    if (codePoints(text) > maxContent) {
      onTooLong();
      return;
    }
    onTyping(false);
    onSend(text);
    setText('');
    input.current?.focus();
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends, Shift+Enter is a new line; never while a Korean (IME)
    // syllable is still being composed.
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  };

  return (
    <form id="composer" className="composer" autoComplete="off" onSubmit={(e: FormEvent) => { e.preventDefault(); submit(); }}>
      {slowMode > 0 && <p className="slow-mode" id="slow-mode">슬로우 모드 · {slowMode}초에 한 번 보낼 수 있어요</p>}
      <div className="composer-row">
        <textarea id="input" ref={input} rows={1} value={text} placeholder="메시지를 입력하세요"
                  title="Enter 전송 · Shift+Enter 줄바꿈" aria-label="메시지" enterKeyHint="send"
                  aria-describedby={slowMode > 0 ? 'slow-mode' : undefined}
                  onChange={(e) => { setText(e.target.value); onTyping(e.target.value.trim() !== ''); }}
                  onBlur={() => onTyping(false)} onKeyDown={onKeyDown} />
        {length >= maxContent - 200 && (
          <span id="counter" className={length > maxContent ? 'counter over' : 'counter'} aria-live="polite">
            {length} / {maxContent}
          </span>
        )}
        <button id="send" className="send" type="submit" disabled={!canSend}>보내기</button>
      </div>
    </form>
  );
}
