#!/usr/bin/env node
// Load generator for anonchat: STOMP over WebSocket clients spread over
// several worker processes.
//
// Modes
//   steps  (default) N clients subscribe to /topic/chat, P of them publish at
//          stepped total rates; per step: offered rate, deliveries/s,
//          p50/p99/max latency (send -> receive) and deliveries missing.
//          --subscribe 0: nobody subscribes, the clients only publish
//          (filling history).
//          --slow K adds K clients that stop reading after subscribing
//          (they are left out of the expectations; their closes are counted).
//   idle   N clients connect with heart-beats and are held for --hold s.
//   churn  --rate connections per second each CONNECT, SUBSCRIBE, then
//          DISCONNECT (with receipts), for --duration s.
//
// Every line that starts with "{" on stdout is one JSON record; the rest is
// a readable table. Latency is measured from a marker in the content:
//   #b#<step>.<publisher>.<seq>.<sent-us>#
// with CLOCK_MONOTONIC microseconds (process.hrtime), which every process
// on the machine shares, so no delivery is JSON-parsed.
"use strict";

const { fork } = require("child_process");
const os = require("os");
const fs = require("fs");
const WebSocket = require("ws");

// -- options ------------------------------------------------------------------

const DEFAULTS = {
  mode: "steps",
  url: "ws://127.0.0.1:8080/ws-chat",
  clients: 200,
  publishers: 10,
  rates: "500,1000,2000",
  step: 5,
  drain: 5,
  workers: 2,
  pad: 64,
  "max-p99": 100,
  "stop-on-fail": 1,
  retries: 1,
  slow: 0,
  heartbeat: "0,0",
  hold: 20,
  rate: 500,
  duration: 20,
  concurrency: 200,
  "local-addresses": 1,
  subscribe: 1,
  json: "",
  label: "",
};

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    let name, value;
    if (eq > 0) {
      name = arg.slice(2, eq);
      value = arg.slice(eq + 1);
    } else {
      name = arg.slice(2);
      value = argv[++i];
    }
    if (name === "help") usage(0);
    if (!(name in DEFAULTS)) throw new Error(`unknown option --${name}`);
    opts[name] = typeof DEFAULTS[name] === "number" ? Number(value) : value;
  }
  opts.rateList = String(opts.rates).split(",").filter(Boolean).map(Number);
  return opts;
}

function usage(code) {
  process.stdout.write(
    "usage: node loadgen.js [--mode steps|idle|churn] [--url URL] [--clients N]\n" +
      "  [--publishers P] [--rates R1,R2,...] [--step S] [--drain S] [--workers W]\n" +
      "  [--pad CHARS] [--max-p99 MS] [--stop-on-fail 0|1] [--retries N] [--slow K]\n" +
      "  [--heartbeat SX,SY] [--hold S] [--rate CONN/S] [--duration S]\n" +
      "  [--concurrency N] [--local-addresses K] [--subscribe 0|1] [--json FILE] [--label TEXT]\n" +
      "defaults: " + JSON.stringify(DEFAULTS) + "\n"
  );
  process.exit(code);
}

// -- shared helpers -------------------------------------------------------------

function nowUs() {
  const t = process.hrtime();
  return t[0] * 1e6 + Math.floor(t[1] / 1000);
}

// Latency histogram: 10 us buckets to 10 ms, 1 ms to 1 s, 100 ms to 60 s.
const H1 = 1000, H2 = 990, H3 = 591;
const HSIZE = H1 + H2 + H3;
function bucketOf(us) {
  if (us < 10000) return us < 0 ? 0 : (us / 10) | 0;
  if (us < 1000000) return H1 + (((us - 10000) / 1000) | 0);
  const b = H1 + H2 + (((us - 1000000) / 100000) | 0);
  return b < HSIZE ? b : HSIZE - 1;
}
function bucketUpperMs(b) {
  if (b < H1) return ((b + 1) * 10) / 1000;
  if (b < H1 + H2) return 10 + (b - H1 + 1);
  return 1000 + (b - H1 - H2 + 1) * 100;
}
function percentileMs(hist, total, p) {
  if (!total) return null;
  const want = Math.ceil(total * p);
  let seen = 0;
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b];
    if (seen >= want) return bucketUpperMs(b);
  }
  return bucketUpperMs(hist.length - 1);
}

