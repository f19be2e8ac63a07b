/* A modal on the native <dialog>: focus is trapped and Escape closes it,
 * with no library. */

import { useEffect, useRef } from 'react';
import type { FormEvent, ReactNode } from 'react';

interface Props {
  title: string;
  onClose: () => void;
  onSubmit: () => void;
  submitLabel: string;
  danger?: boolean;
  busy?: boolean;
  children: ReactNode;
}

export function Dialog({ title, onClose, onSubmit, submitLabel, danger, busy, children }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    // Focus goes back where it came from when the dialog closes.
    const opener = document.activeElement as HTMLElement | null;
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => opener?.focus?.();
  }, []);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit();
  };
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="dialog-title" onClose={onClose} onCancel={onClose}>
      <form onSubmit={submit} method="dialog">
        <h2 id="dialog-title">{title}</h2>
        <div className="dialog-body">{children}</div>
        <div className="dialog-actions">
          <button type="button" className="button ghost" onClick={onClose}>취소</button>
          <button type="submit" className={danger ? 'button danger' : 'button primary'} disabled={busy}>{submitLabel}</button>
        </div>
      </form>
    </dialog>
  );
}
