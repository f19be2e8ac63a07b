"""``--workers N``: one ``twistd anonchat`` runs N node processes on one
listening port, restarts one that dies, and drains them all on SIGTERM.

The black-box tests run the real thing and look at it from outside: the
parent's child processes (``/proc``), the nodes they registered in Redis,
what STOMP clients on the shared port see, and the archive. The unit tests
pin the supervisor's pieces that need no process: the restart back-off,
the workers' command line, and how a worker's log line is relayed.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import urllib.request
from typing import Any

from twisted.internet import threads
from twisted.logger import LogLevel, formatEvent
from twisted.trial import unittest

from anonchat.workers import RestartBackoff, WorkerSeat, relayed_event, worker_argv
from tests.serverprocess import ServerProcess, free_port
from tests.test_redis_tls import make_pki
from tests.test_cluster_faults import (
    Chatter,
    archived,
    cluster_redis,
    fresh_mysql,
    health,
    node_args,
    redis_connection,
    report,
    sleep,
    strictly_increasing,
    until,
)


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry))
    return found


async def nodes_and_users(redis_url: str) -> dict[str, set[str]]:
    """Every node registered in Redis presence, with the users it holds."""
    redis = await redis_connection(redis_url)
    try:
        nodes = await redis.execute_command("SMEMBERS", "anonchat:nodes")
        result = {}
        for node in nodes:
            node = node.decode() if isinstance(node, bytes) else str(node)
            users = await redis.execute_command("SMEMBERS", f"anonchat:node:{node}:users")
            result[node] = {u.decode() if isinstance(u, bytes) else str(u) for u in users}
        return result
    finally:
        await redis.disconnect()


async def live_nodes(redis_url: str) -> set[str]:
    """Nodes whose presence key is alive (a dead one's expires after --node-ttl)."""
    redis = await redis_connection(redis_url)
    try:
        alive = set()
        for node in await redis.execute_command("SMEMBERS", "anonchat:nodes"):
            node = node.decode() if isinstance(node, bytes) else str(node)
            if await redis.execute_command("EXISTS", f"anonchat:node:{node}"):
                alive.add(node)
        return alive
    finally:
        await redis.disconnect()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def ready_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.read_log().splitlines() if "] worker " in line and " ready" in line]


async def start_workers(test: unittest.TestCase, server: ServerProcess, redis_url: str, workers: int) -> set[int]:
    """Start the server and wait until every worker is a node; their PIDs."""
    await server.start(timeout=40)
    await until(lambda: len(ready_lines(server)) >= workers, 30, f"{workers} workers to say they are ready")
    pids = children_of(server.pid)
    test.assertEqual(len(pids), workers, server.read_log()[-3000:])
    return pids


