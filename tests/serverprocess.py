"""Run a real ``twistd -n anonchat`` in a child process, for black-box tests.

The child is the same entry point a user runs; the test talks to it only
over the network, and can stop it with SIGTERM or kill it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Output(ProcessProtocol):
    def __init__(self, log_path: str) -> None:
        self.log = open(log_path, "ab")
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)
        self.log.flush()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.log.close()
        value = reason.value
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code = value.exitCode if value.exitCode is not None else -(value.signal or 0)
        else:
            code = -1
        self.ended.callback(code)


class ServerProcess:
    """One anonchat server; ``await start()``, then ``url`` / ``ws_url``."""

    def __init__(self, test: TestCase, *args: str, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.test = test
        self.port = free_port()
        self.workdir = os.path.abspath(test.mktemp())
        os.makedirs(self.workdir)
        self.log_path = os.path.join(self.workdir, f"{name}.log")
        self.args = list(args)
        if not any(a.startswith("--database") for a in self.args):
            self.args += ["--database", "sqlite:///" + os.path.join(self.workdir, "anonchat.sqlite3")]
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = REPO + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.update(env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws-chat"
        self._process: Any = None
        self._output: _Output | None = None
        self._pid: int | None = None

    def spawn(self) -> _Output:
        """Start the process, without waiting for anything."""
        self._output = output = _Output(self.log_path)
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "anonchat",
                "--port", f"tcp:{self.port}:interface=127.0.0.1", *self.args]
        self._process = reactor.spawnProcess(output, sys.executable, argv, env=self.env, path=self.workdir)
        self._pid = self._process.pid
        self.test.addCleanup(self._cleanup)
        return output

    async def run_until_exit(self, timeout: float = 20.0) -> int:
        """Run a server expected to stop by itself (a failed start, a usage
        error); its exit code. Killed, and a test failure, after ``timeout``."""
        ended = self.spawn().ended
        waited = 0.0
        while not ended.called and waited < timeout:
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1
        if not ended.called:
            raise AssertionError(f"server still running after {timeout}s; see {self.log_path}")
        return await ended

    async def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        assert self._output is not None
        waited = 0.0
        while waited < timeout:
            if self._output.ended.called:
                raise AssertionError(f"server exited at start; see {self.log_path}:\n{self.read_log()[-3000:]}")
            status, _ = await self.get("/healthz")
            if status == 200:
                return
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1
        raise AssertionError(f"server not healthy after {timeout}s; see {self.log_path}")

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET a path; (0, b"") when nothing answers."""
        pool = HTTPConnectionPool(reactor, persistent=False)
        try:
            response = await Agent(reactor, pool=pool).request(b"GET", (self.url + path).encode())
            return response.code, await readBody(response)
        except Exception:
            return 0, b""

    def read_log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @property
    def pid(self) -> int:
        """The process id it was started with (kept after it ended)."""
        assert self._pid is not None, "not spawned"
        return self._pid

    @property
    def running(self) -> bool:
        return self._output is not None and not self._output.ended.called

    def signal(self, signum: int) -> Deferred[int]:
        assert self._output is not None
        if self.running:
            self._process.signalProcess({signal.SIGTERM: "TERM", signal.SIGKILL: "KILL"}.get(signum, signum))
        return self._output.ended

    def stop(self) -> Deferred[int]:
        """SIGTERM; fires with the exit code."""
        return self.signal(signal.SIGTERM)

    def kill(self) -> Deferred[int]:
        return self.signal(signal.SIGKILL)

    async def _cleanup(self) -> None:
        if self.running:
            self.kill()
        if self._output is not None:
            await self._output.ended
