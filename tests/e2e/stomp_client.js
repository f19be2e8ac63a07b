#!/usr/bin/env node
// A small scriptable driver around the real @stomp/stompjs client, for the
// black-box tests in tests/test_e2e_stompjs.py.
//
//   node stomp_client.js '<scenario JSON>'
//
// A scenario is {"url": "ws://...", "steps": [...]}; steps run in order and
// each one finishes before the next starts. Every event is printed to stdout
// as one JSON line ({"ev": ..., "c": client name, ...}), so the Python test
// asserts on what the client saw. A step that fails prints {"ev": "fail"}
// and the process exits 1. Steps:
//
//   {"op": "connect", "c": "a", "versions": ["1.2"], "heartbeat": [in, out],
//    "headers": {...}}                 stompjs Client, resolves on CONNECTED
//   any connect or raw step may name its own "url" (another node) and, on
//   a raw WebSocket, "wsHeaders" for the handshake (X-Forwarded-For...)
//   {"op": "connect", "c": "a", "sockjs": "xhr-polling"}
//                                      the same over the real sockjs-client,
//                                      restricted to that one transport
//                                      (websocket, xhr-streaming, xhr-polling,
//                                      ...), at the scenario url with ws(s)://
//                                      read as http(s):// (or "sockjsUrl");
//                                      ws_open then carries "transport", the
//                                      one sockjs-client actually used
//   {"op": "subscribe", "c": "a", "destination": "/topic/chat", "id": "sub-0"}
//   {"op": "unsubscribe", "c": "a", "id": "sub-0", "receipt": "u-1"}
//                                      waits for the RECEIPT if given; a
//                                      MESSAGE for a subscription the client
//                                      no longer has is reported as
//                                      {"ev": "unhandled_message"}
//   {"op": "send", "c": "a", "destination": ..., "body": "...",
//    "headers": {...}, "receipt": "r-1"}        waits for the RECEIPT if given
//   {"op": "sendMany", "c": "a", "destination": ..., "bodies": [...]}
//   {"op": "wait", "c": "b", "count": N, "destination": ..., "type": "CHAT",
//    "content": "...", "timeout": ms}  until b holds N such MESSAGE frames
//   {"op": "sleep", "ms": N}
//   {"op": "drop", "c": "a"}           destroy the TCP socket: no DISCONNECT,
//                                      no WebSocket close frame (raw WebSocket
//                                      only; to make a SockJS client vanish,
//                                      kill the node process)
//   {"op": "disconnect", "c": "a"}     DISCONNECT and close (stompjs deactivate)
//   {"op": "waitClose", "c": "a", "timeout": ms}
//   {"op": "raw", "c": "r", "protocols": [...], "send": ["..."],
//    "timeout": ms}                    plain `ws`: send the strings as they are,
//                                      report each message and the close
//   {"op": "mark", "name": "ready"}    print {"ev": "mark", "name": ...}
//   {"op": "input"}                    wait for one line on stdin (the test's go)
//   {"op": "stdin"}                    from now on, run steps read from stdin,
//                                      one JSON object a line, until stdin
//                                      ends; each prints {"ev": "step"} or
//                                      {"ev": "fail"} with its "line" number,
//                                      and a failed one does not end the run
'use strict';

const path = require('path');
const readline = require('readline');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
const { Client, Versions } = require(path.join(__dirname, 'node_modules', '@stomp', 'stompjs'));

// Loaded on first use, so that the raw WebSocket scenarios do not need it.
let SockJS = null;

function emit(ev, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ ev }, fields)) + '\n');
}

const clients = {};
let stdinLines = null;

function until(check, timeout, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() - started > timeout) return reject(new Error(`timeout after ${timeout} ms waiting for ${what}`));
      setTimeout(poll, 5);
    };
    poll();
  });
}