class WorkersTests(unittest.TestCase):
    timeout = 120

    async def test_two_workers_are_two_nodes_on_one_port_one_chat_and_drain_on_sigterm(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        server = ServerProcess(self, *node_args(redis_url, mysql_url, "--workers", "2"), name="workers")
        pids = await start_workers(self, server, redis_url, 2)
        self.assertNotIn(server.pid, pids)

        # connections on the one port land on both workers: two nodes, each with users
        chatters = []
        for i in range(16):
            chatters.append(await Chatter(server, f"c{i}").join())
        names = {c.name for c in chatters}
        self.assertEqual(len(names), 16, "nicknames are unique across the workers")
        await until(lambda: self._users_listed(redis_url, names), 10, "every user filed under a node")
        nodes = await nodes_and_users(redis_url)
        report("workers", connections_per_worker=sorted(len(users) for users in nodes.values()))
        self.assertEqual(len(nodes), 2, nodes)
        self.assertTrue(all(users for users in nodes.values()), f"one worker got every connection: {nodes}")

        # one chat, one order, whichever worker a client is on
        per_client = 5
        for _ in range(per_client):
            for chatter in chatters:
                chatter.send()
        sent = [content for c in chatters for content in c.contents.values()]
        for chatter in chatters:
            await until(lambda: len(chatter.receipted) == per_client, 15, f"{chatter.label}'s receipts")
        for chatter in chatters:
            await until(lambda: len(chatter.messages()) >= len(sent), 15, f"{chatter.label} to get every CHAT")
        orders = {c.label: [m["id"] for m in c.messages()] for c in chatters}
        reference = orders["c0"]
        self.assertEqual({m["content"] for m in chatters[0].messages()}, set(sent))
        self.assertTrue(strictly_increasing(reference))
        for label, ids in orders.items():
            self.assertEqual(ids, reference, f"{label} saw another order than c0")

        # SIGTERM: both workers drain (every session ends with its LEAVE, flushed) and the parent exits 0
        self.assertEqual(await server.stop(), 0, server.read_log()[-3000:])
        self.assertEqual(children_of(server.pid) & pids, set(), "a worker outlived the parent")
        for chatter in chatters:
            await until(lambda: not chatter.connected, 5, "the workers to close every session")
        stored = await archived(mysql_url)
        self.assertEqual(stored.events("JOIN"), {name: 1 for name in names})
        self.assertEqual(stored.events("LEAVE"), {name: 1 for name in names})
        self.assertEqual(stored.tally(sent)[1:], (0, []))
        log = server.read_log()
        self.assertNotIn("Traceback", log)
        for worker in (1, 2):  # the workers' lines are in the parent's log, each with its number
            self.assertIn(f"[worker {worker}] anonchat listening on", log)
            self.assertIn(f"[worker {worker}] anonchat stopped", log)

    async def _users_listed(self, redis_url: str, names: set[Any]) -> bool:
        nodes = await nodes_and_users(redis_url)
        return set().union(*nodes.values()) == names if nodes else False

    async def test_a_killed_worker_is_replaced_while_the_port_keeps_answering(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        server = ServerProcess(self, *node_args(redis_url, mysql_url, "--workers", "2", "--node-ttl", "3"),
                               name="workers")
        pids = await start_workers(self, server, redis_url, 2)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)

        answers: list[int] = []
        while len(children_of(server.pid) - {victim}) < 2 or len(ready_lines(server)) < 3:
            self.assertLess(len(answers), 400, f"no replacement worker: {server.read_log()[-3000:]}")
            answers.append((await health(server))[0])
            await sleep(0.05)
        self.assertEqual(set(answers), {200}, "the port stopped answering while a worker was replaced")
        replaced = children_of(server.pid)
        self.assertEqual(len(replaced), 2)
        self.assertNotIn(victim, replaced)
        self.assertIn(max(pids), replaced)  # the other worker was left alone
        said = [line for line in server.read_log().splitlines() if f"pid {victim}" in line and "restarting" in line]
        self.assertEqual(len(said), 1, server.read_log()[-3000:])
        # the dead worker's node expires; the replacement is a node of its own
        await until(lambda: self._live_nodes_are(redis_url, 2), 15, "two live nodes again")
        for _ in range(10):
            self.assertEqual((await health(server))[0], 200)
        self.assertEqual(await server.stop(), 0, server.read_log()[-3000:])

    async def _live_nodes_are(self, redis_url: str, count: int) -> bool:
        nodes = await nodes_and_users(redis_url)
        return len(nodes) == count and len(await live_nodes(redis_url)) == count


    async def test_workers_serve_tls_on_a_shared_ssl_port(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        pki = os.path.abspath(self.mktemp())
        os.makedirs(pki)
        make_pki(pki)
        port = free_port()
        endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={pki}/server.key:certKey={pki}/server.pem"
        server = ServerProcess(self, *node_args(redis_url, mysql_url, "--workers", "2", "--port", endpoint),
                               name="workers")
        server.spawn()
        context = ssl.create_default_context(cafile=f"{pki}/ca.pem")

        def get_healthz() -> int:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as r:
                    return int(r.status)
            except OSError:
                return 0

        await until(lambda: len(ready_lines(server)) >= 2, 30, "both workers ready")
        statuses = [await threads.deferToThread(get_healthz) for _ in range(10)]
        self.assertEqual(statuses, [200] * 10, server.read_log()[-3000:])
        self.assertEqual(len(children_of(server.pid)), 2)
        self.assertEqual(await server.stop(), 0, server.read_log()[-3000:])


    async def test_workers_stop_when_the_parent_is_killed(self) -> None:
        redis_url = await cluster_redis(self)
        mysql_url = await fresh_mysql(self)
        server = ServerProcess(self, *node_args(redis_url, mysql_url, "--workers", "2"), name="workers")
        pids = await start_workers(self, server, redis_url, 2)
        chatter = await Chatter(server, "c").join()
        await server.kill()
        await until(lambda: not any(alive(pid) for pid in pids), 15, "the orphaned workers to stop")
        await until(lambda: not chatter.connected, 5, "the session to be closed")
        stored = await archived(mysql_url)
        self.assertEqual(stored.events("LEAVE"), {chatter.name: 1}, "the orphans did not drain")


class WorkersFailedStartTests(unittest.TestCase):
    timeout = 60

    async def test_workers_that_cannot_reach_redis_make_the_parent_exit_1(self) -> None:
        server = ServerProcess(self, "--workers", "2", "--redis", f"redis://127.0.0.1:{free_port()}/4",
                               "--start-timeout", "2")
        code = await server.run_until_exit(30)
        log = server.read_log()
        self.assertEqual(code, 1, log)
        self.assertNotIn("Traceback", log)
        self.assertRegex(log, r"\[worker \d\] anonchat could not start: Redis at .* unreachable for 2 s")
        self.assertRegex(log, r"could not start: worker \d exited with status 1 before it was ready")
        self.assertEqual(children_of(server.pid), set())


class RestartBackoffTests(unittest.SynchronousTestCase):
    def test_a_worker_that_keeps_dying_waits_longer_each_time_up_to_a_cap(self) -> None:
        backoff = RestartBackoff(first=0.5, most=8.0, steady=10.0)
        self.assertEqual([backoff.after(ran_for=1.0) for _ in range(7)], [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0])

    def test_a_worker_that_ran_a_while_is_restarted_at_once_again(self) -> None:
        backoff = RestartBackoff(first=0.5, most=8.0, steady=10.0)
        for _ in range(4):
            backoff.after(ran_for=0.1)
        self.assertEqual(backoff.after(ran_for=60.0), 0.5)
        self.assertEqual(backoff.after(ran_for=0.1), 1.0)


class WorkerCommandLineTests(unittest.SynchronousTestCase):
    def test_a_worker_gets_the_parents_options_but_is_one_node_without_a_pidfile(self) -> None:
        given = {"port": "tcp:8080", "redis": "redis://h:6379/0", "workers": "2", "log-format": None,
                 "max-content": "50"}
        argv = worker_argv(given, python="/bin/py")
        self.assertEqual(argv[0], "/bin/py")
        twistd, anonchat = argv[:argv.index("anonchat")], argv[argv.index("anonchat") + 1:]
        self.assertIn("-n", twistd)
        self.assertIn("--pidfile=", twistd)
        pairs = list(zip(anonchat[::2], anonchat[1::2]))
        self.assertEqual(pairs, [("--port", "tcp:8080"), ("--redis", "redis://h:6379/0"), ("--max-content", "50"),
                                 ("--workers", "1"), ("--log-format", "json")])

    def test_the_inherited_socket_is_named_in_the_environment(self) -> None:
        seat = WorkerSeat(number=2, fd=3, family=10, parent=1234)
        self.assertEqual(WorkerSeat.from_environ({"ANONCHAT_WORKER_SEAT": seat.to_environ()}), seat)
        self.assertIsNone(WorkerSeat.from_environ({}))


class LogRelayTests(unittest.SynchronousTestCase):
    def test_a_workers_json_event_keeps_its_level_namespace_time_and_fields(self) -> None:
        line = json.dumps({"time": "2026-01-02T03:04:05.678+00:00", "level": "warn", "namespace": "anonchat.service",
                           "message": "Redis not reachable yet", "left": 3})
        event = relayed_event(line, worker=2, stream="out")
        self.assertEqual(formatEvent(event), "[worker 2] Redis not reachable yet")
        self.assertEqual((event["log_level"], event["log_namespace"], event["left"], event["worker"]),
                         (LogLevel.warn, "anonchat.service", 3, 2))
        self.assertAlmostEqual(event["log_time"], 1767323045.678, places=3)

    def test_a_traceback_comes_along(self) -> None:
        line = json.dumps({"time": "2026-01-02T03:04:05+00:00", "level": "critical", "namespace": "x",
                           "message": "boom", "failure": "Traceback...\nValueError: x\n"})
        self.assertEqual(formatEvent(relayed_event(line, worker=1, stream="out")),
                         "[worker 1] boom\nTraceback...\nValueError: x\n")

    def test_a_line_that_is_not_an_event_is_relayed_as_text(self) -> None:
        for line, level in (("Fatal Python error {braces}", LogLevel.error), ("[1, 2]", LogLevel.error)):
            event = relayed_event(line, worker=1, stream="err")
            self.assertEqual(formatEvent(event), f"[worker 1] {line}")
            self.assertEqual((event["log_level"], event["log_namespace"]), (level, "anonchat.workers"))
        self.assertEqual(relayed_event("plain", worker=1, stream="out")["log_level"], LogLevel.info)
