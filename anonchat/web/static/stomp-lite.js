/*
 * stomp-lite.js: a minimal STOMP 1.2 client (1.1 and 1.0 understood) for
 * the anonchat demo page, over anything WebSocket-like (a WebSocket or a
 * SockJSLite).
 *
 *   var client = new StompLite({
 *     socket: function () { return new WebSocket(url, StompLite.PROTOCOLS); },
 *     heartbeat: [10000, 10000],          // [we send every, we want every]
 *     onConnect: function (connectedFrame) {},
 *     onError: function (errorFrame) {},  // the server's ERROR frame
 *     onClose: function (event) {}        // {code, reason, wasClean}
 *   });
 *   client.connect();
 *   var sub = client.subscribe('/topic/chat', function (frame) {}, {'x-since-id': id});
 *   client.send('/app/chat.typing', '{"typing":true}');
 *   client.sendWithReceipt('/app/chat.sendMessage', body).then(...);   // RECEIPT
 *   client.disconnect();                  // DISCONNECT, receipt, close
 *
 * Frames are parsed as UTF-8 bytes, so content-length (a byte count) is
 * honoured, several frames in one message and one frame over several
 * messages both work, and a bare EOL is a heart-beat. Written for this
 * project; no third-party code.
 */
(function (global) {
  'use strict';

  var encoder = new TextEncoder();
  var decoder = new TextDecoder('utf-8');
  var LF = 10, CR = 13, NUL = 0;

  /* ---- header escaping (1.1+, never on CONNECT / CONNECTED) ---------- */

  function escapeHeader(value) {
    return String(value).replace(/\\/g, '\\\\').replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/:/g, '\\c');
  }

  function unescapeHeader(value) {
    return value.replace(/\\(.)/g, function (all, c) {
      return c === 'n' ? '\n' : c === 'r' ? '\r' : c === 'c' ? ':' : c === '\\' ? '\\' : all;
    });
  }

  /* ---- the parser ---------------------------------------------------- */

  function FrameParser(onFrame, onHeartbeat) {
    this.buffer = new Uint8Array(0);
    this.onFrame = onFrame;
    this.onHeartbeat = onHeartbeat;
    this.escapes = true;
  }

  FrameParser.prototype.feed = function (data) {
    var bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
    if (this.buffer.length === 0) {
      this.buffer = bytes;
    } else {
      var joined = new Uint8Array(this.buffer.length + bytes.length);
      joined.set(this.buffer, 0);
      joined.set(bytes, this.buffer.length);
      this.buffer = joined;
    }
    var frame;
    while ((frame = this._next()) !== null) this.onFrame(frame);
  };

  /* One frame from the front of the buffer, or null when incomplete. */
  FrameParser.prototype._next = function () {
    var buf = this.buffer;
    var pos = 0;
    // EOLs between frames are heart-beats.
    while (pos < buf.length && (buf[pos] === LF || (buf[pos] === CR && buf[pos + 1] === LF))) {
      pos += buf[pos] === CR ? 2 : 1;
      if (this.onHeartbeat) this.onHeartbeat();
    }
    if (pos > 0) this.buffer = buf = buf.subarray(pos);
    if (buf.length === 0 || (buf.length === 1 && buf[0] === CR)) return null;
    pos = 0;
    var lines = [];
    for (;;) {
      var nl = buf.indexOf(LF, pos);
      if (nl === -1) return null;
      var end = nl > pos && buf[nl - 1] === CR ? nl - 1 : nl;
      var line = decoder.decode(buf.subarray(pos, end));
      pos = nl + 1;
      if (line === '') break;
      lines.push(line);
    }
    var command = lines.shift();
    var escapes = this.escapes && command !== 'CONNECTED';
    var headers = {};
    for (var i = 0; i < lines.length; i++) {
      var colon = lines[i].indexOf(':');
      if (colon === -1) continue;
      var name = lines[i].slice(0, colon), value = lines[i].slice(colon + 1);
      if (escapes) { name = unescapeHeader(name); value = unescapeHeader(value); }
      if (!Object.prototype.hasOwnProperty.call(headers, name)) headers[name] = value;  // first wins
    }
    var bodyEnd;
    if (headers['content-length'] !== undefined && /^\d+$/.test(headers['content-length'])) {
      bodyEnd = pos + parseInt(headers['content-length'], 10);
      if (buf.length < bodyEnd + 1) return null;
    } else {
      bodyEnd = buf.indexOf(NUL, pos);
      if (bodyEnd === -1) return null;
    }
    var body = decoder.decode(buf.subarray(pos, bodyEnd));
    this.buffer = buf.subarray(bodyEnd + 1);
    return { command: command, headers: headers, body: body };
  };

  function serialize(command, headers, body, escapes) {
    var out = command + '\n';
    var esc = escapes && command !== 'CONNECT' && command !== 'STOMP';
    Object.keys(headers).forEach(function (name) {
      var value = headers[name];
      if (value === undefined || value === null) return;
      out += (esc ? escapeHeader(name) : name) + ':' + (esc ? escapeHeader(value) : value) + '\n';
    });
    return out + '\n' + (body || '') + '\0';
  }

  /* ---- timers that keep ticking in background tabs ------------------- */

  /* Browsers throttle timers in hidden tabs to once a minute; a worker's
   * timers are not, so heart-beats keep their pace. Falls back to
   * setInterval where workers are unavailable. */
  function Ticker(ms, tick) {
    var worker = null;
    try {
      var source = 'setInterval(function(){postMessage(0)},' + ms + ')';
      var url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
      worker = new Worker(url);
      URL.revokeObjectURL(url);
      worker.onmessage = tick;
    } catch (e) {
      worker = null;
    }
    var interval = worker ? null : setInterval(tick, ms);
    this.stop = function () {
      if (worker) worker.terminate();
      if (interval !== null) clearInterval(interval);
    };
  }

  /* ---- the client ---------------------------------------------------- */

  function StompLite(options) {
    this.options = options;
    this.heartbeat = options.heartbeat || [10000, 10000];
    this.connected = false;
    this.version = null;
    this.socket = null;
    this._subscriptions = {};
    this._receipts = {};
    this._nextId = 0;
    this._tickers = [];
  }

  StompLite.PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

  StompLite.prototype.connect = function (headers) {
    var self = this;
    var socket = this.socket = this.options.socket();
    if ('binaryType' in socket) socket.binaryType = 'arraybuffer';
    var parser = this._parser = new FrameParser(function (frame) { self._onFrame(frame); }, null);
    this._lastReceived = Date.now();
    socket.onopen = function () {
      if (socket !== self.socket) return;
      self._transmit('CONNECT', Object.assign({
        'accept-version': '1.2,1.1,1.0',
        'host': global.location.hostname,
        'heart-beat': self.heartbeat[0] + ',' + self.heartbeat[1]
      }, headers || {}));
    };
    socket.onmessage = function (event) {
      if (socket !== self.socket) return;
      self._lastReceived = Date.now();
      parser.feed(event.data);
    };
    socket.onclose = function (event) {
      if (socket !== self.socket) return;
      self._closed(event);
    };
  };

  StompLite.prototype._transmit = function (command, headers, body) {
    if (!this.socket || this.socket.readyState !== 1) return false;
    var text = serialize(command, headers, body, this.version !== '1.0' && this.version !== null);
    this.socket.send(text);
    this._lastSent = Date.now();
    return true;
  };

  StompLite.prototype._onFrame = function (frame) {
    switch (frame.command) {
      case 'CONNECTED':
        this.connected = true;
        this.version = frame.headers.version || '1.0';
        this._parser.escapes = this.version !== '1.0';
        this._startHeartbeats(frame.headers['heart-beat']);
        if (this.options.onConnect) this.options.onConnect(frame);
        break;
      case 'MESSAGE':
        var handler = this._subscriptions[frame.headers.subscription];
        if (handler) handler(frame);
        break;
      case 'RECEIPT':
        var waiter = this._receipts[frame.headers['receipt-id']];
        if (waiter) {
          delete this._receipts[frame.headers['receipt-id']];
          waiter.resolve(frame);
        }
        break;
      case 'ERROR':
        if (this.options.onError) this.options.onError(frame);
        break;
    }
  };

  /* Heart-beats as the spec negotiates them: we send every max(ours, theirs)
   * and give up on a peer silent for 2.5 times what it promised. */
  StompLite.prototype._startHeartbeats = function (header) {
    var self = this;
    var theirs = (header || '0,0').split(',').map(function (n) { return parseInt(n, 10) || 0; });
    var send = this.heartbeat[0] && theirs[1] ? Math.max(this.heartbeat[0], theirs[1]) : 0;
    var receive = this.heartbeat[1] && theirs[0] ? Math.max(this.heartbeat[1], theirs[0]) : 0;
    if (send) {
      this._tickers.push(new Ticker(send / 2, function () {
        if (Date.now() - (self._lastSent || 0) >= send * 0.9 && self.socket && self.socket.readyState === 1) {
          self.socket.send('\n');
          self._lastSent = Date.now();
        }
      }));
    }
    if (receive) {
      this._tickers.push(new Ticker(receive / 2, function () {
        if (Date.now() - self._lastReceived > receive * 2.5) self.drop('heart-beat timeout');
      }));
    }
  };

  StompLite.prototype._closed = function (event) {
    this._tickers.forEach(function (t) { t.stop(); });
    this._tickers = [];
    this.connected = false;
    this.socket = null;
    var receipts = this._receipts;
    this._receipts = {};
    Object.keys(receipts).forEach(function (id) { receipts[id].reject(new Error('connection closed')); });
    this._subscriptions = {};
    if (this.options.onClose) this.options.onClose(event || { code: 1006, reason: '', wasClean: false });
  };

  StompLite.prototype.subscribe = function (destination, handler, headers) {
    var id = 'sub-' + this._nextId++;
    this._subscriptions[id] = handler;
    this._transmit('SUBSCRIBE', Object.assign({ id: id, destination: destination, ack: 'auto' }, headers || {}));
    var self = this;
    return {
      id: id,
      unsubscribe: function () {
        delete self._subscriptions[id];
        self._transmit('UNSUBSCRIBE', { id: id });
      }
    };
  };

  StompLite.prototype.send = function (destination, body, headers) {
    var h = Object.assign({
      destination: destination,
      'content-type': 'application/json;charset=UTF-8',
      'content-length': encoder.encode(body || '').length
    }, headers || {});
    return this._transmit('SEND', h, body);
  };

  /* SEND with a receipt: resolves on the RECEIPT, rejects when the
   * connection ends first (the server never confirmed it). */
  StompLite.prototype.sendWithReceipt = function (destination, body, headers) {
    var self = this;
    var receipt = 'r-' + this._nextId++;
    return new Promise(function (resolve, reject) {
      self._receipts[receipt] = { resolve: resolve, reject: reject };
      if (!self.send(destination, body, Object.assign({ receipt: receipt }, headers || {}))) {
        delete self._receipts[receipt];
        reject(new Error('not connected'));
      }
    });
  };

  /* A clean goodbye: DISCONNECT, wait (briefly) for its receipt, close. */
  StompLite.prototype.disconnect = function () {
    var self = this;
    var socket = this.socket;
    if (!socket) return Promise.resolve();
    var receipt = 'bye-' + this._nextId++;
    var done = new Promise(function (resolve) {
      self._receipts[receipt] = { resolve: resolve, reject: resolve };
      self._transmit('DISCONNECT', { receipt: receipt });
      setTimeout(resolve, 2000);
    });
    return done.then(function () {
      if (self.socket === socket) {
        socket.close();
        self._closed({ code: 1000, reason: 'disconnected', wasClean: true });
      }
    });
  };

  /* Drop the connection without a goodbye (network loss, dead peer). */
  StompLite.prototype.drop = function (reason) {
    var socket = this.socket;
    if (!socket) return;
    try { socket.close(); } catch (e) { /* already closed */ }
    this._closed({ code: 4000, reason: reason || 'dropped', wasClean: false });
  };

  StompLite.FrameParser = FrameParser;
  StompLite.serialize = serialize;
  global.StompLite = StompLite;
})(window);
