#!/usr/bin/env node
// Drives the React client at GET / in a real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core), for tests/test_frontend_browser.py.
//
//   node frontend_browser.js '{"scenario": "chat" | "restart", "url": "http://127.0.0.1:PORT",
//                              "outDir": "...", "chromium": "/usr/bin/chromium", "settingsMissing": false}'
//
// Each step prints one JSON line ({"ev": "step", "name", "ms"}); a failed step
// prints {"ev": "fail", "step", "error"} and the process exits 1. The
// restart scenario prints {"ev": "request", "what": "restart"} and waits for
// the test to answer "restarted" on stdin.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const config = JSON.parse(process.argv[2]);
const URL_BASE = config.url.replace(/\/+$/, '');
const HELLO = '안녕하세요 👋 <b>x</b> https://example.com/a?b=1';
const REPLY = '반가워요! 😊 & <i>y</i>';
const NICKNAME = /^익명-\d{5}$/;
const TITLE = 'anonchat · 익명 채팅';
const STEP_TIMEOUT = 10000;
const AXE = fs.readFileSync(require.resolve(path.join(__dirname, 'node_modules', 'axe-core', 'axe.min.js')), 'utf8');

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
    error.step = error.step || name;
    throw error;
  }
}

const stdin = readline.createInterface({ input: process.stdin });
const answers = [];
const waiting = [];
stdin.on('line', (line) => (waiting.length ? waiting.shift()(line) : answers.push(line)));
function ask(what) {
  emit('request', { what });
  return new Promise((resolve) => (answers.length ? resolve(answers.shift()) : waiting.push(resolve)));
}

// ---- pages -------------------------------------------------------------------

const DESKTOP = { viewport: { width: 1100, height: 720 }, colorScheme: 'light' };
const MOBILE = { viewport: { width: 390, height: 760 }, colorScheme: 'dark', isMobile: true, hasTouch: true };

/* Console errors: every one fails the run, except a browser's own
 * network-failure lines while a step cuts the network on purpose, and a
 * 404 for /api/settings from a server that does not have it yet. */
function consoleErrorAllowed(p, text, url) {
  if (config.settingsMissing && /\/api\/settings$/.test(url || '') && /404/.test(text)) return true;
  return p.allow.some((re) => re.test(text) || re.test(url || ''));
}

async function openPage(browser, name, query, device) {
  const context = await browser.newContext({ ...device, locale: 'ko-KR', timezoneId: 'Asia/Seoul', deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const record = { name, page, context, errors: [], sent: [], requests: [], query, allow: [] };
  page.on('pageerror', (error) => record.errors.push(String(error && error.stack || error)));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = msg.location() && msg.location().url;
    if (!consoleErrorAllowed(record, msg.text(), url)) record.errors.push(`console: ${msg.text()} (${url || ''})`);
  });
  // What the page sent, whatever the transport: WebSocket frames and SockJS xhr_send bodies.
  page.on('websocket', (ws) => ws.on('framesent', (frame) => record.sent.push(String(frame.payload))));
  page.on('request', (request) => {
    record.requests.push(request.url());
    const body = request.postData();
    if (body) record.sent.push(body);
  });
  await page.goto(URL_BASE + '/' + query);
  return record;
}

/* While fn runs, the browser's own lines about a cut network are expected. */
async function withNetworkErrors(pages, fn) {
  const patterns = [/ERR_INTERNET_DISCONNECTED/, /ERR_CONNECTION_REFUSED/, /ERR_CONNECTION_RESET/,
    /ERR_EMPTY_RESPONSE/, /WebSocket connection to .* failed/, /ERR_NETWORK_CHANGED/, /ERR_CONNECTION_CLOSED/];
  for (const p of pages) p.allow.push(...patterns);
  try {
    return await fn();
  } finally {
    for (const p of pages) p.allow = p.allow.filter((re) => !patterns.includes(re));
  }
}

