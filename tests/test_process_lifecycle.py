"""The real ``twistd -n anonchat`` process: how it fails to start, how it
stops, and what it logs (the contract's "Start, stop and logs").

A node that cannot start says why in one line, without a traceback, and
exits 1, so that systemd's ``Restart=on-failure`` restarts it; a database
it cannot reach is not such a reason.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import time
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from anonchat.tap import raise_open_file_limit
from tests.serverprocess import ServerProcess, free_port
from tests.services import require_mysql


class FailedStartTests(TestCase):
    timeout = 60

    async def fails(self, server: ServerProcess, why: str, timeout: float = 20.0) -> str:
        """The server exits 1 by itself, having said ``why`` (a regex) in
        exactly one line, with no traceback; that line."""
        code = await server.run_until_exit(timeout)
        log = server.read_log()
        self.assertEqual(code, 1, log)
        self.assertNotIn("Traceback", log)
        said = [line for line in log.splitlines() if re.search(why, line)]
        self.assertEqual(len(said), 1, log)
        return said[0]

    async def test_taken_port(self) -> None:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = ServerProcess(self, "--port", f"tcp:{port}:interface=127.0.0.1")
        await self.fails(server, rf"could not start: .*{port}.*(in use|Errno)")

    async def test_bad_endpoint(self) -> None:
        for endpoint in ["tcp:notaport", "nosuch:8080"]:
            server = ServerProcess(self, "--port", endpoint, name=endpoint.replace(":", "-"))
            await self.fails(server, rf"could not start: --port {endpoint!r}")

    async def test_redis_unreachable_for_the_start_timeout(self) -> None:
        nobody = free_port()
        server = ServerProcess(self, "--redis", f"redis://127.0.0.1:{nobody}/4", "--start-timeout", "2")
        started = time.monotonic()
        line = await self.fails(server, r"could not start: ")
        elapsed = time.monotonic() - started
        self.assertRegex(line, rf"Redis at 127\.0\.0\.1:{nobody} .*2 s")
        self.assertGreater(elapsed, 2.0)
        self.assertLess(elapsed, 12.0)

    async def test_usage_error_is_one_line_and_exit_1(self) -> None:
        server = ServerProcess(self, "--max-frame", "big")
        await self.fails(server, r"^twistd anonchat: --max-frame: 'big' is not a whole number$")
        self.assertEqual(len(server.read_log().splitlines()), 2, server.read_log())

    async def test_several_workers_without_redis_are_a_usage_error(self) -> None:
        server = ServerProcess(self, "--workers", "2")
        await self.fails(server, r"^twistd anonchat: --workers 2 needs --redis")
        self.assertEqual(len(server.read_log().splitlines()), 2, server.read_log())

    async def test_ini_file_with_a_misspelt_key_is_a_usage_error_naming_it(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write("[anonchat]\nmax-contnet = 10\n")
        server = ServerProcess(self, "--config", path)
        await self.fails(server, r"^twistd anonchat: --config: .*unknown key 'max-contnet'")


class StopTests(TestCase):
    timeout = 60

    async def test_sigterm_while_waiting_for_redis_stops_at_once(self) -> None:
        server = ServerProcess(self, "--redis", f"redis://127.0.0.1:{free_port()}/4", "--start-timeout", "30")
        server.spawn()
        for _ in range(200):  # until it is retrying
            if "not reachable yet" in server.read_log() or not server.running:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(server.running, server.read_log())
        stopped = time.monotonic()
        code = await server.stop()
        self.assertLess(time.monotonic() - stopped, 5.0, server.read_log())
        self.assertEqual(code, 0, server.read_log())
        self.assertNotIn("Traceback", server.read_log())


class DegradedStartTests(TestCase):
    """A database the node cannot reach: it says why at once, and chats on."""

    timeout = 60

    def mysql_url(self, *, password: str | None = None, database: str | None = None, port: int | None = None) -> str:
        parts = urlsplit(require_mysql())
        user = parts.username or "root"
        netloc = f"{user}:{parts.password or '' if password is None else password}@{parts.hostname}:{port or parts.port or 3306}"
        return urlunsplit((parts.scheme, netloc, "/" + (database or parts.path.lstrip("/")), "", ""))

    async def says_why_and_starts_degraded(self, database: str, why: str) -> None:
        server = ServerProcess(self, "--database", database, "--start-timeout", "5")
        server.spawn()
        for _ in range(200):  # until it serves
            status, body = await server.get("/healthz")
            if status or not server.running:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(server.running, server.read_log())
        self.assertEqual(json.loads(body)["database"], "down")  # and chat goes on: /healthz is another's
        log = server.read_log()
        said = [line for line in log.splitlines() if "database" in line and re.search(why, line)]
        self.assertEqual(len(said), 1, log)
        self.assertNotIn("Traceback", log)
        self.assertEqual(await server.stop(), 0, server.read_log())

    async def test_wrong_password(self) -> None:
        await self.says_why_and_starts_degraded(self.mysql_url(password="not-the-password"), "Access denied")

    async def test_unknown_database(self) -> None:
        await self.says_why_and_starts_degraded(self.mysql_url(database="anonchat_ops_no_such_db"),
                                                "Unknown database")

    async def test_nothing_listening(self) -> None:
        self.mysql_url()  # skips without MySQL, like the others: same driver path
        await self.says_why_and_starts_degraded(f"mysql://root:@127.0.0.1:{free_port()}/anonchat", "Can't connect")


class LogTests(TestCase):
    timeout = 60

    async def test_json_log_format_writes_one_object_a_line(self) -> None:
        server = ServerProcess(self, "--log-format", "json")
        await server.start()
        self.assertEqual(await server.stop(), 0)
        lines = server.read_log().splitlines()
        events = [json.loads(line) for line in lines]  # every line is one JSON object
        self.assertTrue(all(isinstance(e, dict) and {"time", "level", "namespace", "message"} <= e.keys()
                            for e in events), lines)
        self.assertTrue(any(e["message"].startswith("anonchat listening") for e in events), lines)

    async def test_open_file_limit_is_raised_to_the_hard_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard <= 256:
            self.skipTest(f"needs a finite hard RLIMIT_NOFILE above 256, not {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the child inherits it
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        server = ServerProcess(self)
        await server.start()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assertRegex(server.read_log(), rf"open file limit {hard} \(was 256, hard limit {hard}\)")


class OpenFileLimitTests(SynchronousTestCase):
    def raise_with(self, soft: int, hard: int, refuse: bool = False) -> tuple[list[tuple[int, int]], list[str]]:
        calls: list[tuple[int, int]] = []

        def setrlimit(which: int, limits: tuple[int, int]) -> None:
            if refuse:
                raise ValueError("not allowed")
            calls.append(limits)

        with capturedLogs() as events:
            raise_open_file_limit(lambda which: (soft, hard), setrlimit)
        return calls, [formatEvent(e) for e in events]

    def test_soft_limit_goes_up_to_the_hard_limit(self) -> None:
        self.assertEqual(self.raise_with(1024, 65536),
                         ([(65536, 65536)], ["open file limit 65536 (was 1024, hard limit 65536)"]))

    def test_an_unlimited_hard_limit_gets_a_finite_target(self) -> None:
        calls, said = self.raise_with(1024, resource.RLIM_INFINITY)
        self.assertEqual(calls, [(1_048_576, resource.RLIM_INFINITY)])
        self.assertEqual(said, ["open file limit 1048576 (was 1024, hard limit unlimited)"])

    def test_a_refusal_is_said_and_the_old_limit_kept(self) -> None:
        calls, said = self.raise_with(1024, 65536, refuse=True)
        self.assertEqual(calls, [])
        self.assertEqual(said[-1], "open file limit 1024 (was 1024, hard limit 65536)")
        self.assertIn("could not raise", said[0])

    def test_nothing_to_do_when_already_at_the_hard_limit(self) -> None:
        self.assertEqual(self.raise_with(65536, 65536)[0], [])



class SystemdUnitTests(SynchronousTestCase):
    """etc/anonchat.service: restarted on a failed start, enough descriptors,
    a confined process, and a writable directory for the SQLite archive."""

    def test_unit_limits_and_confines_the_process(self) -> None:
        import configparser

        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "etc", "anonchat.service"))
        svc = unit["Service"]
        self.assertEqual(svc["Restart"], "on-failure")
        self.assertGreaterEqual(int(svc["LimitNOFILE"]), 65536)
        self.assertEqual((svc["NoNewPrivileges"], svc["PrivateTmp"], svc["ProtectSystem"]), ("yes", "yes", "strict"))
        # ProtectSystem=strict makes /var read-only but for the StateDirectory
        self.assertEqual(svc["WorkingDirectory"], "/var/lib/" + svc["StateDirectory"])
