import type { CSSProperties } from 'react';

/** A stable colour per nickname, and its last two digits as the face. */
export function hueOf(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h % 360;
}

export function Avatar({ name, className = '' }: { name: string; className?: string }) {
  const face = name.replace(/\D/g, '').slice(-2) || name.slice(0, 1);
  const style = { '--hue': hueOf(name) } as CSSProperties;
  return <span className={`avatar ${className}`.trim()} style={style} aria-hidden="true">{face}</span>;
}