const NUL = "\0";
function connectFrame(heartbeat) {
  return `CONNECT\naccept-version:1.2\nhost:anonchat\nheart-beat:${heartbeat}\n\n${NUL}`;
}
const SUBSCRIBE_FRAME = `SUBSCRIBE\nid:sub-0\ndestination:/topic/chat\nreceipt:sub\n\n${NUL}`;
const DISCONNECT_FRAME = `DISCONNECT\nreceipt:bye\n\n${NUL}`;
const SEND_HEAD = "SEND\ndestination:/app/chat.sendMessage\ncontent-type:application/json\n\n";

const C_CONNECTED = 67, C_MESSAGE = 77, C_RECEIPT = 82, C_ERROR = 69, C_EOL = 10;
const MARK = Buffer.from("#b#");

function wsOptions(localAddress) {
  const o = {
    perMessageDeflate: false,
    skipUTF8Validation: true,
    maxPayload: 4 * 1024 * 1024,
    handshakeTimeout: 30000,
  };
  if (localAddress) o.localAddress = localAddress;
  return o;
}

function localAddressFor(i, count) {
  if (count <= 1) return undefined;
  return `127.0.0.${1 + (i % count)}`;
}

// =============================================================================
// worker
// =============================================================================

function worker() {
  let opts = null;
  let clients = []; // steps/idle mode
  const live = []; // every client as soon as it is ready (heart-beats start at once)
  const errors = { connect: 0, stompError: 0, closed: 0, firstError: null };
  function noteError(kind, detail) {
    errors[kind]++;
    if (!errors.firstError) errors.firstError = `${kind}: ${String(detail).slice(0, 300)}`;
  }

  // per-step counters
  let step = -1;
  let received = 0, late = 0, gaps = 0, dups = 0, lastRecvUs = 0;
  let hist = new Float64Array(HSIZE);
  let sent = 0;
  let heartbeatsIn = 0;
  let slowClosed = 0;
  let totalPublishers = 0;

  function resetStep(s) {
    step = s;
    received = late = gaps = dups = 0;
    lastRecvUs = 0;
    hist = new Float64Array(HSIZE);
    sent = 0;
  }

  // Parse an unsigned decimal starting at i; returns [value, index after].
  function onDelivery(client, data) {
    const i = data.indexOf(MARK, 60);
    if (i < 0) return; // JOIN / LEAVE / someone else's message
    let j = i + 3, v = 0, c;
    let st = 0;
    while ((c = data[j++]) !== 46) st = st * 10 + c - 48;
    let pub = 0;
    while ((c = data[j++]) !== 46) pub = pub * 10 + c - 48;
    let seq = 0;
    while ((c = data[j++]) !== 46) seq = seq * 10 + c - 48;
    while ((c = data[j++]) !== 35) v = v * 10 + c - 48;
    const now = nowUs();
    const last = client.lastSeq[pub];
    if (seq === last + 1) {
      // in order
    } else if (seq > last + 1) {
      gaps += seq - last - 1;
    } else {
      dups++;
      return;
    }
    client.lastSeq[pub] = seq;
    if (st !== step) {
      late++;
      return;
    }
    received++;
    lastRecvUs = now;
    hist[bucketOf(now - v)]++;
  }

  function makeClient(index, { subscribe, slow, heartbeat }) {
    return new Promise((resolve) => {
      const client = { index, ws: null, ready: false, slow: !!slow, lastSeq: null, closed: false };
      client.lastSeq = new Int32Array(Math.max(totalPublishers, 1)).fill(-1);
      let settled = false;
      const done = (ok) => {
        if (!settled) {
          settled = true;
          resolve(ok ? client : null);
        }
      };
      let ws;
      try {
        ws = new WebSocket(opts.url, "v12.stomp", wsOptions(localAddressFor(index, opts["local-addresses"])));
      } catch (e) {
        noteError("connect", e.message);
        return done(false);
      }
      client.ws = ws;
      ws.on("open", () => ws.send(connectFrame(heartbeat)));
      ws.on("message", (data) => {
        const c = data[0];
        if (c === C_MESSAGE) {
          if (client.ready && !client.slow) onDelivery(client, data);
        } else if (c === C_EOL) {
          heartbeatsIn++;
        } else if (c === C_CONNECTED) {
          if (subscribe) ws.send(SUBSCRIBE_FRAME);
          else {
            client.ready = true;
            live.push(client);
            done(true);
          }
        } else if (c === C_RECEIPT) {
          client.ready = true;
          live.push(client);
          if (client.slow) {
            // stop reading: the kernel buffers fill, then the server's backlog grows
            ws._socket.pause();
            client.poke = setInterval(() => {
              try {
                ws._socket.write(Buffer.from([0x81, 0x81, 0, 0, 0, 0, 10])); // masked "\n"
              } catch (e) {}
            }, 500);
          }
          done(true);
        } else if (c === C_ERROR) {
          noteError("stompError", data.toString("utf8", 0, 200).replace(/\n/g, " | "));
        }
      });
      ws.on("error", (e) => {
        if (!client.ready) noteError("connect", e.message);
        done(false);
      });
      ws.on("close", () => {
        if (client.poke) clearInterval(client.poke);
        if (!client.closed) {
          client.closed = true;
          if (client.slow) slowClosed++;
          else if (client.ready && !shuttingDown) noteError("closed", "server closed a connection");
        }
        done(false);
      });
    });
  }

  let shuttingDown = false;

  async function connectAll(indices, flags) {
    const out = [];
    let next = 0;
    const lanes = [];
    const perWorkerConcurrency = Math.max(1, Math.floor(opts.concurrency / opts.workers));
    for (let l = 0; l < perWorkerConcurrency; l++) {
      lanes.push(
        (async () => {
          while (next < indices.length) {
            const idx = indices[next++];
            const c = await makeClient(idx.index, { ...flags, slow: idx.slow });
            if (c) out.push(c);
          }
        })()
      );
    }
    await Promise.all(lanes);
    return out;
  }

  // -- publishing ---------------------------------------------------------------
  let pubTimer = null;
  function startPublishing(s, ratePerPublisher, durationS, pad) {
    const pubs = clients.filter((c) => c.pubId !== undefined);
    const padding = "x".repeat(Math.max(0, pad));
    const start = nowUs();
    const end = start + durationS * 1e6;
    const counts = new Map(pubs.map((c) => [c, 0]));
    return new Promise((resolve) => {
      const tick = () => {
        const now = nowUs();
        const until = Math.min(now, end);
        const due = Math.floor(((until - start) / 1e6) * ratePerPublisher);
        for (const c of pubs) {
          let n = counts.get(c);
          if (c.closed) continue;
          while (n < due) {
            const seq = c.seq++;
            c.ws.send(`${SEND_HEAD}{"content":"${padding}#b#${s}.${c.pubId}.${seq}.${nowUs()}#"}${NUL}`);
            n++;
            sent++;
          }
          counts.set(c, n);
        }
        if (now >= end) {
          clearInterval(pubTimer);
          pubTimer = null;
          resolve();
        }
      };
      pubTimer = setInterval(tick, 1);
    });
  }

  // -- idle heart-beats -----------------------------------------------------
  let hbTimer = null;
  function startHeartbeats(everyMs) {
    if (!everyMs) return;
    const slices = 50;
    let slice = 0;
    hbTimer = setInterval(() => {
      for (let i = slice; i < live.length; i += slices) {
        const c = live[i];
        if (!c.closed) c.ws.send("\n");
      }
      slice = (slice + 1) % slices;
    }, everyMs / slices);
  }

  // -- churn --------------------------------------------------------------------
  function churn(ratePerWorker, durationS, workerIndex) {
    return new Promise((resolve) => {
      const stats = { started: 0, completed: 0, failed: 0, inFlightMax: 0, hist: new Float64Array(HSIZE) };
      let inFlight = 0;
      const start = nowUs();
      const end = start + durationS * 1e6;
      let counter = workerIndex;
      const one = () => {
        stats.started++;
        inFlight++;
        if (inFlight > stats.inFlightMax) stats.inFlightMax = inFlight;
        const t0 = nowUs();
        const idx = counter;
        counter += opts.workers;
        let finished = false;
        const finish = (ok, why) => {
          if (finished) return;
          finished = true;
          inFlight--;
          if (ok) {
            stats.completed++;
            stats.hist[bucketOf(nowUs() - t0)]++;
          } else {
            stats.failed++;
            if (!errors.firstError) errors.firstError = `churn: ${why}`;
          }
          maybeDone();
        };
        let ws;
        try {
          ws = new WebSocket(opts.url, "v12.stomp", wsOptions(localAddressFor(idx, opts["local-addresses"])));
        } catch (e) {
          return finish(false, e.message);
        }
        let phase = 0; // 0 connecting, 1 subscribed?, 2 disconnecting
        ws.on("open", () => ws.send(connectFrame("0,0")));
        ws.on("message", (data) => {
          const c = data[0];
          if (c === C_CONNECTED) ws.send(SUBSCRIBE_FRAME);
          else if (c === C_RECEIPT) {
            if (phase === 0) {
              phase = 2;
              ws.send(DISCONNECT_FRAME);
            } else {
              phase = 3;
              ws.close(1000);
            }
          } else if (c === C_ERROR) finish(false, data.toString("utf8", 0, 200));
        });
        ws.on("error", (e) => finish(false, e.message));
        ws.on("close", () => finish(phase === 3, `closed in phase ${phase}`));
      };
      let launched = 0;
      const timer = setInterval(() => {
        const now = nowUs();
        const due = Math.floor(((Math.min(now, end) - start) / 1e6) * ratePerWorker);
        while (launched < due) {
          launched++;
          one();
        }
        if (now >= end) {
          clearInterval(timer);
          stoppedLaunching = true;
          maybeDone();
        }
      }, 2);
      let stoppedLaunching = false;
      const maybeDone = () => {
        if (stoppedLaunching && inFlight === 0) resolve(stats);
      };
      // give up on stragglers after 30 s
      setTimeout(() => {
        stats.stuck = inFlight;
        resolve(stats);
      }, (durationS + 30) * 1000);
    });
  }

  // -- control ------------------------------------------------------------------
  process.on("message", async (msg) => {
    try {
      if (msg.cmd === "init") {
        opts = msg.opts;
        totalPublishers = msg.totalPublishers;
        process.send({ cmd: "init-ok" });
      } else if (msg.cmd === "connect") {
        const specs = msg.indices.map((i) => ({ index: i, slow: msg.slow.includes(i) }));
        if (msg.heartbeatMs) startHeartbeats(msg.heartbeatMs);
        clients = await connectAll(specs, { subscribe: msg.subscribe, heartbeat: msg.heartbeat });
        for (const c of clients) {
          const p = msg.publishers.indexOf(c.index);
          if (p >= 0) {
            c.pubId = p;
            c.seq = 0;
          }
        }
        process.send({
          cmd: "connected",
          count: clients.length,
          slow: clients.filter((c) => c.slow).length,
          publishers: clients.filter((c) => c.pubId !== undefined).length,
          errors,
        });
      } else if (msg.cmd === "step") {
        resetStep(msg.step);
        await startPublishing(msg.step, msg.ratePerPublisher, msg.duration, msg.pad);
        process.send({ cmd: "published", step: msg.step, sent });
      } else if (msg.cmd === "poll") {
        process.send({ cmd: "poll", step, received, lastRecvUs });
      } else if (msg.cmd === "collect") {
        process.send({
          cmd: "collect",
          step,
          received,
          late,
          gaps,
          dups,
          lastRecvUs,
          sent,
          hist: Array.from(hist),
          errors: { ...errors },
          heartbeatsIn,
          slowClosed,
          open: clients.filter((c) => !c.closed && !c.slow).length,
        });
      } else if (msg.cmd === "status") {
        process.send({
          cmd: "status",
          open: clients.filter((c) => !c.closed).length,
          heartbeatsIn,
          errors: { ...errors },
          slowClosed,
        });
      } else if (msg.cmd === "churn") {
        const stats = await churn(msg.ratePerWorker, msg.duration, msg.workerIndex);
        process.send({ cmd: "churned", ...stats, hist: Array.from(stats.hist), errors: { ...errors } });
      } else if (msg.cmd === "close") {
        shuttingDown = true;
        if (hbTimer) clearInterval(hbTimer);
        for (const c of clients) {
          if (c.poke) clearInterval(c.poke);
          try {
            c.ws.terminate();
          } catch (e) {}
        }
        process.send({ cmd: "closed" });
        setTimeout(() => process.exit(0), 100);
      }
    } catch (e) {
      process.send({ cmd: "fatal", error: e.stack || String(e) });
    }
  });
}

