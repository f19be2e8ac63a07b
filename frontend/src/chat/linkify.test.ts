import { describe, expect, it } from 'vitest';

import { linkify } from './linkify';

describe('links', () => {
  it('http and https URLs become links; trailing punctuation stays text', () => {
    expect(linkify('봐요 https://example.com/a?b=1, 그리고 http://x.kr.')).toEqual([
      { text: '봐요 ' }, { text: 'https://example.com/a?b=1', href: 'https://example.com/a?b=1' },
      { text: ', 그리고 ' }, { text: 'http://x.kr', href: 'http://x.kr/' }, { text: '.' },
    ]);
  });

  it('never links other schemes', () => {
    for (const text of ['javascript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://example.com', 'xhttp://a.b']) {
      expect(linkify(text).every((s) => s.href === undefined)).toBe(true);
    }
  });

  it('leaves plain text alone', () => {
    expect(linkify('안녕하세요 👋')).toEqual([{ text: '안녕하세요 👋' }]);
  });
});
