/*
 * The anonchat demo page: the wire contract (docs: CONTRACT.md) from a
 * browser, with nothing but sockjs-lite.js and stomp-lite.js.
 *
 * Query parameters:
 *   ?transport=sockjs (default) | websocket (raw STOMP WebSocket) |
 *              xhr_streaming | xhr_polling (SockJS, that transport only)
 *   ?page=N    messages per history page (default 50)
 *
 * Everything a user wrote is rendered with textContent, never as HTML.
 */
(function () {
  'use strict';

  var params = new URLSearchParams(location.search);
  var TRANSPORT = params.get('transport') || 'sockjs';
  var PAGE_SIZE = Math.max(1, Math.min(500, parseInt(params.get('page'), 10) || 50));
  var ENDPOINT = '/ws-chat';
  var MAX_CONTENT = 1000;
  var TYPING_EVERY = 2000;     // ms between {"typing":true} while typing
  var TYPING_EXPIRES = 6000;   // ms a peer's indicator stays without news
  var ERROR_TEXT = {
    RATE_LIMITED: '너무 빨리 보내고 있어요. 잠시 후 다시 보내 주세요.',
    NOT_STORED: '메시지를 저장하지 못했어요. 다시 보내 주세요.',
    EMPTY_CONTENT: '빈 메시지는 보낼 수 없어요.',
    CONTENT_TOO_LONG: '메시지가 너무 길어요 (최대 ' + MAX_CONTENT + '자).',
    INVALID_TEXT: '보낼 수 없는 문자가 들어 있어요.',
    REPLAY_FAILED: '끊긴 동안의 메시지를 모두 불러오지 못했어요.'
  };
  /* Errors that mean "your last SEND was refused" (it gets no RECEIPT). */
  var SEND_ERRORS = ['RATE_LIMITED', 'NOT_STORED', 'EMPTY_CONTENT', 'CONTENT_TOO_LONG',
    'INVALID_TEXT', 'INVALID_JSON', 'INVALID_CONTENT'];

  function $(id) { return document.getElementById(id); }
  var ui = {
    body: document.body,
    me: $('me'), meAvatar: $('me-avatar'),
    status: $('status'), statusText: $('status-text'),
    list: $('messages'), scroller: $('scroller'), historyMark: $('history-mark'),
    newPill: $('new-pill'),
    users: $('users'), userCount: $('user-count'), usersToggle: $('users-toggle'), usersPanel: $('users-panel'),
    typing: $('typing'), typingText: $('typing-text'),
    error: $('error'), errorText: $('error-text'), errorClose: $('error-close'),
    form: $('composer'), input: $('input'), sendButton: $('send'), counter: $('counter')
  };

  /* ---- state ---------------------------------------------------------- */

  var state = {
    client: null,
    connected: false,
    me: null,                 // nickname of the current connection
    myNames: rememberedNames(), // every nickname this tab has had
    ids: [],                  // displayed message ids, ascending
    elements: new Map(),      // id -> <li>
    lastSeen: null,           // the newest id seen (resume point)
    reachedStart: false,
    loadingOlder: false,
    pending: [],              // own messages sent, not yet seen back
    typers: new Map(),        // sender -> expiry timer
    typingSentAt: 0,
    typingOn: false,
    attempt: 0,
    reconnectTimer: null,
    stuck: true,              // the reader is at the bottom: follow new messages
    fallbackRaw: false,       // SockJS unusable here: plain WebSocket instead
    stats: { duplicates: 0, received: 0, replayed: 0, historyPages: 0, connects: 0 }
  };

  /* The nicknames this tab had (kept over reloads, in this tab only), so
   * its own earlier messages still show as its own. */
  function rememberedNames() {
    try {
      var names = JSON.parse(sessionStorage.getItem('anonchat.names') || '[]');
      return new Set(Array.isArray(names) ? names.filter(function (n) { return typeof n === 'string'; }) : []);
    } catch (e) {
      return new Set();
    }
  }
  function rememberName(name) {
    state.myNames.add(name);
    try {
      sessionStorage.setItem('anonchat.names', JSON.stringify(Array.from(state.myNames).slice(-20)));
    } catch (e) { /* storage may be off; then only this page load remembers */ }
  }

  /* Ids are "<ms>-<seq>": compare them as numbers, never as strings. */
  function idKey(id) {
    var dash = id.indexOf('-');
    return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
  }
  function compareIds(a, b) {
    var x = idKey(a), y = idKey(b);
    return x[0] - y[0] || x[1] - y[1];
  }

  /* ---- rendering ---------------------------------------------------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hueOf(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  function avatar(name) {
    var node = el('span', 'avatar', name.replace(/\D/g, '').slice(-2) || name.slice(0, 1));
    node.style.setProperty('--hue', hueOf(name));
    node.setAttribute('aria-hidden', 'true');
    return node;
  }

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  function timeNode(timestamp) {
    var node = el('time', 'time');
    var date = new Date(timestamp);
    if (!isNaN(date.getTime())) {
      node.textContent = pad(date.getHours()) + ':' + pad(date.getMinutes());
      node.dateTime = timestamp;
      node.title = date.toLocaleString('ko-KR');
    }
    return node;
  }

  function chatElement(message, mine) {
    var li = el('li', 'msg' + (mine ? ' mine' : ''));
    if (!mine) li.appendChild(avatar(message.sender));
    var main = el('div', 'msg-main');
    if (!mine) main.appendChild(el('div', 'sender', message.sender));
    var row = el('div', 'msg-row');
    row.appendChild(el('div', 'bubble', message.content));
    var side = el('div', 'msg-side');
    side.appendChild(el('span', 'msg-state'));
    side.appendChild(timeNode(message.timestamp));
    row.appendChild(side);
    main.appendChild(row);
    li.appendChild(main);
    return li;
  }

  function noticeElement(message) {
    var li = el('li', 'notice ' + message.type.toLowerCase());
    var span = el('span', 'notice-text');
    span.appendChild(el('b', null, message.sender));
    span.appendChild(document.createTextNode(message.type === 'JOIN' ? ' 님이 들어왔어요' : ' 님이 나갔어요'));
    li.appendChild(span);
    li.appendChild(timeNode(message.timestamp));
    return li;
  }

  function nearBottom() {
    var s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.newPill.hidden = true;
    state.stuck = true;
  }

  /* Scroll once per frame however many messages arrived: measuring and
   * scrolling per message would force a layout each (a long replay, a
   * burst of sends). */
  var scrollQueued = false;
  function scheduleScrollToBottom() {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(function () {
      scrollQueued = false;
      scrollToBottom();
    });
  }

  /* Where a message with this id goes: before the first larger id, else
   * before our own still-unconfirmed messages, else at the end. */
  function insertSorted(id, li) {
    var lo = 0, hi = state.ids.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (compareIds(state.ids[mid], id) < 0) lo = mid + 1; else hi = mid;
    }
    state.ids.splice(lo, 0, id);
    var next = lo + 1 < state.ids.length ? state.elements.get(state.ids[lo + 1]) : ui.list.querySelector('li.local');
    ui.list.insertBefore(li, next || null);
    state.elements.set(id, li);
    regroup(li);
    regroup(li.nextElementSibling);
    return lo === state.ids.length - 1;
  }

  /* A chat message right after one from the same sender in the same
   * minute drops its avatar and name, like any messenger. */
  function regroup(li) {
    if (!li || !li.classList.contains('msg')) return;
    var prev = li.previousElementSibling;
    var same = !!prev && prev.classList.contains('msg') && prev.dataset.sender === li.dataset.sender &&
      prev.dataset.minute === li.dataset.minute;
    li.classList.toggle('continued', same);
  }

  function isValidMessage(m) {
    return m && typeof m.id === 'string' && /^\d+-\d+$/.test(m.id) && typeof m.sender === 'string' &&
      (m.type === 'CHAT' || m.type === 'JOIN' || m.type === 'LEAVE');
  }

  /* Show one message (from any source); false when it was already shown. */
  function addMessage(message, live) {
    if (!isValidMessage(message)) return false;
    if (state.elements.has(message.id)) {
      if (live) state.stats.duplicates++;
      return false;
    }
    if (live && (state.lastSeen === null || compareIds(message.id, state.lastSeen) > 0)) state.lastSeen = message.id;
    var li;
    var mine = message.type === 'CHAT' && state.myNames.has(message.sender);
    var adopted = mine ? adoptPending(message) : null;
    if (adopted) {
      li = adopted;
      li.parentNode.removeChild(li);
    } else if (message.type === 'CHAT') {
      li = chatElement(message, mine);
    } else {
      li = noticeElement(message);
    }
    li.dataset.id = message.id;
    li.dataset.type = message.type;
    li.dataset.sender = message.sender;
    li.dataset.minute = String(message.timestamp).slice(0, 16);
    var last = insertSorted(message.id, li);
    if (live && last) {
      if (state.stuck || mine) scheduleScrollToBottom();
      else ui.newPill.hidden = false;
    }
    return true;
  }

  /* ---- own messages: pending until the RECEIPT ------------------------ */

  function adoptPending(message) {
    for (var i = 0; i < state.pending.length; i++) {
      var p = state.pending[i];
      if (!p.adopted && p.content === message.content) {
        p.adopted = true;
        var li = p.li;
        li.classList.remove('local');
        var old = li.querySelector('time');
        old.parentNode.replaceChild(timeNode(message.timestamp), old);
        if (p.failed) settle(p, true);       // stored after all (settle drops it from pending)
        else if (p.confirmed) state.pending.splice(i, 1);
        return li;
      }
    }
    return null;
  }

  function settle(p, ok) {
    var li = p.li;
    var label = li.querySelector('.msg-state');
    li.classList.remove('pending');
    label.textContent = '';
    var retry = li.querySelector('.retry');
    if (retry) retry.remove();
    if (ok) {
      p.confirmed = true;
      p.failed = false;
      li.classList.remove('failed');
      if (p.adopted) state.pending.splice(state.pending.indexOf(p), 1);
    } else {
      p.failed = true;
      li.classList.add('failed');
      label.textContent = '전송 실패';
      var button = el('button', 'retry', '다시 보내기');
      button.type = 'button';
      button.addEventListener('click', function () {
        state.pending.splice(state.pending.indexOf(p), 1);
        li.remove();
        sendMessage(p.content);
      });
      li.querySelector('.msg-side').appendChild(button);
    }
  }

  function sendMessage(content) {
    var li = chatElement({ sender: state.me || '', content: content, timestamp: new Date().toISOString() }, true);
    li.classList.add('pending', 'local');
    li.querySelector('.msg-state').textContent = '전송 중';
    ui.list.appendChild(li);
    scheduleScrollToBottom();
    var p = { content: content, li: li, adopted: false, confirmed: false, failed: false };
    state.pending.push(p);
    if (!state.client || !state.connected) {
      settle(p, false);
      return;
    }
    state.client.sendWithReceipt('/app/chat.sendMessage', JSON.stringify({ content: content })).then(
      function () { if (!p.confirmed) settle(p, true); },
      function () { if (!p.confirmed && !p.adopted) settle(p, false); else if (!p.confirmed) settle(p, true); }
    );
  }

  /* The server refused a SEND: the oldest one still waiting is it
   * (receipts and errors come back in the order the frames went). */
  function refuseOldestPending() {
    for (var i = 0; i < state.pending.length; i++) {
      var p = state.pending[i];
      if (!p.confirmed && !p.failed && !p.adopted) {
        settle(p, false);
        return;
      }
    }
  }

  /* ---- online list and typing ---------------------------------------- */

  function renderUsers(payload) {
    if (!payload || !Array.isArray(payload.users)) return;
    var names = payload.users.map(function (u) { return u && u.name; }).filter(function (n) { return typeof n === 'string'; });
    names.sort(function (a, b) {
      if (a === state.me) return -1;
      if (b === state.me) return 1;
      return a.localeCompare(b, 'ko');
    });
    var frag = document.createDocumentFragment();
    names.forEach(function (name) {
      var li = el('li', name === state.me ? 'user me' : 'user');
      li.dataset.name = name;
      li.appendChild(avatar(name));
      li.appendChild(el('span', 'user-name', name));
      if (name === state.me) li.appendChild(el('span', 'you', '나'));
      frag.appendChild(li);
    });
    ui.users.replaceChildren(frag);
    ui.userCount.textContent = String(names.length);
    // Someone who left is not typing any more.
    state.typers.forEach(function (timer, name) {
      if (names.indexOf(name) === -1) { clearTimeout(timer); state.typers.delete(name); }
    });
    renderTyping();
  }

  function renderTyping() {
    var names = Array.from(state.typers.keys());
    if (names.length === 0) {
      ui.typing.hidden = true;
      ui.typingText.textContent = '';
      return;
    }
    var text = names.length > 3 ? '여러 명이 입력 중' : names.join(', ') + ' 님이 입력 중';
    ui.typingText.textContent = text;
    ui.typing.hidden = false;
  }

  function onTyping(payload) {
    if (!payload || typeof payload.sender !== 'string' || state.myNames.has(payload.sender)) return;
    var name = payload.sender;
    clearTimeout(state.typers.get(name));
    if (payload.typing === true) {
      state.typers.set(name, setTimeout(function () { state.typers.delete(name); renderTyping(); }, TYPING_EXPIRES));
    } else {
      state.typers.delete(name);
    }
    renderTyping();
  }

  function sendTyping(on) {
    if (!state.connected) return;
    var now = Date.now();
    if (on) {
      if (state.typingOn && now - state.typingSentAt < TYPING_EVERY) return;
      state.typingOn = true;
      state.typingSentAt = now;
      state.client.send('/app/chat.typing', '{"typing":true}');
    } else if (state.typingOn) {
      state.typingOn = false;
      state.typingSentAt = 0;
      state.client.send('/app/chat.typing', '{"typing":false}');
    }
  }

  /* ---- errors ---------------------------------------------------------- */

  var errorTimer = null;
  function showError(text) {
    ui.errorText.textContent = text;
    ui.error.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(function () { ui.error.hidden = true; }, 8000);
  }

  function onAppError(payload) {
    if (!payload) return;
    var code = typeof payload.code === 'string' ? payload.code : '';
    if (SEND_ERRORS.indexOf(code) !== -1) refuseOldestPending();
    showError(ERROR_TEXT[code] || (typeof payload.message === 'string' ? payload.message : '오류가 발생했어요.'));
  }

  /* ---- history over REST -------------------------------------------- */

  function getJson(path) {
    return fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } }).then(function (r) {
      if (!r.ok) throw new Error(path + ' answered ' + r.status);
      return r.json();
    });
  }

  function loadRecent() {
    return getJson('/api/messages/recent?limit=' + PAGE_SIZE).then(function (messages) {
      if (!Array.isArray(messages)) return;
      messages.forEach(function (m) {
        if (addMessage(m, false) && (state.lastSeen === null || compareIds(m.id, state.lastSeen) > 0)) state.lastSeen = m.id;
      });
      scrollToBottom();
    });
  }

  function markStart() {
    state.reachedStart = true;
    ui.historyMark.textContent = '대화의 처음이에요';
    ui.historyMark.classList.add('start');
  }

  function loadOlder() {
    if (state.loadingOlder || state.reachedStart) return;
    state.loadingOlder = true;
    ui.historyMark.textContent = '이전 메시지를 불러오는 중…';
    var before = state.ids.length ? state.ids[0] : null;
    var path = '/api/messages?limit=' + PAGE_SIZE + (before ? '&before=' + encodeURIComponent(before) : '');
    var s = ui.scroller;
    getJson(path).then(function (page) {
      state.stats.historyPages++;
      var fromBottom = s.scrollHeight - s.scrollTop;
      (page.messages || []).forEach(function (m) { addMessage(m, false); });
      s.scrollTop = s.scrollHeight - fromBottom;   // keep what the reader was looking at
      if (!page.next_before || !(page.messages || []).length) markStart();
      else ui.historyMark.textContent = '위로 스크롤하면 이전 메시지';
    }, function () {
      ui.historyMark.textContent = '이전 메시지를 불러오지 못했어요';
    }).finally(function () {
      state.loadingOlder = false;
      fillScreen();
    });
  }

  /* Until the list overflows, there is nothing to scroll: load more. */
  function fillScreen() {
    var s = ui.scroller;
    if (!state.reachedStart && s.scrollHeight <= s.clientHeight + 40) loadOlder();
  }

  ui.scroller.addEventListener('scroll', function () {
    if (ui.scroller.scrollTop < 120) loadOlder();
    state.stuck = nearBottom();
    if (state.stuck) ui.newPill.hidden = true;
  }, { passive: true });
  ui.newPill.addEventListener('click', scrollToBottom);

  /* ---- the connection ---------------------------------------------- */

  function setStatus(kind, text) {
    ui.body.dataset.state = kind;
    ui.status.className = 'status ' + kind;
    ui.statusText.textContent = text;
  }

  function transportLabel(socket) {
    if (usingRaw()) return 'WebSocket';
    return 'SockJS ' + (socket && socket.transport || '');
  }

  function usingRaw() {
    return TRANSPORT === 'websocket' || (TRANSPORT === 'sockjs' && state.fallbackRaw);
  }

  function makeSocket() {
    var base = new URL(ENDPOINT, location.href);
    if (usingRaw()) {
      base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
      return new WebSocket(base.href, window.StompLite.PROTOCOLS);
    }
    var transports = TRANSPORT === 'sockjs' ? undefined : [TRANSPORT];
    return new window.SockJSLite(base.href, { transports: transports });
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.client) return;
    setStatus('connecting', state.attempt ? '다시 연결하는 중…' : '연결하는 중…');
    var client = new window.StompLite({
      socket: makeSocket,
      heartbeat: [10000, 10000],
      onConnect: function (frame) { onConnected(client, frame); },
      onError: function (frame) {
        showError('서버 오류: ' + (frame.headers.message || frame.body || '알 수 없는 오류'));
      },
      onClose: function (event) { onClosed(client, event); }
    });
    state.client = client;
    client.connect();
  }

  function json(frame) {
    try { return JSON.parse(frame.body); } catch (e) { return null; }
  }

  function onConnected(client, frame) {
    if (client !== state.client) return;
    state.connected = true;
    state.attempt = 0;
    state.stats.connects++;
    var name = frame.headers['user-name'] || '익명';
    state.me = name;
    rememberName(name);
    ui.me.textContent = name;
    var badge = avatar(name);
    badge.id = 'me-avatar';
    ui.meAvatar.replaceWith(badge);
    ui.meAvatar = badge;
    setStatus('connected', '연결됨 · ' + transportLabel(client.socket));
    updateComposer();
    client.subscribe('/user/queue/errors', function (f) { onAppError(json(f)); });
    client.subscribe('/topic/chat.users', function (f) { renderUsers(json(f)); });
    client.subscribe('/topic/chat.typing', function (f) { onTyping(json(f)); });
    var resumeFrom = state.lastSeen;
    var headers = resumeFrom ? { 'x-since-id': resumeFrom } : {};
    client.subscribe('/topic/chat', function (f) {
      state.stats.received++;
      addMessage(json(f), true);
    }, headers);
    if (!resumeFrom) {
      // Nothing to resume from: whatever came between the REST read and
      // this subscription is still in recent (duplicates are dropped).
      loadRecent().catch(function () {});
    }
  }

  function onClosed(client, event) {
    if (client !== state.client) return;
    if (TRANSPORT === 'sockjs' && !state.connected) {
      // A server without SockJS (or a proxy that eats it): try the plain
      // STOMP WebSocket next time, and SockJS again if that fails too.
      var sockjsUnusable = !state.fallbackRaw && /SockJS info|All transports/.test(event && event.reason || '');
      state.fallbackRaw = sockjsUnusable;
    }
    state.client = null;
    state.connected = false;
    state.typingOn = false;
    ui.sendButton.disabled = true;
    state.typers.forEach(function (t) { clearTimeout(t); });
    state.typers.clear();
    renderTyping();
    if (!navigator.onLine) {
      setStatus('offline', '오프라인 · 네트워크가 돌아오면 다시 연결해요');
      return;
    }
    // Backoff: 0.5 s, 1 s, 2 s … up to 15 s, with jitter so a server
    // restart is not met by every page at the same instant.
    var delay = Math.min(15000, 500 * Math.pow(2, state.attempt)) * (0.8 + Math.random() * 0.4);
    state.attempt++;
    setStatus('disconnected', '연결 끊김 · ' + Math.ceil(delay / 1000) + '초 후 다시 연결');
    state.reconnectTimer = setTimeout(connect, delay);
  }

  window.addEventListener('offline', function () {
    if (state.client) state.client.drop('offline');
  });
  window.addEventListener('online', function () {
    state.attempt = 0;
    connect();
  });
  window.addEventListener('pagehide', function () {
    if (state.client && state.connected) state.client.disconnect();
  });

  /* ---- composing -------------------------------------------------------- */

  function codePoints(text) { return Array.from(text).length; }

  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight, 140) + 'px';
  }

  function updateComposer() {
    var text = ui.input.value;
    var length = codePoints(text);
    ui.counter.hidden = length < MAX_CONTENT - 200;
    ui.counter.textContent = length + ' / ' + MAX_CONTENT;
    ui.counter.classList.toggle('over', length > MAX_CONTENT);
    ui.sendButton.disabled = !state.connected || !text.trim() || length > MAX_CONTENT;
  }

  ui.input.addEventListener('input', function () {
    autosize();
    updateComposer();
    sendTyping(ui.input.value.trim() !== '');
  });
  ui.input.addEventListener('blur', function () { sendTyping(false); });
  ui.input.addEventListener('keydown', function (event) {
    // Enter sends, Shift+Enter is a new line; never while a Korean (IME)
    // syllable is still being composed.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  ui.form.addEventListener('submit', function (event) {
    event.preventDefault();
    submit();
  });

  function submit() {
    var text = ui.input.value;
    if (!text.trim() || !state.connected) return;
    if (codePoints(text) > MAX_CONTENT) {
      showError(ERROR_TEXT.CONTENT_TOO_LONG);
      return;
    }
    sendTyping(false);
    ui.input.value = '';
    autosize();
    updateComposer();
    sendMessage(text);
    ui.input.focus();
  }

  ui.errorClose.addEventListener('click', function () { ui.error.hidden = true; });
  ui.usersToggle.addEventListener('click', function (event) {
    event.stopPropagation();
    var open = ui.body.classList.toggle('users-open');
    ui.usersToggle.setAttribute('aria-expanded', String(open));
  });
  document.addEventListener('click', function (event) {
    // On small screens the online list is a pop-over: a tap elsewhere closes it.
    if (ui.body.classList.contains('users-open') && !ui.usersPanel.contains(event.target)) {
      ui.body.classList.remove('users-open');
      ui.usersToggle.setAttribute('aria-expanded', 'false');
    }
  });

  /* For the browser test and for curious people at the console. */
  window.anonchat = {
    state: state,
    drop: function () { if (state.client) state.client.drop('dropped by hand'); }
  };

  /* ---- start ----------------------------------------------------------- */

  updateComposer();
  loadRecent().catch(function () {
    ui.historyMark.textContent = '최근 메시지를 불러오지 못했어요';
  }).then(function () {
    connect();
    fillScreen();
  });
})();
