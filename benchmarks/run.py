#!/usr/bin/env python
"""Run the anonchat benchmarks: the same load, in the same run, against the
baseline broadcast server (the floor of Twisted + Autobahn), anonchat (Redis
buffer + MariaDB archive + flusher) and RabbitMQ Web-STOMP when its port
answers; then print the figures and the anonchat/baseline ratios.

    /work/venv/bin/python benchmarks/run.py                 # every scenario
    /work/venv/bin/python benchmarks/run.py --only a,b --step 5
    /work/venv/bin/python benchmarks/run.py --only a --profile
    /work/venv/bin/python benchmarks/run.py --only a,b --node-workers 2   # also --workers 2

Scenarios (targets from the "Benchmarks and speed" issue):
  a  200 subscribers, 10 publishers, stepped rates until p99 > 100 ms or a
     delivery goes missing: highest passing rate per server, ratio >= 0.8
  b  1,000 subscribers: deliveries/s with p99 <= 250 ms, >= 100,000/s
  c  10,000 idle connections with heart-beats in one server process:
     VmRSS per connection <= 20 KiB; 500 connects+disconnects per second
  d  flusher into MariaDB: messages/s drained (>= 20,000/s) and the lag
     from send to row at 5,000 msg/s (< 2 s)
  e  clients that stop reading are disconnected past --max-send-buffer and
     the server's RSS stays flat
  f  d's send->row lag run at 2,000 msg/s (20 publishers, 20 subscribers,
     --lag-seconds) twice on 20,000 seeded messages: plain, then while
     history_flood.js has 50 clients loop REST history walks and
     x-since-id resumes (server at --api-rate 0): lag p99 < 2 s and
     deliveries/s within 10% of the plain run (ratio >= 0.9)
     (`run.py --only f`; --flood-rate, --flood-clients, --seed-messages,
     --max-replay, --history-readers, --history-rate)

Outputs go to benchmarks/results/<timestamp>/ (git-ignored): the JSON
lines of every loadgen run, server logs, profiles and summary.md.
Needs: node + `npm install` in benchmarks/, Redis (db 14 is flushed!),
MariaDB (database anonchat_bench is created and emptied).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, ContextManager, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 14
MYSQL = dict(host="127.0.0.1", port=3306, user="root", password="")
DATABASE = "anonchat_bench"

ANONCHAT_PORT, BASELINE_PORT = 8091, 8090
RABBIT_URL = "ws://127.0.0.1:15674/ws"


# -- small clients ----------------------------------------------------------------


def redis(*args: str | int) -> Any:
    """One command over RESP, enough for FLUSHDB/XLEN/INFO."""
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=10) as sock:
        out = b""
        for command in (("SELECT", REDIS_DB), args):
            parts = [str(a).encode() for a in command]
            out += b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        sock.sendall(out)
        reader = sock.makefile("rb")

        def read() -> Any:
            line = reader.readline()
            kind, rest = line[:1], line[1:-2]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else reader.read(n + 2)[:-2].decode()
            if kind == b"*":
                return [read() for _ in range(int(rest))]
            raise RuntimeError(f"unexpected Redis reply {line!r}")

        read()
        return read()


def mysql(sql: str, database: str | None = DATABASE) -> list[tuple[Any, ...]]:
    import pymysql

    conn = pymysql.connect(database=database, autocommit=True, **MYSQL)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_limit_of(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return " ".join(line.split()[3:5])
    return "?"


# -- servers ------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, argv: list[str], port: int, logdir: str, health: str | None) -> None:
        self.name, self.argv, self.port, self.health = name, argv, port, health
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws-chat"

    def start(self, timeout: float = 60) -> "Server":
        env = dict(os.environ, PYTHONPATH=REPO)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if self.ready():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def ready(self) -> bool:
        if self.health is None:
            return port_open(self.port)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def baseline(logdir: str) -> Server:
    argv = [sys.executable, os.path.join(HERE, "baseline_server.py"), "--port", str(BASELINE_PORT)]
    return Server("baseline", argv, BASELINE_PORT, logdir, None)


def anonchat(logdir: str, name: str = "anonchat", redis_url: bool = True, **options: Any) -> Server:
    # One loadgen publisher stands for many users (250-500 msg/s each at the
    # higher steps): the per-connection message and frame limits are off.
    argv = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "anonchat", "--port", f"tcp:{ANONCHAT_PORT}",
            "--database", f"mysql://root:@127.0.0.1:3306/{DATABASE}", "--rate-limit", "0", "--frame-rate", "0"]
    if redis_url:
        argv += ["--redis", f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return Server(name, argv, ANONCHAT_PORT, logdir, "/healthz")


def reset_stores() -> None:
    redis("FLUSHDB")
    mysql(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", database=None)
    tables = {row[0] for row in mysql("SHOW TABLES")}
    for table in ("chat_messages", "chat_messages_dead_letter"):
        if table in tables:
            mysql(f"TRUNCATE TABLE {table}")


# -- loadgen --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = os.path.join(HERE, "results", stamp)
        os.makedirs(self.out, exist_ok=True)
        self.jsonl = os.path.join(self.out, "loadgen.jsonl")
        self.summary: list[str] = []
        self.figures: dict[str, Any] = {}

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.summary.append(text)

    def loadgen(self, url: str, label: str, **opts: Any) -> list[dict[str, Any]]:
        argv = ["node", os.path.join(HERE, "loadgen.js"), "--url", url, "--label", label, "--json", self.jsonl,
                "--workers", str(self.args.workers)]
        for key, value in opts.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        records: list[dict[str, Any]] = []
        print(f"$ {' '.join(argv)}", flush=True)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=HERE)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                record = json.loads(line)
                records.append(record)
                if record.get("type") in ("step", "idle", "churn"):
                    print("  " + compact(record), flush=True)
                if self.on_record is not None:
                    self.on_record(record)
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0:
            raise RuntimeError(f"loadgen failed ({proc.returncode}) for {label}")
        return records

    on_record: Callable[[dict[str, Any]], None] | None = None


    def rabbit(self) -> bool:
        return port_open(15674)

    # -- scenario a/b: stepped rates ---------------------------------------------

    def stepped(self, key: str, clients: int, publishers: int, rates: str, max_p99: int) -> None:
        a = self.args
        results: dict[str, dict[str, Any]] = {}
        targets: list[tuple[str, Callable[[], Server] | None]] = [
            ("baseline", lambda: baseline(self.out)),
            ("anonchat", lambda: anonchat(self.out)),
        ]
        if a.node_workers > 1:
            workers = f"anonchat-{a.node_workers}w"
            targets.append((workers, lambda: anonchat(self.out, workers, workers=a.node_workers)))
        if self.rabbit():
            targets.append(("rabbitmq", None))
        for name, make in targets:
            reset_stores()
            label = f"{key}-{name}"
            if make is None:
                records = self.loadgen(RABBIT_URL, label, clients=clients, publishers=publishers, rates=rates,
                                       step=a.step, max_p99=max_p99, retries=a.retries)
            else:
                with make() as server:
                    records = self.loadgen(server.url, label, clients=clients, publishers=publishers, rates=rates,
                                           step=a.step, max_p99=max_p99, retries=a.retries)
                    if a.profile and name == "anonchat" and key == "a":
                        best = summary_of(records).get("best_rate") or int(rates.split(",")[0])
                        self.profile(server, clients, publishers, best)
            results[name] = summary_of(records)
        self.figures[key] = results
        self.say(f"\n### Scenario {key}: {clients} clients, {publishers} publishers, pass = p99 <= {max_p99} ms"
                 " and nothing missing")
        self.say("| server | highest passing rate (msg/s) | deliveries/s there | p99 there (ms) | peak deliveries/s seen |")
        self.say("| --- | ---: | ---: | ---: | ---: |")
        for name, s in results.items():
            self.say(f"| {name} | {s.get('best_rate')} | {s.get('best_deliveries_per_s')} | {s.get('best_p99_ms')} |"
                     f" {s.get('peak_deliveries_per_s')} |")
        base = results.get("baseline", {}).get("best_deliveries_per_s") or 0
        anon = results.get("anonchat", {}).get("best_deliveries_per_s") or 0
        if base:
            self.say(f"ratio anonchat/baseline (deliveries/s at the highest passing rate): {anon / base:.2f}")
        several = results.get(f"anonchat-{a.node_workers}w", {}).get("best_deliveries_per_s") or 0
        if several and anon:
            self.say(f"ratio anonchat --workers {a.node_workers} / --workers 1 (deliveries/s at the highest"
                     f" passing rate): {several / anon:.2f}")
        if not self.rabbit():
            self.say("RabbitMQ Web-STOMP: port 15674 does not answer, not measured")

    def spy(self, server: Server, name: str, delay: float = 3, seconds: int = 12) -> threading.Thread:
        """py-spy the server in the background: collapsed stacks, then a flame graph."""
        spy = os.path.join(BIN, "py-spy")
        raw = os.path.join(self.out, f"profile-{name}.txt")
        svg = os.path.join(self.out, f"profile-{name}.svg")

        def record() -> None:
            time.sleep(delay)
            for fmt_, path in (("raw", raw), ("flamegraph", svg)):
                subprocess.run([spy, "record", "--nonblocking", "--rate", "200", "--duration", str(seconds),
                                "--format", fmt_, "--output", path, "--pid", str(server.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if os.path.exists(raw):
                self.figures[f"profile-{name}"] = summarize_profile(raw, 200 * seconds)

        if not os.path.exists(spy):
            print("(py-spy not installed: pip install py-spy)")
        thread = threading.Thread(target=record if os.path.exists(spy) else lambda: None)
        thread.start()
        return thread

    def report_profile(self, name: str, what: str) -> None:
        lines = self.figures.get(f"profile-{name}")
        if lines:
            self.say(f"\n### Profile of anonchat: {what} (profile-{name}.txt / .svg)")
            for line in lines:
                self.say(line)

    def profile(self, server: Server, clients: int, publishers: int, rate: int) -> None:
        """py-spy on anonchat under scenario (a)'s highest passing rate."""
        seconds = 12
        thread = self.spy(server, "a", seconds=seconds)
        self.loadgen(server.url, "a-anonchat-profile", clients=clients, publishers=publishers, rates=rate,
                     step=2 * seconds + 6, max_p99=10**6, retries=0)
        thread.join()
        self.report_profile("a", f"{rate} msg/s to {clients} subscribers")

    # -- scenario c: idle connections and churn ---------------------------------------

    def connections(self) -> None:
        a = self.args
        rows = []
        for make in (lambda: baseline(self.out), lambda: anonchat(self.out)):
            reset_stores()
            with make() as server:
                limit = fd_limit_of(server.pid)
                # warm up: the first connections import and allocate what every later one shares
                self.loadgen(server.url, f"c-{server.name}-warmup", mode="churn", rate=50, duration=1)
                time.sleep(1)
                before = rss_kib(server.pid)
                peak = {"rss": before, "open": 0}

                def sample(record: dict[str, Any]) -> None:
                    if record.get("type") in ("connected", "idle"):
                        peak["rss"] = max(peak["rss"], rss_kib(server.pid))
                        peak["open"] = record.get("open", record.get("clients", 0))

                self.on_record = sample
                idle = self.loadgen(server.url, f"c-{server.name}-idle", mode="idle", clients=a.idle,
                                    heartbeat="10000,10000", hold=a.hold, concurrency=200, local_addresses=8,
                                    subscribe=1 if a.idle_subscribe else 0)
                self.on_record = None
                connected = next(r for r in idle if r["type"] == "connected")
                last = [r for r in idle if r["type"] == "idle"][-1]
                time.sleep(2)
                churn = next(r for r in self.loadgen(server.url, f"c-{server.name}-churn", mode="churn",
                                                    rate=a.churn_rate, duration=a.churn_seconds, local_addresses=8)
                             if r["type"] == "churn")
                per_conn = (peak["rss"] - before) / max(connected["clients"], 1)
                rows.append((server.name, limit, connected["clients"], connected["seconds"], before, peak["rss"],
                             per_conn, last["open"], last["errors"]["closed"], churn, server.pid))
        self.figures["c"] = rows
        self.say(f"\n### Scenario c: {a.idle} idle connections with 10 s heart-beats"
                 f" ({'subscribed' if a.idle_subscribe else 'connected, not subscribed'}) held {a.hold} s;"
                 f" then {a.churn_rate} connect+subscribe+disconnect per second for {a.churn_seconds} s")
        self.say("| server | fd limit | connected | connect time (s) | RSS before (KiB) | RSS with all (KiB) |"
                 " KiB/conn | still open at end | dropped | churn ok/started | churn/s | churn failed |"
                 " cycle p99 (ms) |")
        self.say("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, limit, n, secs, before, after, per, still, dropped, ch, _pid in rows:
            self.say(f"| {name} | {limit} | {n} | {secs:.1f} | {before} | {after} | {per:.1f} | {still} | {dropped} |"
                     f" {ch['completed']}/{ch['started']} | {ch['completed_per_s']} | {ch['failed']} |"
                     f" {ch['cycle_p99_ms']} |")

    # -- scenario d: the flusher ------------------------------------------------------

    def lag_run(self, rate: int, profile: bool, label: str | None = None, options: dict[str, Any] | None = None,
                around: Callable[[Server], ContextManager[Any]] | None = None) -> dict[str, Any]:
        """Send ``rate`` msg/s and poll the table every 100 ms: lag by
        MAX(created_at) (from the server's receive time) and by row count
        (rows behind what had been sent, over the rate: from the send).
        ``around(server)`` is entered before the load and left after it
        (scenario f seeds history and runs its flood there); CHAT rows it
        leaves in the table are not counted as sent."""
        a = self.args
        label = label or f"d-lag-{rate}"
        reset_stores()
        polls: list[tuple[float, float | None, int]] = []
        stop = threading.Event()

        def poll() -> None:
            import pymysql

            conn = pymysql.connect(database=DATABASE, autocommit=True, **MYSQL)  # type: ignore[arg-type]
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("SELECT UNIX_TIMESTAMP(MAX(created_at)), COUNT(*) FROM chat_messages WHERE type='CHAT'")
                    newest, count = cur.fetchone()
                    now = time.time()
                    polls.append((now, None if newest is None else now - float(newest), int(count)))
                    time.sleep(0.1)
            conn.close()

        enter = around or (lambda _server: contextlib.nullcontext())
        with anonchat(self.out, f"anonchat-{label}", **(options or {})) as server, enter(server):
            base = mysql("SELECT COUNT(*) FROM chat_messages WHERE type='CHAT'")[0][0]
            spying = self.spy(server, "d", seconds=6) if profile else None
            begun = {"t": 0.0}

            def mark(record: dict[str, Any]) -> None:
                if record.get("type") == "connected":
                    begun["t"] = time.time() + 0.5  # loadgen waits 0.5 s before the first step
                    poller.start()

            poller = threading.Thread(target=poll)
            self.on_record = mark
            records = self.loadgen(server.url, label, clients=20, publishers=20, rates=rate,
                                   step=a.lag_seconds, max_p99=10**6, retries=0)
            self.on_record = None
            ended = begun["t"] + a.lag_seconds
            time.sleep(3)
            stop.set()
            if poller.is_alive():
                poller.join()
            if spying is not None:
                spying.join()
        step = next(r for r in records if r["type"] == "step")
        started = begun["t"]
        by_time = sorted(lag for t, lag, _ in polls if started + 3 <= t <= ended and lag is not None)
        by_count = sorted(max(0.0, ((t - started) * step["sent_per_s"] - (rows - base)) / step["sent_per_s"])
                          for t, _, rows in polls if started + 3 <= t <= ended)

        def p99(values: list[float]) -> float | None:
            return values[int(0.99 * (len(values) - 1))] if values else None

        rows = mysql("SELECT COUNT(*) FROM chat_messages WHERE type='CHAT'")[0][0] - base
        return dict(rate=rate, subscribers=step["subscribers"], sent_per_s=step["sent_per_s"],
                    deliveries_per_s=step["deliveries_per_s"],
                    delivery_p99_ms=step["p99_ms"], lag_created_p99=p99(by_time),
                    lag_created_max=by_time[-1] if by_time else None,
                    lag_rows_p99=p99(by_count), lag_rows_max=by_count[-1] if by_count else None,
                    rows=rows, sent=step["sent_per_s"] * a.lag_seconds)

    def flusher(self) -> None:
        a = self.args
        lag_runs = [self.lag_run(int(rate), profile=a.profile and i == 0)
                    for i, rate in enumerate(a.lag_rates.split(","))]

        # drain rate: build a backlog with the flusher idle, kill -9, start a node that flushes
        drains = []
        for batch_size in [int(b) for b in a.batch_sizes.split(",")]:
            reset_stores()
            with anonchat(self.out, "anonchat-d-fill", flush_interval=3600) as server:
                rate = a.fill_rate
                self.loadgen(server.url, "d-fill", clients=20, publishers=20, rates=rate,
                             step=max(1, round(a.backlog / rate)), max_p99=10**6, retries=0, drain=30)
                server.stop(signal.SIGKILL)
            backlog = int(redis("XLEN", "anonchat:messages"))
            drained: list[tuple[float, int]] = []
            with anonchat(self.out, "anonchat-d-drain", batch_size=batch_size) as server:
                t0 = time.time()
                while time.time() - t0 < 300:
                    count = mysql("SELECT COUNT(*) FROM chat_messages")[0][0]
                    drained.append((time.time() - t0, int(count)))
                    if count >= backlog:
                        break
                    time.sleep(0.25)
            first = next(((t, c) for t, c in drained if c > 0), (0.0, 0))
            last = drained[-1]
            rate_ = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None
            drains.append(dict(batch_size=batch_size, backlog=backlog, drained=last[1],
                               seconds=last[0] - first[0], rate=rate_))
        self.figures["d"] = dict(lag=lag_runs, drains=drains)
        self.say("\n### Scenario d: flusher into MariaDB (20 publishers, 20 subscribers)")
        self.say("| figure | value |")
        self.say("| --- | ---: |")
        for r in lag_runs:
            self.say(f"| at {r['rate']} msg/s offered: sent/s, deliveries/s (x20 if keeping up), delivery p99 ms |"
                     f" {r['sent_per_s']} / {r['deliveries_per_s']} / {r['delivery_p99_ms']} |")
            self.say(f"| at {r['rate']} msg/s: lag p99 / max (s) now - MAX(created_at) |"
                     f" {fmt(r['lag_created_p99'], 2)} / {fmt(r['lag_created_max'], 2)} |")
            self.say(f"| at {r['rate']} msg/s: lag p99 / max (s) from send, by row count |"
                     f" {fmt(r['lag_rows_p99'], 2)} / {fmt(r['lag_rows_max'], 2)} |")
            self.say(f"| at {r['rate']} msg/s: CHAT rows 3 s after the end / sent | {r['rows']} / {r['sent']} |")
        for d in drains:
            self.say(f"| drain of a {d['backlog']}-entry backlog, batch size {d['batch_size']}: rows / s / rows per s |"
                     f" {d['drained']} / {fmt(d['seconds'], 1)} / {fmt(d['rate'], 0)} |")
        self.report_profile("d", f"ingesting {a.lag_rates.split(',')[0]} msg/s from 20 publishers")

    # -- scenario f: flush lag and fan-out under a history flood ------------------------

    def history_load(self) -> None:
        """Scenario d's lag run at --flood-rate twice on the same settings:
        plain (the baseline), then with history_flood.js running; both on
        seeded history, so walks and old resumes have something to read."""
        a = self.args
        options: dict[str, Any] = dict(api_rate=0, max_replay=a.max_replay)  # one address floods: no REST limit
        if a.history_readers:
            options["history_readers"] = a.history_readers
        if a.history_rate is not None:
            options["history_rate"] = a.history_rate
        runs: dict[str, dict[str, Any]] = {}
        for name, flood in (("plain", False), ("flood", True)):
            floods: list[dict[str, Any]] = []
            runs[name] = self.lag_run(a.flood_rate, profile=a.profile and flood, label=f"f-{name}", options=options,
                                      around=functools.partial(self.seeded_history, flood=flood, floods=floods))
            runs[name]["flood"] = floods[0] if floods else None
        self.figures["f"] = runs
        self.report_history_load(runs)
        self.report_profile("d", "scenario f under the history flood")

    @contextlib.contextmanager
    def seeded_history(self, server: Server, flood: bool, floods: list[dict[str, Any]]) -> Iterator[None]:
        """--seed-messages sent at --fill-rate and flushed; then, with
        ``flood``, history_flood.js until the block ends (its JSON line
        lands in ``floods``)."""
        a = self.args
        records = self.loadgen(server.url, "f-seed", clients=20, publishers=20, subscribe=0, rates=a.fill_rate,
                               step=max(1, round(a.seed_messages / a.fill_rate)), max_p99=10**6, retries=0)
        sent = next(r for r in records if r["type"] == "step")["sent"]
        deadline = time.time() + 120
        while mysql("SELECT COUNT(*) FROM chat_messages WHERE type='CHAT'")[0][0] < sent:
            if time.time() > deadline:
                raise RuntimeError(f"seeded history not flushed after 120 s ({sent} sent)")
            time.sleep(0.5)
        if not flood:
            yield
            return
        since = mysql("SELECT id FROM chat_messages WHERE type='CHAT' ORDER BY created_at, id LIMIT 1")[0][0]
        # older than the buffer's oldest entry = only in the archive
        oldest_buffered = redis("XRANGE", "anonchat:messages", "-", "+", "COUNT", 1)
        argv = ["node", os.path.join(HERE, "history_flood.js"), "--url", f"http://127.0.0.1:{server.port}",
                "--clients", str(a.flood_clients), "--since-id", since, "--max-replay", str(a.max_replay),
                "--label", "f-flood"]
        if oldest_buffered:
            argv += ["--archive-below", oldest_buffered[0][0]]
        print(f"$ {' '.join(argv)}", flush=True)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=HERE)
        try:
            time.sleep(2)  # the flood in full swing before the lag run's clients connect
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"history_flood.js failed ({proc.returncode})")
        with open(self.jsonl, "a") as f:
            f.write(lines[-1] + "\n")
        floods.append(json.loads(lines[-1]))
        print("  " + lines[-1], flush=True)

    def report_history_load(self, runs: dict[str, dict[str, Any]]) -> None:
        a = self.args
        plain, flood = runs["plain"], runs["flood"]
        self.say(f"\n### Scenario f: send->row lag and fan-out at {a.flood_rate} msg/s (20 publishers,"
                 f" 20 subscribers, {a.lag_seconds} s) on {a.seed_messages} seeded messages, plain and with"
                 f" {a.flood_clients} clients flooding history (--api-rate 0, --max-replay {a.max_replay})")
        self.say("| figure | plain | flood |")
        self.say("| --- | ---: | ---: |")
        rows = [("subscribers connected", "subscribers", None), ("sent/s", "sent_per_s", None),
                ("deliveries/s", "deliveries_per_s", None),
                ("delivery p99 (ms)", "delivery_p99_ms", None),
                ("lag p99 (s), now - MAX(created_at)", "lag_created_p99", 2),
                ("lag max (s), now - MAX(created_at)", "lag_created_max", 2),
                ("lag p99 (s) from send, by row count", "lag_rows_p99", 2),
                ("lag max (s) from send, by row count", "lag_rows_max", 2),
                ("CHAT rows 3 s after the end", "rows", None), ("sent", "sent", None)]
        for title, key, digits in rows:
            cells = [fmt(r[key], digits) if digits is not None else str(r[key]) for r in (plain, flood)]
            self.say(f"| {title} | {cells[0]} | {cells[1]} |")
        f_ = flood.get("flood") or {}
        self.say(f"flood: history served {f_.get('history_served_per_s')} messages/s (REST rows and replayed"
                 f" messages); {f_.get('walks')} history walks ({f_.get('pages_per_s')} pages/s, page p50/p99"
                 f" {f_.get('page_p50_ms')}/{f_.get('page_p99_ms')} ms), statuses {f_.get('status')};"
                 f" {f_.get('resumes')} resumes replayed ({f_.get('resumes_per_s')}/s, p50/p99"
                 f" {f_.get('resume_p50_ms')}/{f_.get('resume_p99_ms')} ms, {f_.get('resumes_from_archive')} reached"
                 f" below the buffer), {f_.get('resumes_refused')} refused (went live without a replay),"
                 f" {f_.get('resume_timeouts')} timed out; application errors {f_.get('app_errors')};"
                 f" closed by server {f_.get('closed_by_server')} (close codes {f_.get('close_codes')}),"
                 f" STOMP errors {f_.get('stomp_errors')}, first error {f_.get('first_error')};"
                 f" the flood's own event-loop lag p99/max {f_.get('loop_lag_p99_ms')}/{f_.get('loop_lag_max_ms')} ms")
        for name, run in runs.items():
            missing = run["sent"] - run["rows"]
            if missing > 0:
                self.say(f"{name}: {missing} of {run['sent']} messages sent were not in the table 3 s after the end"
                         " (refused NOT_STORED, or still unflushed)")
            for event, count in log_events(os.path.join(self.out, f"anonchat-f-{name}.log")):
                self.say(f"{name}: server logged {count} x {event}")
        lags = [flood[k] for k in ("lag_created_p99", "lag_rows_p99")]
        lag = None if None in lags else max(lags)
        ratio = flood["deliveries_per_s"] / plain["deliveries_per_s"] if plain["deliveries_per_s"] else None
        lag_ok = lag is not None and lag < 2
        ratio_ok = ratio is not None and ratio >= 0.9
        self.say(f"lag p99 under the flood (worse of the two measures): {fmt(lag, 2)} s, target < 2 s:"
                 f" {'PASS' if lag_ok else 'FAIL'}")
        self.say(f"deliveries/s flood/plain: {fmt(ratio, 2)}, target >= 0.90: {'PASS' if ratio_ok else 'FAIL'}")

    # -- scenario e: slow consumers ---------------------------------------------------

    def slow(self) -> None:
        a = self.args
        reset_stores()
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        with anonchat(self.out, "anonchat-e", max_send_buffer=524288) as server:

            def sample() -> None:
                t0 = time.time()
                while not stop.is_set():
                    samples.append((time.time() - t0, rss_kib(server.pid)))
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample)
            sampler.start()
            records = self.loadgen(server.url, "e-slow", clients=20, publishers=10, slow=a.slow_clients, pad=900,
                                   rates=",".join([str(a.slow_rate)] * 3), step=a.slow_seconds, max_p99=10**6,
                                   stop_on_fail=0, retries=0, drain=3)
            stop.set()
            sampler.join()
        steps = [r for r in records if r["type"] == "step"]
        rss = [kib for _, kib in samples]
        self.figures["e"] = dict(steps=steps, rss=samples)
        self.say(f"\n### Scenario e: {a.slow_clients} clients stop reading while 20 others receive"
                 f" {a.slow_rate} msg/s of ~1 KiB (max-send-buffer 512 KiB)")
        self.say("| step | slow clients closed (cumulative) | healthy missing | healthy p99 (ms) | server RSS at step end (KiB) |")
        self.say("| --- | ---: | ---: | ---: | ---: |")
        span = a.slow_seconds + 3
        for i, s in enumerate(steps):
            at = [kib for t, kib in samples if t <= (i + 1) * span]
            self.say(f"| {i} | {s['slow_closed']} | {s['missing']} | {s['p99_ms']} | {at[-1] if at else '-'} |")
        if rss:
            self.say(f"server RSS: min {min(rss)} KiB, max {max(rss)} KiB, last {rss[-1]} KiB")

    def write_summary(self) -> None:
        path = os.path.join(self.out, "summary.md")
        with open(path, "w") as f:
            f.write("\n".join(self.summary) + "\n")
        with open(os.path.join(self.out, "figures.json"), "w") as f:
            json.dump(self.figures, f, indent=1, default=str)
        print(f"\nwritten: {path}")


