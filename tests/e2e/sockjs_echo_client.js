#!/usr/bin/env node
// The real sockjs-client, in Node, against an echo service: for
// tests/test_sockjs_e2e_node.py.
//
//   node sockjs_echo_client.js <base url> <transport> '<messages JSON array>'
//
// Opens a SockJS connection restricted to <transport> (websocket,
// xhr-streaming, xhr-polling, ...), sends every message once open, waits for
// each to come back in order, closes, and prints one JSON line:
// {"transport": used, "received": [...], "close": {"code", "reason", "wasClean"}}.
// Exits 1 (printing {"error": ...}) on a timeout or an unexpected close.
'use strict';

const SockJS = require('sockjs-client');

const [baseUrl, transport, messagesJson] = process.argv.slice(2);
const messages = JSON.parse(messagesJson || '[]');
const received = [];
let usedTransport = null;
let closing = false;

function fail(error) {
  process.stdout.write(JSON.stringify({ error: String(error), received }) + '\n');
  process.exit(1);
}

const timer = setTimeout(() => fail('timeout'), 15000);

const sock = new SockJS(baseUrl, null, { transports: [transport] });

sock.onopen = () => {
  usedTransport = sock.transport;
  for (const m of messages) {
    sock.send(m);
  }
  if (messages.length === 0) {
    closing = true;
    sock.close();
  }
};

sock.onmessage = (event) => {
  received.push(event.data);
  if (received.length === messages.length) {
    closing = true;
    sock.close(1000, 'done');
  }
};

sock.onclose = (event) => {
  clearTimeout(timer);
  if (!closing) {
    fail('closed early: ' + event.code + ' ' + event.reason);
    return;
  }
  process.stdout.write(JSON.stringify({
    transport: usedTransport,
    received,
    close: { code: event.code, reason: event.reason, wasClean: event.wasClean },
  }) + '\n');
  process.exit(0);
};
