/* Rendered to static HTML (no DOM needed): what a user's content turns into. */

import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { buildRows } from '../chat/rows';
import type { ChatMessage } from '../chat/types';
import { MessageList } from './MessageList';

const m = (id: string, content: string, sender = '익명-11111'): ChatMessage =>
  ({ id, type: 'CHAT', sender, content, timestamp: '2026-11-24T06:11:54.123Z' });

function render(messages: ChatMessage[], moderator = false): string {
  const noop = () => {};
  return renderToStaticMarkup(
    <MessageList rows={buildRows(messages, { myNames: new Set(['익명-00001']) })} pending={[]} me="익명-00001"
                 reachedStart={false} history="idle" unread={0}
                 actions={{ report: noop, ...(moderator ? { remove: noop, mute: noop, ban: noop } : {}) }}
                 onLoadOlder={noop} onFillGap={noop} onRetry={noop} onStuck={noop} />,
  );
}

describe('MessageList', () => {
  it('renders content as text: markup is escaped, never elements', () => {
    const html = render([m('1-0', '<img src=x onerror=alert(1)> & <b>x</b>')]);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;x&lt;/b&gt;');
    expect(html).not.toContain('<img');
  });

  it('links open in a new tab without giving the page away', () => {
    const html = render([m('1-0', '여기 https://example.com/x 봐요 javascript:alert(1)')]);
    expect(html).toContain('<a href="https://example.com/x" target="_blank" rel="noopener noreferrer">https://example.com/x</a>');
    expect(html).not.toContain('href="javascript');
  });

  it('offers report on others\' messages only, and moderation actions in moderator mode', () => {
    const plain = render([m('1-0', 'a'), m('2-0', 'b', '익명-00001')]);
    expect(plain.match(/class="action report"/g)?.length).toBe(1);
    expect(plain).not.toContain('action mod');
    const mod = render([m('1-0', 'a'), m('2-0', 'b', '익명-00001')], true);
    expect(mod.match(/action mod delete/g)?.length).toBe(2);
    expect(mod.match(/action mod ban/g)?.length).toBe(1);
  });
});
