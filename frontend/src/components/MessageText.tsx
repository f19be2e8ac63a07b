import { linkify } from '../chat/linkify';

/** Message content as text (React escapes it), with http(s) links that open in a new tab. */
export function MessageText({ text }: { text: string }) {
  return (
    <>
      {linkify(text).map((s, i) =>
        s.href === undefined ? s.text : (
          <a key={i} href={s.href} target="_blank" rel="noopener noreferrer">{s.text}</a>
        ))}
    </>
  );
}
