#!/usr/bin/env node
// History flood for anonchat: clients that loop over the expensive reads
// until told to stop (SIGTERM/SIGINT, or --duration), to measure what they
// cost the chat (run.py scenario f runs it next to the send->row lag run).
//
// Half the clients walk REST history: GET /api/messages?limit=500, then
// follow next_before back to the start, and again. The other half resume:
// one STOMP 1.2 connection each, SUBSCRIBE /topic/chat with x-since-id:<an
// old id>, read until the replay has delivered --max-replay messages (a
// since-id from the start of history always misses more than that, so
// exactly that many are replayed) or --resume-timeout s, UNSUBSCRIBE (with
// a receipt), and again; a new connection every --reconnect-every resumes.
//
// HTTP statuses other than 200 (429, 503, ...) are counted by code and the
// walk starts over after 100 ms; they are not fatal. A resume the server
// refuses (REPLAY_FAILED on /user/queue/errors: the node is busy with
// history) goes live without a replay; it is counted as refused, not as a
// resume, and is UNSUBSCRIBEd at once, the next one 100 ms later.
// At the end one JSON line goes to stdout: walks, pages, page latency,
// resumes served and refused, resume time, the history messages the server
// served (page rows plus replayed messages), statuses and errors.
"use strict";

const http = require("http");
const WebSocket = require("ws");

const DEFAULTS = {
  url: "http://127.0.0.1:8080",
  clients: 50,
  page: 500,
  "since-id": "",
  "max-replay": 1000,
  "resume-timeout": 5,
  "reconnect-every": 20,
  "archive-below": "",
  duration: 0,
  label: "",
};

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help") usage(0);
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (!(name in DEFAULTS)) throw new Error(`unknown option --${name}`);
    opts[name] = typeof DEFAULTS[name] === "number" ? Number(value) : value;
  }
  return opts;
}

function usage(code) {
  process.stdout.write(
    "usage: node history_flood.js [--url http://HOST:PORT] [--clients N] [--page N]\n" +
      "  [--since-id ID] [--max-replay N] [--resume-timeout S] [--reconnect-every N]\n" +
      "  [--archive-below ID] [--duration S (0 = until SIGTERM)] [--label TEXT]\n" +
      "--since-id defaults to the oldest id one history walk finds; --archive-below\n" +
      "counts the resumes whose first replayed message is older than that id.\n" +
      "defaults: " + JSON.stringify(DEFAULTS) + "\n"
  );
  process.exit(code);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function nowMs() {
  const t = process.hrtime();
  return t[0] * 1e3 + t[1] / 1e6;
}

function idKey(id) {
  const dash = id.indexOf("-");
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

function olderThan(a, b) {
  const [am, as] = idKey(a);
  const [bm, bs] = idKey(b);
  return am < bm || (am === bm && as < bs);
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] * 10) / 10;
}

const stats = {
  walks: 0,
  walks_restarted: 0,
  pages: 0,
  page_ms: [],
  status: {},
  http_errors: 0,
  resumes: 0,
  resumes_refused: 0,
  history_served: 0,
  resume_ms: [],
  resume_timeouts: 0,
  resumes_from_archive: 0,
  replayed: 0,
  connections: 0,
  closed_by_server: 0,
  stomp_errors: {},
  app_errors: {},
  close_codes: {},
  ws_errors: 0,
  first_error: null,
  loop_lag_ms: [],
};

function noteError(detail) {
  if (!stats.first_error) stats.first_error = String(detail).slice(0, 300);
}

let stopping = false;

// -- REST history walks -----------------------------------------------------------

// Only next_before is needed, and it is the last key of the page: read it
// from the tail instead of parsing 500 messages (the flood should load the
// server, not the two cores it shares with it).
function nextBefore(body) {
  const at = body.lastIndexOf('"next_before"');
  if (at < 0) return JSON.parse(body.toString("utf8")).next_before;
  const rest = body.toString("utf8", at + 13).replace(/^\s*:\s*/, "");
  if (rest.startsWith("null")) return null;
  return rest.slice(1, rest.indexOf('"', 1));
}

// Rows in a page: each message object has exactly one "type" key.
function countRows(body) {
  let n = 0;
  for (let at = body.indexOf('"type":'); at >= 0; at = body.indexOf('"type":', at + 7)) n++;
  return n;
}