async function waitConnected(p, connects) {
  await p.page.waitForFunction((n) => document.body.dataset.state === 'connected' && window.anonchat &&
    window.anonchat.connects >= n && /^익명-\d{5}$/.test(document.getElementById('me').textContent),
  connects || 1);
  return p.page.evaluate(() => ({
    me: document.getElementById('me').textContent,
    status: document.getElementById('status-text').textContent,
    transport: document.getElementById('status').dataset.transport,
  }));
}

function bubbles(p, text) {
  return p.page.evaluate((t) => Array.from(document.querySelectorAll('#messages li.msg'))
    .filter((li) => li.querySelector('.bubble').textContent === t)
    .map((li) => ({
      id: li.dataset.id || null,
      html: li.querySelector('.bubble').innerHTML,
      links: Array.from(li.querySelectorAll('.bubble a')).map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target })),
      elements: li.querySelector('.bubble').querySelectorAll(':not(a)').length,
      sender: (li.querySelector('.sender') || {}).textContent || null,
      time: li.querySelector('time').textContent,
      datetime: li.querySelector('time').dateTime,
      mine: li.classList.contains('mine'),
      local: li.classList.contains('local'),
    })), text);
}

async function waitForBubble(p, text, count) {
  await p.page.waitForFunction(([t, n]) => Array.from(document.querySelectorAll('#messages li.msg[data-id]'))
    .filter((li) => li.querySelector('.bubble').textContent === t).length >= n, [text, count || 1]);
}

/* Every displayed id once, in ascending order, and no duplicate MESSAGE ever received. */
async function checkOrderAndUniqueness(p) {
  const report = await p.page.evaluate(() => {
    const ids = Array.from(document.querySelectorAll('#messages li[data-id]')).map((li) => li.dataset.id);
    const key = (id) => id.split('-').map(Number);
    let sorted = true;
    for (let i = 1; i < ids.length; i++) {
      const a = key(ids[i - 1]), b = key(ids[i]);
      if (a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1])) sorted = false;
    }
    return { ids: ids.length, unique: new Set(ids).size, sorted, duplicates: window.anonchat.duplicates };
  });
  check(report.unique === report.ids, `${p.name}: ${report.ids - report.unique} duplicated message elements`);
  check(report.sorted, `${p.name}: messages are not in id order`);
  check(report.duplicates === 0, `${p.name}: received ${report.duplicates} duplicate MESSAGE frames`);
  return report;
}

/* Type like a person, then Enter; wait until the message came back with its
 * id, having seen the pending state on the way. */
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
    .some((li) => li.querySelector('.bubble').textContent === t) &&
    !Array.from(document.querySelectorAll('#messages li.local')).some((li) => li.querySelector('.bubble').textContent === t), text);
  const sawPending = await p.page.evaluate(() => { window.__pendingObserver.disconnect(); return window.__sawPending; });
  check(sawPending, `${p.name}: no pending state shown before the RECEIPT`);
  const mine = (await bubbles(p, text)).filter((b) => b.mine);
  check(mine.length === 1, `${p.name}: own message shown ${mine.length} times`);
}

function seoulHHMM(iso) {
  const d = new Date(new Date(iso).getTime() + 9 * 3600 * 1000);
  return String(d.getUTCHours()).padStart(2, '0') + ':' + String(d.getUTCMinutes()).padStart(2, '0');
}

async function screenshot(p, file) {
  await p.page.screenshot({ path: file });
  emit('screenshot', { page: p.name, path: file });
}

/* axe-core in the page: no serious or critical violation. */
async function accessible(p, label) {
  await p.page.evaluate(AXE);
  const violations = await p.page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, nodes: v.nodes.length, target: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  emit('axe', { page: p.name, label, violations });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(bad.length === 0, `${p.name} ${label}: axe found ${bad.map((v) => `${v.id} (${v.impact}) at ${v.target}`).join('; ')}`);
}