// =============================================================================
// master
// =============================================================================

class Workers {
  constructor(n) {
    this.procs = [];
    this.waiters = [];
    for (let w = 0; w < n; w++) {
      const p = fork(__filename, ["--worker"], { stdio: ["inherit", "inherit", "inherit", "ipc"] });
      p.index = w;
      p.inbox = [];
      p.on("message", (m) => {
        if (m.cmd === "fatal") {
          console.error(`worker ${w} failed: ${m.error}`);
          process.exit(2);
        }
        p.inbox.push(m);
        this._wake();
      });
      p.on("exit", (code) => {
        if (code && !this.closing) {
          console.error(`worker ${w} exited with ${code}`);
          process.exit(2);
        }
      });
      this.procs.push(p);
    }
  }
  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const f of ws) f();
  }
  // Send msgFor(worker) to each worker and wait for one reply `cmd` from each.
  async all(msgFor, cmd) {
    for (const p of this.procs) p.send(msgFor(p));
    const replies = [];
    for (const p of this.procs) {
      for (;;) {
        const i = p.inbox.findIndex((m) => m.cmd === cmd);
        if (i >= 0) {
          replies.push(p.inbox.splice(i, 1)[0]);
          break;
        }
        await new Promise((r) => this.waiters.push(r));
      }
    }
    return replies;
  }
  async close() {
    this.closing = true;
    await this.all(() => ({ cmd: "close" }), "closed");
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function emit(opts, record) {
  const line = JSON.stringify({ label: opts.label || undefined, ...record });
  process.stdout.write(line + "\n");
  if (opts.json) fs.appendFileSync(opts.json, line + "\n");
}

function mergeErrors(replies) {
  const e = { connect: 0, stompError: 0, closed: 0, firstError: null };
  for (const r of replies) {
    e.connect += r.errors.connect;
    e.stompError += r.errors.stompError;
    e.closed += r.errors.closed;
    e.firstError = e.firstError || r.errors.firstError;
  }
  return e;
}

function indicesFor(w, total, workers) {
  const out = [];
  for (let i = w; i < total; i += workers) out.push(i);
  return out;
}

async function connectClients(opts, workers, subscribe, heartbeat) {
  const total = opts.clients + opts.slow;
  const publishers = [];
  for (let p = 0; p < Math.min(opts.publishers, opts.clients); p++) publishers.push(p);
  const slow = [];
  for (let k = 0; k < opts.slow; k++) slow.push(opts.clients + k);
  const [sx] = heartbeat.split(",").map(Number);
  const t0 = Date.now();
  const replies = await workers.all(
    (p) => ({
      cmd: "connect",
      indices: indicesFor(p.index, total, opts.workers),
      publishers,
      slow,
      subscribe,
      heartbeat,
      heartbeatMs: sx,
    }),
    "connected"
  );
  const count = replies.reduce((a, r) => a + r.count, 0);
  return {
    count,
    slow: replies.reduce((a, r) => a + r.slow, 0),
    publishers: replies.reduce((a, r) => a + r.publishers, 0),
    seconds: (Date.now() - t0) / 1000,
    errors: mergeErrors(replies),
  };
}

const fmt = (v, d = 0) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));