function get(agent, path) {
  return new Promise((resolve, reject) => {
    const req = http.get(opts.url + path, { agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

function pagePath(before) {
  return `/api/messages?limit=${opts.page}` + (before ? `&before=${encodeURIComponent(before)}` : "");
}

// One walk from the newest page to the oldest; returns the oldest id seen,
// or null when a status other than 200 ended it.
async function walk(agent) {
  let before = null;
  let oldest = null;
  for (;;) {
    if (stopping) return null;
    const t0 = nowMs();
    const { status, body } = await get(agent, pagePath(before));
    stats.status[status] = (stats.status[status] || 0) + 1;
    if (status !== 200) {
      stats.walks_restarted++;
      return null;
    }
    stats.pages++;
    stats.page_ms.push(nowMs() - t0);
    stats.history_served += countRows(body);
    const m = /"id":"([0-9]+-[0-9]+)"/.exec(body.toString("utf8", 0, 200));
    if (m) oldest = m[1];
    before = nextBefore(body);
    if (before === null) {
      stats.walks++;
      return oldest;
    }
  }
}

async function walker() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  while (!stopping) {
    try {
      if ((await walk(agent)) === null && !stopping) await sleep(100);
    } catch (e) {
      stats.http_errors++;
      noteError(`http: ${e.message}`);
      await sleep(100);
    }
  }
  agent.destroy();
}

// -- resumes over STOMP -------------------------------------------------------------

const NUL = "\0";
const CONNECT = `CONNECT\naccept-version:1.2\nhost:anonchat\nheart-beat:0,0\n\n${NUL}`;

function headersOf(data) {
  const end = data.indexOf("\n\n");
  const lines = data.toString("utf8", 0, end < 0 ? Math.min(data.length, 2000) : end).split("\n");
  const headers = { command: lines[0] };
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(":");
    if (colon > 0 && !(lines[i].slice(0, colon) in headers)) headers[lines[i].slice(0, colon)] = lines[i].slice(colon + 1);
  }
  return headers;
}

const sockets = new Set();
const wsUrl = () => opts.url.replace(/^http/, "ws") + "/ws-chat";

// Resolves when the connection is gone (closed by us to renew it, by the
// server, or at the stop).
function resumer(index) {
  return new Promise((resolve) => {
    stats.connections++;
    const ws = new WebSocket(wsUrl(), "v12.stomp", { perMessageDeflate: false, skipUTF8Validation: true });
    sockets.add(ws);
    let n = 0;
    let onThis = 0;
    let sub = null; // subscription of the resume being read, null between resumes
    let subLine = "";
    let served = false; // its first message carried x-resume-gap: a replay, not live only
    let count = 0;
    let t0 = 0;
    let timer = null;
    let renewing = false;

    const subscribe = () => {
      if (stopping) return ws.close(1000);
      if (onThis >= opts["reconnect-every"]) {
        renewing = true;
        return ws.close(1000);
      }
      n++;
      onThis++;
      sub = `r${index}-${n}`;
      subLine = `\nsubscription:${sub}\n`;
      served = false;
      count = 0;
      t0 = nowMs();
      timer = setTimeout(() => finish("timeout"), opts["resume-timeout"] * 1000);
      ws.send(`SUBSCRIBE\nid:${sub}\ndestination:/topic/chat\nx-since-id:${opts["since-id"]}\n\n${NUL}`);
    };

    // outcome: "replayed" (--max-replay messages read), "refused"
    // (REPLAY_FAILED: the subscription went live without a replay) or
    // "timeout"; after a refusal the next resume waits 100 ms, as a walk
    // does after a 503.
    let backoff = 0;
    const finish = (outcome) => {
      clearTimeout(timer);
      backoff = 0;
      if (outcome === "timeout") stats.resume_timeouts++;
      else if (outcome === "refused") {
        stats.resumes_refused++;
        backoff = 100;
      } else {
        stats.resumes++;
        stats.resume_ms.push(nowMs() - t0);
        stats.history_served += count;
      }
      ws.send(`UNSUBSCRIBE\nid:${sub}\nreceipt:${sub}\n\n${NUL}`);
      sub = null;
    };

    ws.on("open", () => ws.send(CONNECT));
    ws.on("message", (data) => {
      const c = data[0];
      if (c === 77 /* MESSAGE */) {
        // Native searches, not a header parse per message: these clients
        // are live subscribers too, and a flood that cannot keep up is cut
        // as a slow consumer instead of loading the server.
        if (data.indexOf("\nsubscription:errors\n") >= 0) {
          const body = data.toString("utf8", data.indexOf("\n\n") + 2);
          const code = (/"code":\s*"([A-Z_]+)"/.exec(body) || [])[1] || "?";
          stats.app_errors[code] = (stats.app_errors[code] || 0) + 1;
          // one replay at a time per connection: a refusal is this one's
          if (code === "REPLAY_FAILED" && sub !== null && !served) finish("refused");
          return;
        }
        if (sub === null || data.indexOf(subLine) < 0) return;
        count++;
        stats.replayed++;
        if (count === 1) {
          const h = headersOf(data);
          served = h["x-resume-gap"] === "true"; // a since-id at the start of history always misses more
          if (served && opts["archive-below"] && h["message-id"] && olderThan(h["message-id"], opts["archive-below"])) {
            stats.resumes_from_archive++;
          }
        }
        if (count >= opts["max-replay"]) finish(served ? "replayed" : "refused");
      } else if (c === 67 /* CONNECTED */) {
        ws.send(`SUBSCRIBE\nid:errors\ndestination:/user/queue/errors\n\n${NUL}`);
        subscribe();
      } else if (c === 82 /* RECEIPT */) {
        if (backoff) setTimeout(subscribe, backoff);
        else subscribe();
      } else if (c === 69 /* ERROR */) {
        const why = headersOf(data).message || "?";
        stats.stomp_errors[why] = (stats.stomp_errors[why] || 0) + 1;
        noteError(`stomp: ${why}`);
      }
    });
    ws.on("error", (e) => {
      stats.ws_errors++;
      noteError(`ws: ${e.message}`);
    });
    ws.on("close", (code) => {
      sockets.delete(ws);
      clearTimeout(timer);
      if (!renewing && !stopping) {
        stats.closed_by_server++;
        stats.close_codes[code] = (stats.close_codes[code] || 0) + 1;
      }
      resolve();
    });
  });
}

async function resumerLoop(index) {
  while (!stopping) {
    await resumer(index);
    if (!stopping) await sleep(10);
  }
}

// -- main ---------------------------------------------------------------------------

let opts;

async function main() {
  opts = parseArgs(process.argv.slice(2));
  if (!opts["since-id"]) {
    const agent = new http.Agent({ keepAlive: true });
    opts["since-id"] = await walk(agent);
    agent.destroy();
    stats.walks = stats.pages = 0;
    stats.page_ms = [];
    stats.status = {};
    if (!opts["since-id"]) throw new Error("no history to resume from");
  }
  const t0 = nowMs();
  let stopped;
  const told = new Promise((resolve) => (stopped = resolve));
  const stop = () => {
    stopping = true;
    stopped();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  if (opts.duration > 0) setTimeout(stop, opts.duration * 1000);
  // how late this process's own timers run: a flood client that stalls
  // stops reading, and the server rightly cuts it as a slow consumer
  let tick = nowMs();
  const lagTimer = setInterval(() => {
    const late = nowMs() - tick - 100;
    tick = nowMs();
    stats.loop_lag_ms.push(Math.max(0, late));
  }, 100);
  const walkers = Math.ceil(opts.clients / 2);
  const loops = [];
  for (let i = 0; i < opts.clients; i++) loops.push(i < walkers ? walker() : resumerLoop(i));
  // stop: walks end after the page they are on; connections are closed
  await told;
  const seconds = (nowMs() - t0) / 1000;
  clearInterval(lagTimer);
  for (const ws of sockets) ws.close(1000);
  await Promise.race([Promise.all(loops), sleep(3000)]);
  const out = {
    type: "flood",
    label: opts.label || undefined,
    seconds: Math.round(seconds * 10) / 10,
    walkers,
    resumers: opts.clients - walkers,
    since_id: opts["since-id"],
    max_replay: opts["max-replay"],
    walks: stats.walks,
    walks_restarted: stats.walks_restarted,
    pages: stats.pages,
    pages_per_s: Math.round(stats.pages / seconds),
    page_p50_ms: percentile(stats.page_ms, 0.5),
    page_p99_ms: percentile(stats.page_ms, 0.99),
    status: stats.status,
    http_errors: stats.http_errors,
    resumes: stats.resumes,
    resumes_per_s: Math.round((stats.resumes / seconds) * 10) / 10,
    resume_p50_ms: percentile(stats.resume_ms, 0.5),
    resume_p99_ms: percentile(stats.resume_ms, 0.99),
    resume_timeouts: stats.resume_timeouts,
    resumes_refused: stats.resumes_refused,
    history_served: stats.history_served,
    history_served_per_s: Math.round(stats.history_served / seconds),
    resumes_from_archive: opts["archive-below"] ? stats.resumes_from_archive : undefined,
    replayed: stats.replayed,
    connections: stats.connections,
    closed_by_server: stats.closed_by_server,
    stomp_errors: stats.stomp_errors,
    app_errors: stats.app_errors,
    close_codes: stats.close_codes,
    ws_errors: stats.ws_errors,
    first_error: stats.first_error,
    loop_lag_p99_ms: percentile(stats.loop_lag_ms, 0.99),
    loop_lag_max_ms: Math.round(Math.max(0, ...stats.loop_lag_ms)),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