function withTimeout(promise, timeout, what) {
  let timer;
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${timeout} ms waiting for ${what}`)), timeout);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function countHeartbeat(state, name, text) {
  if (text === '\n' || text === '\r\n') {
    state.heartbeatsIn += 1;
    emit('heartbeat', { c: name });
  }
}

function openSockJS(url, step, state) {
  SockJS = SockJS || require(path.join(__dirname, 'node_modules', 'sockjs-client'));
  const base = step.sockjsUrl || url.replace(/^ws/, 'http');
  const sock = new SockJS(base, null, { transports: [step.sockjs] });
  // stompjs sets sock.onmessage / onopen itself; listeners sit beside it.
  sock.addEventListener('message', (evt) => countHeartbeat(state, step.c, String(evt.data)));
  sock.addEventListener('open', () => emit('ws_open', { c: step.c, protocol: sock.protocol, transport: sock.transport }));
  return sock;
}

function connect(url, step) {
  const name = step.c;
  const state = { messages: [], closed: false, heartbeatsIn: 0 };
  const versions = new Versions(step.versions || ['1.2', '1.1', '1.0']);
  const [incoming, outgoing] = step.heartbeat || [10000, 10000];
  const client = new Client({
    stompVersions: versions,
    connectHeaders: step.headers || {},
    heartbeatIncoming: incoming,
    heartbeatOutgoing: outgoing,
    reconnectDelay: 0,
    webSocketFactory: () => {
      if (step.sockjs) return openSockJS(url, step, state);
      const ws = new WebSocket(url, versions.protocolVersions(), { headers: step.wsHeaders || {} });
      // A bare EOL in its own WebSocket message is a server heart-beat.
      ws.on('message', (data) => countHeartbeat(state, name, data.toString('utf8')));
      ws.on('open', () => emit('ws_open', { c: name, protocol: ws.protocol }));
      return ws;
    },
    debug: (line) => {
      if (/did not receive server activity/.test(line)) emit('heartbeat_lost', { c: name, line });
    },
  });
  state.client = client;
  clients[name] = state;
  return withTimeout(new Promise((resolve, reject) => {
    client.onConnect = (frame) => {
      emit('connected', { c: name, headers: frame.headers });
      resolve();
    };
    client.onStompError = (frame) => {
      emit('stomp_error', { c: name, headers: frame.headers, body: frame.body });
    };
    client.onWebSocketClose = (evt) => {
      state.closed = true;
      emit('ws_close', { c: name, code: evt.code, reason: String(evt.reason || '') });
      reject(new Error(`${name}: closed before CONNECTED`));
    };
    client.onUnhandledReceipt = (frame) => emit('receipt', { c: name, headers: frame.headers, unhandled: true });
    client.onUnhandledMessage = (msg) => emit('unhandled_message', { c: name, headers: msg.headers, body: msg.body });
    client.activate();
  }), step.timeout || 5000, `${name} to connect`);
}

function subscribe(step) {
  const state = clients[step.c];
  const headers = Object.assign({}, step.headers || {});
  if (step.id) headers.id = step.id;
  state.client.subscribe(step.destination, (msg) => {
    state.messages.push({ destination: msg.headers.destination, body: msg.body });
    emit('message', { c: step.c, headers: msg.headers, body: msg.body });
  }, headers);
}

// Puts the step's receipt (if any) in headers; resolves when it comes.
function receiptOf(step, headers) {
  if (!step.receipt) return Promise.resolve();
  headers.receipt = step.receipt;
  return new Promise((resolve) => {
    clients[step.c].client.watchForReceipt(step.receipt, (frame) => {
      emit('receipt', { c: step.c, headers: frame.headers });
      resolve();
    });
  });
}

function unsubscribe(step) {
  const headers = {};
  const got = receiptOf(step, headers);
  clients[step.c].client.unsubscribe(step.id, headers);
  return withTimeout(got, step.timeout || 5000, `receipt ${step.receipt}`);
}

function send(step) {
  const state = clients[step.c];
  const headers = Object.assign({}, step.headers || {});
  const got = receiptOf(step, headers);
  state.client.publish({ destination: step.destination, body: step.body, headers });
  return withTimeout(got, step.timeout || 5000, `receipt ${step.receipt}`);
}

function matching(state, step) {
  return state.messages.filter((m) => {
    if (step.destination && m.destination !== step.destination) return false;
    if (step.type || step.content !== undefined) {
      try {
        const message = JSON.parse(m.body);
        if (step.type && message.type !== step.type) return false;
        if (step.content !== undefined && message.content !== step.content) return false;
      } catch (e) {
        return false;
      }
    }
    return true;
  }).length;
}

function raw(url, step) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, step.protocols || ['v12.stomp'], { headers: step.wsHeaders || {} });
    const timer = setTimeout(() => {
      emit('raw_timeout', { c: step.c });
      ws.terminate();
    }, step.timeout || 5000);
    ws.on('open', () => {
      emit('ws_open', { c: step.c, protocol: ws.protocol });
      for (const data of step.send || []) ws.send(data);
    });
    ws.on('message', (data, isBinary) => emit('raw_message', { c: step.c, data: data.toString('utf8'), binary: isBinary }));
    ws.on('error', (err) => emit('ws_error', { c: step.c, message: String(err.message) }));
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      emit('ws_close', { c: step.c, code, reason: reason.toString('utf8') });
      resolve();
    });
  });
}

async function runStep(scenarioUrl, step) {
  const state = clients[step.c];
  const url = step.url || scenarioUrl;
  switch (step.op) {
    case 'connect': return connect(url, step);
    case 'subscribe': return subscribe(step);
    case 'unsubscribe': return unsubscribe(step);
    case 'send': return send(step);
    case 'sendMany':
      for (const body of step.bodies) state.client.publish({ destination: step.destination, body, headers: step.headers || {} });
      return undefined;
    case 'wait':
      return until(() => matching(state, step) >= step.count, step.timeout || 5000,
        `${step.count} ${step.type || ''} messages on ${step.c}, got ${matching(state, step)}`);
    case 'sleep': return new Promise((resolve) => setTimeout(resolve, step.ms));
    case 'drop':
      if (!state.client.webSocket._socket) throw new Error('drop needs a raw WebSocket client; kill the process instead');
      state.client.webSocket._socket.destroy();
      return undefined;
    case 'disconnect': return state.client.deactivate();
    case 'waitClose': return until(() => state.closed, step.timeout || 5000, `${step.c} to close`);
    case 'raw': return raw(url, step);
    case 'mark': emit('mark', { name: step.name }); return undefined;
    case 'input':
      stdinLines = stdinLines || readline.createInterface({ input: process.stdin });
      return new Promise((resolve) => stdinLines.once('line', () => resolve()));
    case 'stdin': return stepsFromStdin(url);
    default: throw new Error(`unknown op ${step.op}`);
  }
}

async function stepsFromStdin(url) {
  stdinLines = stdinLines || readline.createInterface({ input: process.stdin });
  let line = 0;
  for await (const text of stdinLines) {
    if (!text.trim()) continue;
    line += 1;
    const step = JSON.parse(text);
    try {
      await runStep(url, step);
      emit('step', { line, op: step.op });
    } catch (err) {
      emit('fail', { line, op: step.op, message: String(err && err.message) });
    }
  }
}

async function main() {
  const scenario = JSON.parse(process.argv[2]);
  for (let i = 0; i < scenario.steps.length; i += 1) {
    const step = scenario.steps[i];
    try {
      await runStep(scenario.url, step);
    } catch (err) {
      emit('fail', { step: i, op: step.op, message: String(err && err.message) });
      process.exit(1);
    }
    emit('step', { step: i, op: step.op });
  }
  emit('done', {});
  process.exit(0);
}

main();
