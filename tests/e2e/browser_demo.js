#!/usr/bin/env node
// Drives the demo page at GET / in a real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core), for tests/test_browser_demo.py.
//
//   node browser_demo.js '{"url": "http://127.0.0.1:PORT", "outDir": "...",
//                          "chromium": "/usr/bin/chromium", "screenshot": "/tmp/x.png",
//                          "pageA": [QUERY, TRANSPORT], "pageB": [...], "pageC": [...]}'
//
// Two pages (separate browser contexts, so one can go offline alone) chat
// with each other through the server; a third joins later. Each page is
// opened with its QUERY and must say it is connected over its TRANSPORT
// (as its status line names it: "SockJS websocket", "WebSocket"...), on
// every (re)connection: a page that fell back to another transport fails. Each step prints one JSON line
// ({"ev": "step", "name": ..., "ms": ...}); a failed step prints
// {"ev": "fail", "step": ..., "error": ...} and the process exits 1.
'use strict';

const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const config = JSON.parse(process.argv[2]);
const URL_BASE = config.url.replace(/\/+$/, '');
const HELLO = '안녕하세요 👋 <b>x</b>';
const REPLY = '반가워요! 😊 & <i>y</i>';
const NICKNAME = /^익명-\d{5}$/;
const STEP_TIMEOUT = 10000;

function emit(ev, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ ev }, fields)) + '\n');
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const started = Date.now();
async function step(name, fn) {
  const t0 = Date.now();
  try {
    const result = await fn();
    emit('step', { name, ms: Date.now() - t0 });
    return result;
  } catch (error) {
    error.step = name;
    throw error;
  }
}

// ---- page helpers, run in the browser ------------------------------------

async function openPage(browser, name, [query, transport], viewport) {
  check(typeof query === 'string' && typeof transport === 'string', `no [query, transport] for page ${name}`);
  const context = await browser.newContext({
    viewport, locale: 'ko-KR', timezoneId: 'Asia/Seoul', deviceScaleFactor: 1,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const record = { name, page, context, errors: [], sent: [], requests: [], query, transport };
  page.on('pageerror', (error) => record.errors.push(String(error && error.stack || error)));
  // What the page sent, whatever the transport: WebSocket frames and
  // SockJS xhr_send bodies. Used to see the resume header go out.
  page.on('websocket', (ws) => ws.on('framesent', (frame) => record.sent.push(String(frame.payload))));
  page.on('request', (request) => {
    record.requests.push(request.url());
    const body = request.postData();
    if (body) record.sent.push(body);
  });
  await page.goto(URL_BASE + '/' + query);
  return record;
}

async function waitConnected(p, connects) {
  await p.page.waitForFunction((n) => document.body.dataset.state === 'connected' &&
    window.anonchat.state.stats.connects >= n && /^익명-\d{5}$/.test(document.getElementById('me').textContent),
  connects || 1);
  const info = await p.page.evaluate(() => ({
    me: document.getElementById('me').textContent,
    status: document.getElementById('status-text').textContent,
  }));
  check(info.status.endsWith(' · ' + p.transport),
    `${p.name}: connected as "${info.status}", not over ${p.transport}`);
  return info;
}

function bubbles(p, text) {
  return p.page.evaluate((t) => Array.from(document.querySelectorAll('#messages li.msg'))
    .filter((li) => li.querySelector('.bubble').textContent === t)
    .map((li) => ({
      id: li.dataset.id || null,
      html: li.querySelector('.bubble').innerHTML,
      elements: li.querySelector('.bubble').children.length,
      sender: (li.querySelector('.sender') || {}).textContent || null,
      time: li.querySelector('time').textContent,
      datetime: li.querySelector('time').dateTime,
      pending: li.classList.contains('pending'),
      failed: li.classList.contains('failed'),
      mine: li.classList.contains('mine'),
    })), text);
}

async function waitForBubble(p, text, count) {
  await p.page.waitForFunction(([t, n]) => Array.from(document.querySelectorAll('#messages li.msg[data-id]'))
    .filter((li) => li.querySelector('.bubble').textContent === t).length >= n, [text, count || 1]);
}

/* Every displayed id once, in ascending order, and no duplicate ever received. */
async function checkOrderAndUniqueness(p) {
  const report = await p.page.evaluate(() => {
    const ids = Array.from(document.querySelectorAll('#messages li[data-id]')).map((li) => li.dataset.id);
    const key = (id) => id.split('-').map(Number);
    let sorted = true;
    for (let i = 1; i < ids.length; i++) {
      const a = key(ids[i - 1]), b = key(ids[i]);
      if (a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1])) sorted = false;
    }
    return { ids: ids.length, unique: new Set(ids).size, sorted, duplicates: window.anonchat.state.stats.duplicates };
  });
  check(report.unique === report.ids, `${p.name}: ${report.ids - report.unique} duplicated message elements`);
  check(report.sorted, `${p.name}: messages are not in id order`);
  check(report.duplicates === 0, `${p.name}: received ${report.duplicates} duplicate MESSAGE frames`);
  return report;
}