/* Tab (only the keyboard) until the element with this id has focus. */
async function tabTo(p, id, limit = 40) {
  for (let i = 0; i < limit; i++) {
    if (await p.page.evaluate((x) => document.activeElement && document.activeElement.id === x, id)) return;
    await p.page.keyboard.press('Tab');
  }
  throw new Error(`${p.name}: Tab never reached #${id}`);
}

async function restApi(p, pathAndQuery) {
  return p.page.evaluate(async (u) => (await fetch(u, { cache: 'no-store' })).json(), pathAndQuery);
}

async function launch() {
  return chromium.launch({
    executablePath: config.chromium || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// ---- the chat scenario -----------------------------------------------------------

async function chatScenario(browser, pages) {
  const a = await step('open page A: desktop, light, SockJS (the default)', () => openPage(browser, 'A', '', DESKTOP));
  const b = await step('open page B: mobile, dark, raw WebSocket', () => openPage(browser, 'B', '?transport=websocket', MOBILE));
  pages.push(a, b);

  const [infoA, infoB] = await step('both pages connect and show their nickname and status in plain words', async () => {
    const info = await Promise.all([waitConnected(a), waitConnected(b)]);
    for (const i of info) check(i.status === '연결됨', `status reads "${i.status}"`);
    check(/^sockjs\//.test(info[0].transport), `A is on ${info[0].transport}, not SockJS`);
    check(info[1].transport === 'websocket', `B is on ${info[1].transport}, not the raw WebSocket`);
    return info;
  });
  check(NICKNAME.test(infoA.me) && NICKNAME.test(infoB.me) && infoA.me !== infoB.me, 'nicknames look wrong');
  emit('info', { a: infoA, b: infoB });

  await step('each sees the other in the online list, itself first', async () => {
    const online = (p, name) => p.page.waitForFunction((n) =>
      Array.from(document.querySelectorAll('#users li')).some((li) => li.dataset.name === n), name);
    await Promise.all([online(b, infoA.me), online(a, infoB.me)]);
    const first = await a.page.$eval('#users li', (li) => [li.dataset.name, li.classList.contains('me')]);
    check(first[0] === infoA.me && first[1], 'A does not list itself first');
  });

  await step('A sees B join as a notice', async () => {
    await a.page.waitForFunction((n) => Array.from(document.querySelectorAll('#messages li.notice.join'))
      .some((li) => li.dataset.sender === n), infoB.me);
  });

  await step('B sees A typing, and it clears when A sends', async () => {
    await a.page.focus('#input');
    await a.page.keyboard.type('안녕', { delay: 30 });
    await b.page.waitForFunction((n) => !document.getElementById('typing').hidden &&
      document.getElementById('typing-text').textContent.includes(n), infoA.me);
    await say(a, HELLO);
    await b.page.waitForFunction(() => document.getElementById('typing').hidden);
  });

  await step('B shows A\'s message exactly, as text, with a safe link, sender, local time and date line', async () => {
    await waitForBubble(b, HELLO);
    const shown = await bubbles(b, HELLO);
    check(shown.length === 1, `B shows the message ${shown.length} times`);
    const m = shown[0];
    check(m.elements === 0, `the message was rendered as HTML: ${m.html}`);
    check(m.html.includes('안녕하세요 👋 &lt;b&gt;x&lt;/b&gt; '), `unexpected escaped form: ${m.html}`);
    check(m.links.length === 1 && m.links[0].href === 'https://example.com/a?b=1' &&
      m.links[0].rel === 'noopener noreferrer' && m.links[0].target === '_blank', `link: ${JSON.stringify(m.links)}`);
    check(m.sender === infoA.me && !m.mine, `sender shown as ${m.sender}`);
    check(/^\d\d:\d\d$/.test(m.time) && m.time === seoulHHMM(m.datetime),
      `time ${m.time} is not the local (Asia/Seoul) HH:MM of ${m.datetime}`);
    const day = await b.page.$eval('#messages li.day-divider', (li) => [li.dataset.day, li.textContent]);
    check(/^\d{4}-\d\d-\d\d$/.test(day[0]) && /\d+년 \d+월 \d+일 .요일/.test(day[1]), `date line: ${day}`);
  });

  await step('B replies and A sees it', async () => {
    await say(b, REPLY, { typeFirst: '반' });
    await waitForBubble(a, REPLY);
    const shown = await bubbles(a, REPLY);
    check(shown.length === 1 && shown[0].elements === 0 && shown[0].sender === infoB.me, 'A shows the reply wrongly');
  });

  await step('keyboard only: Tab to the composer, type, Enter sends', async () => {
    await a.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await tabTo(a, 'input');
    await a.page.keyboard.type('키보드로만 보냈어요');
    await a.page.keyboard.press('Enter');
    await waitForBubble(b, '키보드로만 보냈어요');
  });

  await step('axe-core finds no serious violation (desktop light, mobile dark)', async () => {
    await a.page.waitForTimeout(250);   // let the appear animation finish
    await accessible(a, 'conversation');
    await accessible(b, 'conversation');
  });

  await step('screenshots: desktop and mobile', async () => {
    await screenshot(a, path.join(config.outDir, 'desktop.png'));
    await screenshot(b, path.join(config.outDir, 'mobile.png'));
  });

  await step('mobile: the online list opens as a pop-over and Escape closes it', async () => {
    await b.page.click('#users-toggle');
    await b.page.waitForSelector('#users-panel.open');
    check(await b.page.$eval('#users-toggle', (el) => el.getAttribute('aria-expanded')) === 'true', 'aria-expanded not set');
    await screenshot(b, path.join(config.outDir, 'mobile-users.png'));
    await b.page.keyboard.press('Escape');
    await b.page.waitForSelector('#users-panel:not(.open)', { state: 'attached' });
  });

  await step('keyboard only: moderator sign-in opens, answers, and Escape returns focus', async () => {
    a.allow.push(/\/api\/admin\/users/);   // a 404 (no moderation) or 401 here is the point
    const admin = await a.page.evaluate(async () => (await fetch('/api/admin/users')).status);
    await a.page.evaluate(() => document.activeElement && document.activeElement.blur());
    await tabTo(a, 'moderation');
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('dialog[open] #admin-token');
    check(await a.page.evaluate(() => document.activeElement.id) === 'admin-token', 'focus is not in the dialog');
    await a.page.keyboard.type('not-the-token');
    await a.page.keyboard.press('Enter');
    await a.page.waitForSelector('#admin-problem');
    const problem = await a.page.$eval('#admin-problem', (el) => el.textContent);
    const expected = admin === 404 ? '꺼져 있어요' : '맞지 않아요';
    check(problem.includes(expected), `moderator sign-in said "${problem}" (admin API answered ${admin})`);
    await accessible(a, 'moderator dialog');
    await a.page.keyboard.press('Escape');
    await a.page.waitForSelector('dialog[open]', { state: 'detached' });
    check(await a.page.evaluate(() => document.activeElement.id) === 'moderation', 'focus did not return to the button');
    a.allow.pop();
  });

  await step('B sends a few more (history grows past a page)', async () => {
    for (let i = 1; i <= 5; i++) await say(b, `메시지 ${i}`);
    await waitForBubble(a, '메시지 5');
  });

  await step('A reloads with a 3-message page and scrolls up through history', async () => {
    a.requests.length = 0;
    await a.page.goto(URL_BASE + '/?page=3');
    await waitConnected(a);
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
    const history = a.requests.filter((u) => /\/api\/messages\?.*before=/.test(u));
    check(history.length >= 1, 'no /api/messages?before= request was made');
    check(a.requests.some((u) => /\/api\/messages\/recent\?limit=3/.test(u)), 'no /api/messages/recent request');
    await checkOrderAndUniqueness(a);
  });

  await withNetworkErrors([b], () => step('B goes offline: users shown offline, misses two, comes back and resumes once each', async () => {
    b.sent.length = 0;
    await b.context.setOffline(true);
    await b.page.waitForFunction(() => document.body.dataset.state !== 'connected');
    await b.page.waitForFunction(() => document.querySelectorAll('#users li').length > 0 &&
      Array.from(document.querySelectorAll('#users li')).every((li) => li.classList.contains('offline')));
    const status = await b.page.$eval('#status-text', (el) => el.textContent);
    check(/오프라인|연결 끊김|다시 연결/.test(status) && !/sockjs|websocket/i.test(status), `status while offline: ${status}`);
    await say(a, '끊긴 동안 1');
    await say(a, '끊긴 동안 2');
    await b.context.setOffline(false);
    await waitConnected(b, 2);
    await waitForBubble(b, '끊긴 동안 2');
    for (const text of ['끊긴 동안 1', '끊긴 동안 2']) {
      const n = (await bubbles(b, text)).length;
      check(n === 1, `B shows "${text}" ${n} times`);
    }
    check(b.sent.some((s) => s.includes('x-since-id:')), 'B did not resume with x-since-id');
    await b.page.waitForFunction(() => !document.querySelector('#users li.offline'));
    await checkOrderAndUniqueness(b);
  }));

  await withNetworkErrors([a], () => step('A\'s socket is dropped from page JS; it reconnects and resumes', async () => {
    const connects = await a.page.evaluate(() => window.anonchat.connects);
    await a.page.evaluate(() => window.anonchat.drop());
    await say(b, '다시 연결 테스트');
    await waitConnected(a, connects + 1);
    await waitForBubble(a, '다시 연결 테스트');
    check((await bubbles(a, '다시 연결 테스트')).length === 1, 'A shows the resumed message more than once');
    await checkOrderAndUniqueness(a);
  }));

  await step('two visitors come and go (SockJS xhr-streaming, iframe-eventsource): A folds the run into one line', async () => {
    const visitors = [];
    const visitorNames = [];
    // iframe-eventsource runs sockjs-client inside /ws-chat/iframe.html, loaded from this server
    for (const q of ['?transport=xhr-streaming', '?transport=iframe-eventsource']) {
      const v = await openPage(browser, 'V' + visitors.length, q, DESKTOP);
      visitors.push(v);
      pages.push(v);
      const info = await waitConnected(v);
      check(info.transport === 'sockjs/' + q.split('=')[1], `visitor on ${info.transport}`);
      visitorNames.push(info.me);
    }
    for (const v of visitors) {
      await v.page.close();
      await v.context.close();
      pages.splice(pages.indexOf(v), 1);
    }
    // the run may also hold A's own comings and goings from the step before
    await a.page.waitForFunction((names) => Array.from(document.querySelectorAll('#messages li.notice.folded'))
      .some((li) => /^\d+명이 들어오고 \d+명이 나갔어요$/.test(li.querySelector('summary').textContent) &&
        names.every((n) => li.querySelector(`li.notice.join[data-sender="${n}"]`) && li.querySelector(`li.notice.leave[data-sender="${n}"]`))),
    visitorNames);
  });

  await step('a burst past the rate limit: refusals shown with retry, only accepted ones delivered', async () => {
    const total = 100;
    const loopMs = await a.page.evaluate((n) => {
      const input = document.getElementById('input');
      const setValue = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        setValue.call(input, `폭주 ${i}`);
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
      }
      return Math.round(performance.now() - t0);
    }, total);
    await a.page.waitForFunction((n) => {
      const texts = (sel) => Array.from(document.querySelectorAll(sel)).map((li) => li.querySelector('.bubble').textContent)
        .filter((t) => t.startsWith('폭주 '));
      return texts('#messages li.msg.mine[data-id]').length + texts('#messages li.local.failed').length === n &&
        texts('#messages li.local:not(.failed)').length === 0;
    }, total);
    const outcome = await a.page.evaluate(() => {
      const failed = Array.from(document.querySelectorAll('#messages li.local.failed'));
      return {
        failed: failed.map((li) => li.querySelector('.bubble').textContent),
        retryButtons: failed.filter((li) => li.querySelector('button.retry')).length,
        error: document.getElementById('error') ? document.getElementById('error-text').textContent : null,
      };
    });
    emit('info', { sent: total, loopMs, refused: outcome.failed.length, error: outcome.error });
    check(outcome.failed.length > 0, 'the server refused none of the burst (rate limit not hit?)');
    check(outcome.retryButtons === outcome.failed.length, 'refused messages have no retry button');
    check(outcome.error && outcome.error.includes('너무 빨리'), `no rate-limit error shown: ${outcome.error}`);
    const accepted = total - outcome.failed.length;
    await b.page.waitForFunction((n) => Array.from(document.querySelectorAll('#messages li.msg .bubble'))
      .filter((x) => x.textContent.startsWith('폭주 ')).length >= n, accepted);
    await b.page.waitForTimeout(300);
    const seen = await b.page.evaluate(() => Array.from(document.querySelectorAll('#messages li.msg .bubble'))
      .map((x) => x.textContent).filter((t) => t.startsWith('폭주 ')));
    check(seen.length === accepted, `B got ${seen.length} of the burst, A had ${accepted} accepted`);
    check(outcome.failed.every((t) => !seen.includes(t)), 'messages marked refused were delivered');
  });

  await step('B scrolled up: a "new messages" pill and the unread count in the tab title', async () => {
    await b.page.waitForTimeout(1200);  // the rate limit refills
    await b.page.evaluate(() => {
      const s = document.getElementById('scroller');
      s.scrollTop = 0;
      s.dispatchEvent(new Event('scroll'));
    });
    await say(a, '안 읽은 메시지');
    await b.page.waitForSelector('#new-pill');
    check((await b.page.$eval('#new-pill', (el) => el.textContent)).includes('새 메시지 1개'), 'pill text');
    check(await b.page.title() === `(1) ${TITLE}`, `title: ${await b.page.title()}`);
    await screenshot(b, path.join(config.outDir, 'mobile-new-messages.png'));
    await b.page.click('#new-pill');
    await b.page.waitForFunction((t) => document.title === t && !document.getElementById('new-pill'), TITLE);
  });

  await step('final screenshots', async () => {
    await b.page.waitForTimeout(250);
    await screenshot(a, path.join(config.outDir, 'desktop-final.png'));
    await screenshot(b, path.join(config.outDir, 'mobile-final.png'));
  });
}

// ---- the restart scenario ---------------------------------------------------------

async function restartScenario(browser, pages) {
  const a = await step('open page A (SockJS)', () => openPage(browser, 'A', '', DESKTOP));
  const b = await step('open page B (raw WebSocket)', () => openPage(browser, 'B', '?transport=websocket', MOBILE));
  pages.push(a, b);
  await step('both connect', () => Promise.all([waitConnected(a), waitConnected(b)]));
  await step('A talks before the restart', async () => {
    await say(a, '재시작 전 1');
    await say(a, '재시작 전 2');
    await waitForBubble(b, '재시작 전 2');
  });

  await withNetworkErrors([a, b], async () => {
    await step('A goes offline; the server restarts (SIGTERM, start again)', async () => {
      a.sent.length = 0;
      await a.context.setOffline(true);
      await a.page.waitForFunction(() => document.body.dataset.state !== 'connected');
      const answer = await ask('restart');
      check(answer === 'restarted', `the test answered ${answer}`);
    });
    await step('B reconnects by itself and talks while A is still away', async () => {
      await waitConnected(b, 2);
      await say(b, '재시작 후 1');
      await say(b, '재시작 후 2');
    });
    await step('A comes back, resumes with x-since-id, and has every message once, in order', async () => {
      await a.context.setOffline(false);
      await waitConnected(a, 2);
      await waitForBubble(a, '재시작 후 2');
      check(a.sent.some((s) => s.includes('x-since-id:')), 'A did not resume with x-since-id');
      await checkOrderAndUniqueness(a);
      const shown = await a.page.evaluate(() => Array.from(document.querySelectorAll('#messages li.msg[data-id]'))
        .map((li) => li.dataset.id));
      const stored = (await restApi(a, '/api/messages/recent?limit=500')).filter((m) => m.type === 'CHAT').map((m) => m.id);
      const history = (await restApi(a, '/api/messages?limit=500')).messages.filter((m) => m.type === 'CHAT').map((m) => m.id);
      const all = Array.from(new Set([...history, ...stored]));
      const missing = all.filter((id) => !shown.includes(id));
      check(missing.length === 0, `A misses ${missing.length} stored messages: ${missing}`);
      check(all.length === 4 && shown.length === 4, `stored ${all.length}, shown ${shown.length} chat messages`);
    });
  });
  await step('screenshot after the restart', () => screenshot(a, path.join(config.outDir, 'after-restart.png')));
}

// ---- rejoin and moderation (server started with --admin-token) ----

/* A page whose connection drops within --rejoin-grace gets its nickname
 * back (x-rejoin-token), and the other page sees no LEAVE/JOIN for it. */
async function rejoinKeepsNickname(a, b) {
  const before = (await waitConnected(a)).me;
  const connects = await a.page.evaluate(() => window.anonchat.connects);
  const notices = () => b.page.evaluate((n) => document.querySelectorAll(`#messages li.notice[data-sender="${n}"]`).length, before);
  const noticesBefore = await notices();
  await a.page.evaluate(() => window.anonchat.drop());
  const after = (await waitConnected(a, connects + 1)).me;
  check(after === before, `nickname changed from ${before} to ${after}`);
  check(a.sent.some((s) => s.includes('x-rejoin-token:')), 'no x-rejoin-token sent on reconnect');
  await b.page.waitForTimeout(1000);
  check(await notices() === noticesBefore, 'B saw a LEAVE/JOIN for a rejoin');
}

/* Moderator mode on A (server started with --admin-token): delete B's
 * message from the list; B drops it from view. */
async function moderatorDeletes(a, b, adminToken) {
  await say(b, '지울 메시지');
  await waitForBubble(a, '지울 메시지');
  await a.page.click('#moderation');
  await a.page.fill('#admin-token', adminToken);
  await a.page.keyboard.press('Enter');
  await a.page.waitForSelector('.app.moderating');
  const li = a.page.locator('#messages li.msg', { hasText: '지울 메시지' });
  await li.hover();
  await li.locator('button.delete').click();
  await a.page.click('dialog[open] button[type=submit]');
  for (const p of [a, b]) {
    await p.page.waitForFunction(() => !Array.from(document.querySelectorAll('#messages li.msg .bubble'))
      .some((x) => x.textContent === '지울 메시지'));
  }
}

async function moderationScenario(browser, pages) {
  const a = await step('open page A (SockJS)', () => openPage(browser, 'A', '', DESKTOP));
  const b = await step('open page B (raw WebSocket)', () => openPage(browser, 'B', '?transport=websocket', MOBILE));
  pages.push(a, b);
  await step('both connect', () => Promise.all([waitConnected(a), waitConnected(b)]));
  await withNetworkErrors([a], () => step('A drops and rejoins: same nickname, no LEAVE/JOIN on B',
    () => rejoinKeepsNickname(a, b)));
  await step('A, a moderator, deletes a message of B; both pages drop it',
    () => moderatorDeletes(a, b, config.adminToken));
  await step('screenshot of the moderator view', () => screenshot(a, path.join(config.outDir, 'moderator.png')));
}

// ---- main ------------------------------------------------------------------------------

async function main() {
  const browser = await launch();
  const pages = [];
  try {
    if (config.scenario === 'restart') await restartScenario(browser, pages);
    else if (config.scenario === 'moderation') await moderationScenario(browser, pages);
    else await chatScenario(browser, pages);
    for (const p of pages) check(p.errors.length === 0, `page ${p.name}: ${p.errors.join('\n')}`);
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
    stdin.close();
  }
}

main().catch((error) => {
  emit('fail', { step: null, error: String(error && error.stack || error) });
  process.exit(1);
});
