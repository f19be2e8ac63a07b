"""A ``redis-server`` of a test's own, for what the shared one must never see:
kills, restarts, pauses, TLS.

It listens on a free port, in a temporary directory that outlives a
restart (``kill()`` then ``start()`` again brings it back on the same port
with whatever it persisted). Without the binary the test is skipped,
unless ``ANONCHAT_TEST_REQUIRE_SERVICES=1``, which fails it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.childprocess import ChildServer
from tests.serverprocess import free_port
from tests.services import unavailable

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis_server() -> str:
    """The redis-server binary, or skip/fail as the environment says."""
    if not os.path.exists(REDIS_SERVER):
        unavailable("no redis-server binary for a private instance")
    return REDIS_SERVER


class PrivateRedis(ChildServer):
    def __init__(self, test: TestCase, *extra: str, tls: bool = False) -> None:
        """``extra`` are redis-server options; with ``tls`` they must set up
        ``--tls-port`` on ``self.port`` and plain TCP is off."""
        self.binary = require_redis_server()
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="anonchat-redis-")
        self.extra = extra
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        test.addCleanup(self.cleanup)

    async def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waited = 0.0
        while not self._ready():
            if self.process.poll() is not None or waited > timeout:
                raise RuntimeError(f"private redis-server did not start (exit {self.process.poll()})")
            await deferLater(reactor, 0.05, lambda: None)
            waited += 0.05

    def argv(self) -> list[str]:
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        return [self.binary, *port, "--bind", "127.0.0.1", "--save", "", "--dir", self.directory, *self.extra]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.tls:
                    return True  # accepting; the TLS handshake is the client's business
                s.sendall(b"PING\r\n")
                return s.recv(64)[:1] in (b"+", b"-")  # PONG, or NOAUTH with --requirepass: it answers
        except OSError:
            return False

    def crash(self) -> None:
        """SIGKILL as it is, paused or not: what it had not answered never is."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