/* Type like a person (input events), then Enter; wait until the RECEIPT
 * settled it, having seen the pending state on the way. */
async function say(p, text, { typeFirst } = {}) {
  await p.page.evaluate(() => {
    window.__sawPending = false;
    const list = document.getElementById('messages');
    const seen = new MutationObserver(() => {
      if (list.querySelector('li.pending')) window.__sawPending = true;
    });
    seen.observe(list, { childList: true, subtree: true, attributes: true });
    window.__pendingObserver = seen;
  });
  await p.page.focus('#input');
  if (typeFirst) await p.page.keyboard.type(typeFirst, { delay: 20 });
  await p.page.fill('#input', text);
  await p.page.keyboard.press('Enter');
  await p.page.waitForFunction((t) => Array.from(document.querySelectorAll('#messages li.msg.mine[data-id]'))
    .some((li) => li.querySelector('.bubble').textContent === t && !li.classList.contains('pending')), text);
  const sawPending = await p.page.evaluate(() => { window.__pendingObserver.disconnect(); return window.__sawPending; });
  check(sawPending, `${p.name}: no pending state shown before the RECEIPT`);
  const mine = (await bubbles(p, text)).filter((b) => b.mine);
  check(mine.length === 1 && !mine[0].failed, `${p.name}: own message shown ${mine.length} times or failed`);
}

function seoulHHMM(iso) {
  const d = new Date(new Date(iso).getTime() + 9 * 3600 * 1000);
  return String(d.getUTCHours()).padStart(2, '0') + ':' + String(d.getUTCMinutes()).padStart(2, '0');
}

async function screenshot(p, file) {
  await p.page.screenshot({ path: file });
  emit('screenshot', { page: p.name, path: file });
}

// ---- the scenario ----------------------------------------------------------