def log_events(path: str, top: int = 8) -> list[tuple[str, int]]:
    """The most frequent warnings and application errors in a server log
    (namespace and level, or the error code), commonest first."""
    counts: dict[str, int] = {}
    with open(path, errors="replace") as f:
        for line in f:
            _, _, rest = line.partition(" [")
            namespace, _, text = rest.partition("] ")
            if namespace.endswith(("#warn", "#error", "#critical")):
                key = namespace
            elif "application error " in text:
                key = "application error " + text.split("application error ", 1)[1].split()[0]
            else:
                continue
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top]


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in records if r.get("type") == "summary"), {})


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def compact(record: dict[str, Any]) -> str:
    keep = ("offered", "sent_per_s", "deliveries_per_s", "p50_ms", "p99_ms", "max_ms", "missing", "slow_closed",
            "pass", "held_s", "open", "heartbeats_in", "completed", "failed", "completed_per_s", "cycle_p99_ms")
    return " ".join(f"{k}={record[k]}" for k in keep if k in record)


def summarize_profile(raw_path: str, expected_samples: int) -> list[str]:
    """Self and inclusive time per function from py-spy's collapsed stacks,
    main thread only (adbapi's SQL threads are not on the reactor)."""
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if stack.startswith("Thread._bootstrap"):
                continue  # adbapi's SQL threads, not the reactor
            count = int(count_text)
            total += count
            functions = [shorten(frame) for frame in stack.split(";")]
            if functions:
                self_time[functions[-1]] = self_time.get(functions[-1], 0) + count
            for function in set(functions):
                inclusive[function] = inclusive.get(function, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"busy samples on the reactor thread: {total} of ~{expected_samples} "
             f"({100.0 * total / expected_samples:.0f}% of one core)",
             "", "| self % | function |", "| ---: | --- |"]
    for function, count in sorted(self_time.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"| {100.0 * count / total:.1f} | {function} |")
    lines += ["", "| inclusive % | function (below the reactor loop) |", "| ---: | --- |"]
    below = [(f, c) for f, c in inclusive.items() if c < 0.9 * total]
    for function, count in sorted(below, key=lambda kv: -kv[1])[:25]:
        lines.append(f"| {100.0 * count / total:.1f} | {function} |")
    lines += ["", "| inclusive % | anonchat function |", "| ---: | --- |"]
    ours = [(f, c) for f, c in inclusive.items() if "(anonchat/" in f]
    for function, count in sorted(ours, key=lambda kv: -kv[1])[:20]:
        lines.append(f"| {100.0 * count / total:.1f} | {function} |")
    return lines