async function runSteps(opts, workers) {
  const conn = await connectClients(opts, workers, !!opts.subscribe, opts.heartbeat);
  const subscribers = opts.subscribe ? conn.count - conn.slow : 0;
  emit(opts, { type: "connected", mode: "steps", url: opts.url, clients: conn.count, subscribers,
    publishers: conn.publishers, slow: conn.slow, seconds: conn.seconds, errors: conn.errors });
  if (conn.count < opts.clients + opts.slow || conn.publishers === 0) {
    console.error(`only ${conn.count} of ${opts.clients + opts.slow} clients connected: ${conn.errors.firstError}`);
  }
  await sleep(500);
  const rows = [];
  let best = null;
  let retried = 0;
  for (let s = 0, r = 0; r < opts.rateList.length; s++) {
    const rate = opts.rateList[r];
    const stepStart = nowUs();
    const pubs = await workers.all(
      () => ({ cmd: "step", step: s, ratePerPublisher: rate / conn.publishers, duration: opts.step, pad: opts.pad }),
      "published"
    );
    const sent = pubs.reduce((a, r) => a + r.sent, 0);
    const expected = sent * subscribers;
    const drainUntil = Date.now() + opts.drain * 1000;
    for (;;) {
      const polls = await workers.all(() => ({ cmd: "poll" }), "poll");
      const got = polls.reduce((a, r) => a + r.received, 0);
      if (got >= expected || Date.now() > drainUntil) break;
      await sleep(100);
    }
    const col = await workers.all(() => ({ cmd: "collect" }), "collect");
    const hist = new Float64Array(HSIZE);
    let received = 0, late = 0, gaps = 0, dups = 0, lastRecvUs = 0, slowClosed = 0, open = 0;
    for (const r of col) {
      for (let b = 0; b < HSIZE; b++) hist[b] += r.hist[b];
      received += r.received;
      late += r.late;
      gaps += r.gaps;
      dups += r.dups;
      slowClosed += r.slowClosed;
      open += r.open;
      lastRecvUs = Math.max(lastRecvUs, r.lastRecvUs);
    }
    const errs = mergeErrors(col);
    const elapsed = Math.max(opts.step, (lastRecvUs - stepStart) / 1e6);
    const missing = Math.max(0, expected - received);
    const p99 = percentileMs(hist, received, 0.99);
    const record = {
      type: "step",
      step: s,
      offered: rate,
      sent_per_s: Math.round(sent / opts.step),
      sent,
      subscribers,
      deliveries_per_s: Math.round(received / elapsed),
      expected,
      received,
      missing,
      gaps,
      duplicates: dups,
      p50_ms: percentileMs(hist, received, 0.5),
      p90_ms: percentileMs(hist, received, 0.9),
      p99_ms: p99,
      max_ms: received ? maxMs(hist) : null,
      errors: errs,
      slow_closed: slowClosed,
      open,
    };
    record.pass = missing === 0 && p99 !== null && p99 <= opts["max-p99"] && errs.closed === 0 && errs.stompError === 0;
    emit(opts, record);
    rows.push(record);
    if (record.pass) {
      if (!best || record.offered >= best.offered) best = record;
      retried = 0;
      r++;
    } else if (retried < opts.retries) {
      retried++; // one noisy step (a shared machine) gets another chance
    } else if (opts["stop-on-fail"]) {
      break;
    } else {
      retried = 0;
      r++;
    }
  }
  emit(opts, {
    type: "summary",
    mode: "steps",
    subscribers,
    publishers: conn.publishers,
    max_p99_ms: opts["max-p99"],
    best_rate: best ? best.offered : null,
    best_deliveries_per_s: best ? best.deliveries_per_s : null,
    best_p99_ms: best ? best.p99_ms : null,
    peak_deliveries_per_s: Math.max(0, ...rows.map((r) => r.deliveries_per_s)),
  });
  const lines = [
    `${opts.label ? opts.label + ": " : ""}${subscribers} subscribers, ${conn.publishers} publishers, ${opts.step}s steps`,
    "  offered  sent/s  deliv/s    p50ms   p99ms   maxms  missing  closed  pass",
  ];
  for (const r of rows) {
    lines.push(
      `  ${String(r.offered).padStart(7)} ${String(r.sent_per_s).padStart(7)} ${String(r.deliveries_per_s).padStart(8)}` +
        ` ${fmt(r.p50_ms, 2).padStart(8)} ${fmt(r.p99_ms, 1).padStart(7)} ${fmt(r.max_ms, 0).padStart(7)}` +
        ` ${String(r.missing).padStart(8)} ${String(r.errors.closed).padStart(7)}  ${r.pass ? "yes" : "NO"}`
    );
  }
  process.stdout.write(lines.join("\n") + "\n");
}