async function main() {
  const browser = await chromium.launch({
    executablePath: config.chromium || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const pages = [];
  try {
    const a = await step('open page A on ' + config.pageA[1], () => openPage(browser, 'A', config.pageA, { width: 1100, height: 720 }));
    const b = await step('open page B on ' + config.pageB[1], () => openPage(browser, 'B', config.pageB, { width: 400, height: 760 }));
    pages.push(a, b);

    const [infoA, infoB] = await step('both pages connect and show their nickname', () =>
      Promise.all([waitConnected(a), waitConnected(b)]));
    check(NICKNAME.test(infoA.me) && NICKNAME.test(infoB.me), 'nicknames look wrong');
    check(infoA.me !== infoB.me, 'both pages got the same nickname');
    emit('info', { a: infoA, b: infoB });

    await step('stomp-lite parses split, batched, content-length and escaped frames', async () => {
      const result = await a.page.evaluate(() => {
        const frames = [];
        let beats = 0;
        const parser = new window.StompLite.FrameParser((f) => frames.push(f), () => beats++);
        const body = '{"content":"한\\u0000글 👋"}'.replace('\\u0000', '\u0000');
        const bytes = new TextEncoder().encode(body).length;
        // One frame over three messages, cut inside a multi-byte character.
        const whole = `MESSAGE\ndestination:/topic/chat\ncontent-length:${bytes}\nx-note:a\\cb\\nc\\\\d\n\n${body}\u0000`;
        const raw = new TextEncoder().encode(whole);
        const cut = raw.indexOf(0xED) + 1;   // inside 한
        parser.feed(raw.slice(0, 10).buffer);
        parser.feed(raw.slice(10, cut).buffer);
        parser.feed(raw.slice(cut).buffer);
        // Heart-beats, then two frames in one message, CRLF lines.
        parser.feed('\n\r\nRECEIPT\r\nreceipt-id:r-1\r\n\r\n\u0000MESSAGE\nsubscription:sub-0\n\nplain\u0000\n');
        return { frames, beats };
      });
      check(result.frames.length === 3, `parsed ${result.frames.length} frames`);
      const [m, r, p] = result.frames;
      check(m.body === '{"content":"한\u0000글 👋"}', `content-length body: ${JSON.stringify(m.body)}`);
      check(m.headers['x-note'] === 'a:b\nc\\d', `header unescaping: ${JSON.stringify(m.headers['x-note'])}`);
      check(r.command === 'RECEIPT' && r.headers['receipt-id'] === 'r-1', 'CRLF frame');
      check(p.body === 'plain' && result.beats === 3, `batched frame / heart-beats (${result.beats})`);
    });

    await step('each sees the other in the online list', async () => {
      const online = (p, name) => p.page.waitForFunction((n) =>
        Array.from(document.querySelectorAll('#users li')).some((li) => li.dataset.name === n), name);
      await Promise.all([online(b, infoA.me), online(a, infoB.me)]);
      const self = await a.page.$eval('#users li.me', (li) => li.dataset.name);
      check(self === infoA.me, 'A does not mark itself in the online list');
    });

    await step('each sees the other JOIN as a notice', async () => {
      await a.page.waitForFunction((n) => Array.from(document.querySelectorAll('#messages li.notice.join'))
        .some((li) => li.querySelector('b').textContent === n), infoB.me);
    });

    await step('B sees A typing, and it clears when A sends', async () => {
      await a.page.focus('#input');
      await a.page.keyboard.type('안녕', { delay: 30 });
      await b.page.waitForFunction((n) => !document.getElementById('typing').hidden &&
        document.getElementById('typing-text').textContent.includes(n), infoA.me);
      await say(a, HELLO);
      await b.page.waitForFunction(() => document.getElementById('typing').hidden);
    });

    await step('B shows A\'s message exactly, as text, with sender and local time', async () => {
      await waitForBubble(b, HELLO);
      const shown = await bubbles(b, HELLO);
      check(shown.length === 1, `B shows the message ${shown.length} times`);
      const m = shown[0];
      check(m.elements === 0, `the message was rendered as HTML: ${m.html}`);
      check(m.html === '안녕하세요 👋 &lt;b&gt;x&lt;/b&gt;', `unexpected escaped form: ${m.html}`);
      check(m.sender === infoA.me, `sender shown as ${m.sender}`);
      check(!m.mine, 'B shows A\'s message as its own');
      check(/^\d\d:\d\d$/.test(m.time) && m.time === seoulHHMM(m.datetime),
        `time ${m.time} is not the local (Asia/Seoul) HH:MM of ${m.datetime}`);
    });

    await step('B replies and A sees it', async () => {
      await say(b, REPLY, { typeFirst: '반' });
      await waitForBubble(a, REPLY);
      const shown = await bubbles(a, REPLY);
      check(shown.length === 1 && shown[0].elements === 0 && shown[0].sender === infoB.me, 'A shows the reply wrongly');
    });

    await step('screenshots of the conversation', async () => {
      await a.page.waitForTimeout(250);   // let the appear animation finish
      await screenshot(a, path.join(config.outDir, 'page-a.png'));
      await screenshot(b, path.join(config.outDir, 'page-b.png'));
      if (config.screenshot) await screenshot(a, config.screenshot);
    });

    await step('B sends a few more (history grows past a page)', async () => {
      for (let i = 1; i <= 5; i++) await say(b, `메시지 ${i}`);
      await waitForBubble(a, '메시지 5');
    });

    let a2 = a;
    await step('A reloads with a 3-message page and scrolls up through history', async () => {
      a.requests.length = 0;
      await a.page.goto(URL_BASE + '/?page=3' + (a.query ? '&' + a.query.replace(/^\?/, '') : ''));
      const info = await waitConnected(a);
      await waitForBubble(a, '메시지 5');
      for (let i = 0; i < 40; i++) {
        const done = await a.page.evaluate((t) => {
          const scroller = document.getElementById('scroller');
          scroller.scrollTop = 0;
          scroller.dispatchEvent(new Event('scroll'));
          const found = Array.from(document.querySelectorAll('#messages li.msg[data-id] .bubble')).some((x) => x.textContent === t);
          return found && document.getElementById('history-mark').classList.contains('start');
        }, HELLO);
        if (done) break;
        await a.page.waitForTimeout(150);
      }
      const shown = await bubbles(a, HELLO);
      check(shown.length === 1, `after scrolling up A shows the first message ${shown.length} times`);
      check(shown[0].mine, 'A does not recognise its message from before the reload as its own');
      const pages = a.requests.filter((u) => /\/api\/messages\?.*before=/.test(u));
      check(pages.length >= 1, 'no /api/messages?before= request was made');
      check(a.requests.some((u) => /\/api\/messages\/recent\?limit=3/.test(u)), 'no /api/messages/recent request');
      await checkOrderAndUniqueness(a);
      emit('info', { historyRequests: pages.length });
      a2 = Object.assign(a, { me: info.me });
    });

    await step('B goes offline, misses two messages, comes back and resumes once each', async () => {
      b.sent.length = 0;
      await b.context.setOffline(true);
      await b.page.waitForFunction(() => document.body.dataset.state !== 'connected');
      await say(a2, '끊긴 동안 1');
      await say(a2, '끊긴 동안 2');
      await b.context.setOffline(false);
      await waitConnected(b, 2);
      await waitForBubble(b, '끊긴 동안 2');
      for (const text of ['끊긴 동안 1', '끊긴 동안 2']) {
        const n = (await bubbles(b, text)).length;
        check(n === 1, `B shows "${text}" ${n} times`);
      }
      check(b.sent.some((s) => s.includes('x-since-id:')), 'B did not resume with x-since-id');
      await checkOrderAndUniqueness(b);
    });

    await step('A\'s socket is dropped from page JS; it reconnects and resumes', async () => {
      const connects = await a2.page.evaluate(() => window.anonchat.state.stats.connects);
      await a2.page.evaluate(() => window.anonchat.drop());
      await say(b, '다시 연결 테스트');
      await waitConnected(a2, connects + 1);
      await waitForBubble(a2, '다시 연결 테스트');
      check((await bubbles(a2, '다시 연결 테스트')).length === 1, 'A shows the resumed message more than once');
      await checkOrderAndUniqueness(a2);
    });

    await step('a third page on ' + config.pageC[1] + ' connects and sees the conversation', async () => {
      const c = await openPage(browser, 'C', config.pageC, { width: 800, height: 600 });
      pages.push(c);
      const info = await waitConnected(c);
      emit('info', { c: info });
      await waitForBubble(c, '다시 연결 테스트');
    });

    await step('a burst past the rate limit: refusals shown inline, only accepted ones delivered', async () => {
      // 100 at once: the test server runs --rate-limit 5 (burst 10, refills
      // 5 a second), so some are refused unless the page took over 18 s.
      const total = 100;
      const loopMs = await a2.page.evaluate((n) => {
        const input = document.getElementById('input');
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          input.value = `폭주 ${i}`;
          input.dispatchEvent(new Event('input'));
          input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
        }
        return Math.round(performance.now() - t0);
      }, total);
      // Every send settles: confirmed (with its id) or refused.
      await a2.page.waitForFunction((n) => {
        const mine = Array.from(document.querySelectorAll('#messages li.msg.mine'))
          .filter((li) => li.querySelector('.bubble').textContent.startsWith('폭주 '));
        return mine.length === n && mine.every((li) => li.classList.contains('failed') ||
          (li.dataset.id && !li.classList.contains('pending')));
      }, total);
      const outcome = await a2.page.evaluate(() => {
        const mine = Array.from(document.querySelectorAll('#messages li.msg.mine'))
          .filter((li) => li.querySelector('.bubble').textContent.startsWith('폭주 '));
        return {
          failed: mine.filter((li) => li.classList.contains('failed')).map((li) => li.querySelector('.bubble').textContent),
          retryButtons: mine.filter((li) => li.querySelector('button.retry')).length,
          error: document.getElementById('error').hidden ? null : document.getElementById('error-text').textContent,
        };
      });
      emit('info', { sent: total, loopMs, refused: outcome.failed.length, error: outcome.error });
      check(outcome.failed.length > 0, 'the server refused none of the burst (rate limit not hit?)');
      check(outcome.retryButtons === outcome.failed.length, 'refused messages have no retry button');
      check(outcome.error && outcome.error.includes('너무 빨리'), `no inline rate-limit error: ${outcome.error}`);
      const accepted = total - outcome.failed.length;
      await b.page.waitForFunction((n) => Array.from(document.querySelectorAll('#messages li.msg .bubble'))
        .filter((x) => x.textContent.startsWith('폭주 ')).length >= n, accepted);
      await b.page.waitForTimeout(300);
      const seen = await b.page.evaluate(() => Array.from(document.querySelectorAll('#messages li.msg .bubble'))
        .map((x) => x.textContent).filter((t) => t.startsWith('폭주 ')));
      check(seen.length === accepted, `B got ${seen.length} of the burst, A had ${accepted} accepted`);
      const refusedDelivered = outcome.failed.filter((t) => seen.includes(t));
      check(refusedDelivered.length === 0, `messages marked refused were delivered: ${refusedDelivered}`);
    });

    await step('final screenshots', async () => {
      await b.page.waitForTimeout(250);
      await screenshot(a2, path.join(config.outDir, 'page-a-final.png'));
      await screenshot(b, path.join(config.outDir, 'page-b-final.png'));
    });

    for (const p of pages) check(p.errors.length === 0, `page ${p.name} threw: ${p.errors.join('\n')}`);
    emit('done', { ms: Date.now() - started });
  } catch (error) {
    for (const p of pages) {
      try {
        const file = path.join(config.outDir, `failure-${p.name}.png`);
        await p.page.screenshot({ path: file });
        emit('screenshot', { page: p.name, path: file });
      } catch (e) { /* the page may be gone */ }
      if (p.errors.length) emit('pageerrors', { page: p.name, errors: p.errors });
    }
    emit('fail', { step: error.step || null, error: String(error && error.message || error) });
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  emit('fail', { step: null, error: String(error && error.stack || error) });
  process.exit(1);
});