def shorten(frame: str) -> str:
    # "send (anonchat/web/websocket.py:101)" -> "send (anonchat/web/websocket.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="a,b,c,d,e,f", help="comma-separated scenarios")
    parser.add_argument("--step", type=float, default=5, help="seconds per rate step")
    parser.add_argument("--workers", type=int, default=2, help="loadgen worker processes")
    parser.add_argument("--node-workers", type=int, default=1,
                        help="scenarios a/b also run anonchat with --workers N (N > 1), in the same run")
    parser.add_argument("--rates-a", default="250,500,750,1000,1250,1500,1750,2000,2500,3000,3500,4000,5000")
    parser.add_argument("--rates-b", default="50,100,150,200,250,300,350,400,500,600,800")
    parser.add_argument("--retries", type=int, default=2, help="repeats of a failing step before giving up")
    parser.add_argument("--profile", action="store_true", help="py-spy anonchat during scenario a")
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--hold", type=int, default=35, help="seconds to hold idle connections (> 3 heart-beats)")
    parser.add_argument("--idle-subscribe", action="store_true",
                        help="idle clients also subscribe to /topic/chat (every JOIN then goes to all: O(n^2))")
    parser.add_argument("--churn-rate", type=int, default=500)
    parser.add_argument("--churn-seconds", type=int, default=20)
    parser.add_argument("--lag-rates", default="5000,1000", help="msg/s for the send->row lag runs")
    parser.add_argument("--lag-seconds", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=60000, help="messages to build up for the drain test")
    parser.add_argument("--fill-rate", type=int, default=5000)
    parser.add_argument("--batch-sizes", default="500,5000", help="flusher batch sizes to drain with")
    parser.add_argument("--slow-clients", type=int, default=20)
    parser.add_argument("--slow-rate", type=int, default=1000)
    parser.add_argument("--slow-seconds", type=int, default=15)
    parser.add_argument("--flood-rate", type=int, default=2000, help="msg/s for scenario f's lag runs")
    parser.add_argument("--flood-clients", type=int, default=50, help="history_flood.js clients (half walk, half resume)")
    parser.add_argument("--seed-messages", type=int, default=20000, help="history sent and flushed before each f run")
    parser.add_argument("--max-replay", type=int, default=1000, help="the server's --max-replay in scenario f")
    parser.add_argument("--history-rate", type=float, default=None,
                        help="the server's --history-rate in scenario f (default: its default; 0 = no limit)")
    parser.add_argument("--history-readers", type=int, default=0,
                        help="the server's --history-readers in scenario f (0 = its default)")
    args = parser.parse_args()

    if shutil.which("node") is None or not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        sys.exit("needs node and `npm install` in benchmarks/")
    soft, hard = raise_fd_limit()
    bench = Bench(args)
    bench.say(f"# anonchat benchmarks {time.strftime('%Y-%m-%d %H:%M:%S')} ({os.cpu_count()} CPUs,"
              f" open-file limit {soft}/{hard}, loadgen workers {args.workers}, {args.step:g} s steps)")
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "anonchat"], capture_output=True,
                           text=True).stdout.count("\n")
    bench.say(f"anonchat tree: HEAD {head}, {dirty} uncommitted change(s) under anonchat/;"
              f" load average before: {os.getloadavg()[0]:.2f}")
    only = set(args.only.split(","))
    try:
        if "a" in only:
            bench.stepped("a", 200, 10, args.rates_a, 100)
        if "b" in only:
            bench.stepped("b", 1000, 10, args.rates_b, 250)
        if "c" in only:
            bench.connections()
        if "d" in only:
            bench.flusher()
        if "e" in only:
            bench.slow()
        if "f" in only:
            bench.history_load()
    finally:
        bench.write_summary()


if __name__ == "__main__":
    main()