function maxMs(hist) {
  for (let b = hist.length - 1; b >= 0; b--) if (hist[b]) return bucketUpperMs(b);
  return null;
}

async function runIdle(opts, workers) {
  const conn = await connectClients(opts, workers, !!opts.subscribe, opts.heartbeat);
  emit(opts, { type: "connected", mode: "idle", clients: conn.count, seconds: conn.seconds, errors: conn.errors });
  const t0 = Date.now();
  while (Date.now() - t0 < opts.hold * 1000) {
    await sleep(Math.min(5000, opts.hold * 1000));
    const st = await workers.all(() => ({ cmd: "status" }), "status");
    emit(opts, {
      type: "idle",
      held_s: Math.round((Date.now() - t0) / 1000),
      open: st.reduce((a, r) => a + r.open, 0),
      heartbeats_in: st.reduce((a, r) => a + r.heartbeatsIn, 0),
      errors: mergeErrors(st),
    });
  }
}

async function runChurn(opts, workers) {
  const replies = await workers.all(
    (p) => ({ cmd: "churn", ratePerWorker: opts.rate / opts.workers, duration: opts.duration, workerIndex: p.index }),
    "churned"
  );
  const hist = new Float64Array(HSIZE);
  let started = 0, completed = 0, failed = 0, inFlightMax = 0, stuck = 0;
  for (const r of replies) {
    for (let b = 0; b < HSIZE; b++) hist[b] += r.hist[b];
    started += r.started;
    completed += r.completed;
    failed += r.failed;
    inFlightMax += r.inFlightMax;
    stuck += r.stuck || 0;
  }
  const rec = {
    type: "churn",
    rate: opts.rate,
    duration_s: opts.duration,
    started,
    completed,
    failed,
    stuck,
    completed_per_s: Math.round(completed / opts.duration),
    cycle_p50_ms: percentileMs(hist, completed, 0.5),
    cycle_p99_ms: percentileMs(hist, completed, 0.99),
    cycle_max_ms: maxMs(hist),
    in_flight_max: inFlightMax,
    errors: mergeErrors(replies),
  };
  emit(opts, rec);
  process.stdout.write(
    `churn: ${completed}/${started} connect+subscribe+disconnect cycles ok (${rec.completed_per_s}/s), ` +
      `${failed} failed, cycle p50 ${fmt(rec.cycle_p50_ms, 1)} ms p99 ${fmt(rec.cycle_p99_ms, 1)} ms\n`
  );
}

async function master() {
  const opts = parseArgs(process.argv.slice(2));
  opts.workers = Math.max(1, Math.min(opts.workers, 64));
  const workers = new Workers(opts.workers);
  const totalPublishers = Math.min(opts.publishers, opts.clients);
  await workers.all(() => ({ cmd: "init", opts, totalPublishers }), "init-ok");
  try {
    if (opts.mode === "steps") await runSteps(opts, workers);
    else if (opts.mode === "idle") await runIdle(opts, workers);
    else if (opts.mode === "churn") await runChurn(opts, workers);
    else throw new Error(`unknown mode ${opts.mode}`);
  } finally {
    await workers.close();
  }
  process.exit(0);
}

if (process.argv[2] === "--worker") worker();
else
  master().catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
  });
