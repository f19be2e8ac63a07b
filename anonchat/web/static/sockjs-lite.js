/*
 * sockjs-lite.js: a minimal SockJS 0.3.3 client for the anonchat demo page.
 *
 * It looks like a WebSocket (onopen, onmessage({data}), onclose({code,
 * reason, wasClean}), send(text), close(), readyState) and speaks the SockJS
 * protocol underneath:
 *
 *   GET  <base>/info                                   -> {"websocket": bool, ...}
 *   WS   <base>/<server>/<session>/websocket           frames o, h, a[...], c[...]
 *   POST <base>/<server>/<session>/xhr_streaming       the same frames, one a line
 *   POST <base>/<server>/<session>/xhr                 one frame a response
 *   POST <base>/<server>/<session>/xhr_send            a JSON array of strings
 *
 * Transports are tried in order until one opens; once open, a failure ends
 * the connection (the caller reconnects). Written for this project; no
 * third-party code.
 */
(function (global) {
  'use strict';

  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  var ALL_TRANSPORTS = ['websocket', 'xhr_streaming', 'xhr_polling'];

  function randomDigits(n) {
    var s = '';
    for (var i = 0; i < n; i++) s += Math.floor(Math.random() * 10);
    return s;
  }

  function randomSessionId() {
    var alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    var bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += alphabet[bytes[i] % alphabet.length];
    return s;
  }

  function absolute(url) {
    return new URL(url, global.location.href).href.replace(/\/+$/, '');
  }

  function fetchWithTimeout(url, init, ms) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, ms);
    init = Object.assign({ cache: 'no-store', credentials: 'same-origin', signal: controller.signal }, init || {});
    return fetch(url, init).finally(function () { clearTimeout(timer); });
  }

  /* ---- transports: each gets a session URL and a sink with frame(text) and
   *      lost(reason); each has send(array of strings) and close(). -------- */

  function WebSocketTransport(sessionUrl, sink) {
    var url = sessionUrl.replace(/^http/, 'ws') + '/websocket';
    var ws = new global.WebSocket(url);
    var done = false;
    this.name = 'websocket';
    ws.onmessage = function (event) {
      if (typeof event.data === 'string') sink.frame(event.data);
    };
    ws.onclose = function (event) {
      if (done) return;
      done = true;
      sink.lost('websocket closed (' + event.code + ')');
    };
    ws.onerror = function () { /* onclose follows */ };
    this.send = function (messages) {
      if (ws.readyState === 1) ws.send(JSON.stringify(messages));
    };
    this.close = function () {
      done = true;
      try { ws.close(1000); } catch (e) { /* already closing */ }
    };
  }

  /* xhr_send, shared by the HTTP transports: one POST in flight at a time,
   * everything queued meanwhile goes in the next one, so order is kept. */
  function Sender(sessionUrl, sink) {
    var queue = [];
    var busy = false;
    var stopped = false;
    function flush() {
      if (busy || stopped || queue.length === 0) return;
      var batch = queue;
      queue = [];
      busy = true;
      fetchWithTimeout(sessionUrl + '/xhr_send', {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        body: JSON.stringify(batch)
      }, 15000).then(function (response) {
        busy = false;
        if (response.status !== 204 && response.status !== 200) {
          if (!stopped) sink.lost('xhr_send answered ' + response.status);
          return;
        }
        flush();
      }, function () {
        busy = false;
        if (!stopped) sink.lost('xhr_send failed');
      });
    }
    this.send = function (messages) {
      Array.prototype.push.apply(queue, messages);
      flush();
    };
    this.stop = function () { stopped = true; queue = []; };
  }

  /* Split a response text into SockJS frames, one per line. */
  function LineSplitter(onFrame) {
    var pending = '';
    this.push = function (text) {
      pending += text;
      var nl;
      while ((nl = pending.indexOf('\n')) !== -1) {
        var line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.length) onFrame(line);
      }
    };
    this.end = function () {
      if (pending.length) onFrame(pending);
      pending = '';
    };
  }

  // The two HTTP transports differ only in how one response is read: a
  // stream of frames until the server ends it, or one poll's frames.
  function HttpTransport(name, readResponse) {
    return function (sessionUrl, sink) {
      var controller = null;
      var stopped = false;
      var sender = new Sender(sessionUrl, sink);
      this.name = name;
      function receive() {
        if (stopped) return;
        controller = new AbortController();
        var splitter = new LineSplitter(function (frame) { if (!stopped) sink.frame(frame); });
        fetch(sessionUrl + '/' + (name === 'xhr_polling' ? 'xhr' : name), {
          method: 'POST', cache: 'no-store', credentials: 'same-origin', signal: controller.signal
        }).then(function (response) {
          if (response.status !== 200) throw new Error(name + ' answered ' + response.status);
          return readResponse(response, splitter);
        }).then(function () {
          // A poll answered, or a stream ended after enough bytes: next one.
          receive();
        }, function (error) {
          if (!stopped) sink.lost(String(error && error.message || error));
        });
      }
      this.send = sender.send;
      this.close = function () {
        stopped = true;
        sender.stop();
        if (controller) controller.abort();
      };
      receive();
    };
  }

  var XhrStreamingTransport = HttpTransport('xhr_streaming', function (response, splitter) {
    if (!response.body) throw new Error('xhr_streaming has no body stream');
    var reader = response.body.getReader();
    var decoder = new TextDecoder('utf-8');
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          splitter.push(decoder.decode());
          splitter.end();
          return;
        }
        splitter.push(decoder.decode(chunk.value, { stream: true }));
        return pump();
      });
    }
    return pump();
  });

  var XhrPollingTransport = HttpTransport('xhr_polling', function (response, splitter) {
    return response.text().then(function (text) {
      splitter.push(text);
      splitter.end();
    });
  });

  var TRANSPORTS = {
    websocket: WebSocketTransport,
    xhr_streaming: XhrStreamingTransport,
    xhr_polling: XhrPollingTransport
  };

  /* ---- the socket ---------------------------------------------------- */

  function SockJSLite(url, options) {
    options = options || {};
    this.url = absolute(url);
    this.transports = (options.transports || ALL_TRANSPORTS).filter(function (t) { return TRANSPORTS[t]; });
    this.openTimeout = options.openTimeout || 8000;
    this.readyState = CONNECTING;
    this.transport = null;   // the name of the transport in use, once open
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this._current = null;
    var self = this;
    setTimeout(function () { self._start(); }, 0);
  }

  SockJSLite.CONNECTING = CONNECTING;
  SockJSLite.OPEN = OPEN;
  SockJSLite.CLOSING = CLOSING;
  SockJSLite.CLOSED = CLOSED;

  SockJSLite.prototype._start = function () {
    var self = this;
    fetchWithTimeout(this.url + '/info?t=' + Date.now(), {}, this.openTimeout).then(function (response) {
      if (response.status !== 200) throw new Error('info answered ' + response.status);
      return response.json();
    }).then(function (info) {
      var names = self.transports.filter(function (name) {
        return name !== 'websocket' || (info.websocket !== false && typeof global.WebSocket === 'function');
      });
      self._tryNext(names);
    }, function (error) {
      self._finish(2000, 'SockJS info failed: ' + (error && error.message || error), false);
    });
  };

  /* Open one transport; on failure before "o", the next one. */
  SockJSLite.prototype._tryNext = function (names) {
    if (this.readyState !== CONNECTING) return;
    if (names.length === 0) {
      this._finish(2000, 'All transports failed', false);
      return;
    }
    var self = this;
    var name = names[0];
    var sessionUrl = this.url + '/' + randomDigits(3) + '/' + randomSessionId();
    var settled = false;
    var timer = setTimeout(function () { fail('timed out'); }, this.openTimeout);
    function fail() {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      transport.close();
      self._current = null;
      self._tryNext(names.slice(1));
    }
    var sink = {
      frame: function (frame) {
        if (transport !== self._current) return;
        if (!settled) {
          if (frame === 'o') {
            settled = true;
            clearTimeout(timer);
            self.transport = name;
            self.readyState = OPEN;
            if (self.onopen) self.onopen({ type: 'open' });
          } else if (frame.charAt(0) === 'c') {
            settled = true;
            clearTimeout(timer);
            self._closeFrame(frame);
          }
          return;
        }
        self._frame(frame);
      },
      lost: function (reason) {
        if (transport !== self._current) return;
        if (!settled) return fail(reason);
        self._current = null;
        self._finish(1006, reason || 'Connection lost', false);
      }
    };
    var transport;
    try {
      this._current = transport = new TRANSPORTS[name](sessionUrl, sink);
    } catch (e) {
      transport = { close: function () {} };
      fail(e);
    }
  };

  SockJSLite.prototype._frame = function (frame) {
    var kind = frame.charAt(0);
    if (kind === 'h') return;                      // heart-beat (and the streaming prelude)
    if (kind === 'a' || kind === 'm') {
      var payload;
      try {
        payload = JSON.parse(frame.slice(1));
      } catch (e) {
        return this._abort(1002, 'Broken SockJS frame');
      }
      var messages = kind === 'a' ? payload : [payload];
      for (var i = 0; i < messages.length && this.readyState === OPEN; i++) {
        if (this.onmessage) this.onmessage({ type: 'message', data: messages[i] });
      }
    } else if (kind === 'c') {
      this._closeFrame(frame);
    }
  };

  SockJSLite.prototype._closeFrame = function (frame) {
    var code = 1000, reason = 'Normal closure';
    try {
      var parsed = JSON.parse(frame.slice(1));
      code = parsed[0];
      reason = parsed[1];
    } catch (e) { /* keep the defaults */ }
    this._abort(code, reason, true);
  };

  SockJSLite.prototype._abort = function (code, reason, wasClean) {
    if (this._current) this._current.close();
    this._current = null;
    this._finish(code, reason, !!wasClean);
  };

  SockJSLite.prototype._finish = function (code, reason, wasClean) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    var self = this;
    // Asynchronously, like a WebSocket: never re-enter the caller.
    setTimeout(function () {
      if (self.onclose) self.onclose({ type: 'close', code: code, reason: reason, wasClean: wasClean });
    }, 0);
  };

  SockJSLite.prototype.send = function (data) {
    if (this.readyState === CONNECTING) throw new Error('InvalidStateError: the connection has not been established yet');
    if (this.readyState !== OPEN || !this._current) return;
    this._current.send([String(data)]);
  };

  SockJSLite.prototype.close = function (code, reason) {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.readyState = CLOSING;
    this._abort(code || 1000, reason || 'Normal closure', true);
  };

  global.SockJSLite = SockJSLite;
})(window);
