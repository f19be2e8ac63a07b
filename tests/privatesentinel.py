"""A replicated Redis of a test's own: a private master, one replica and,
when asked, three ``redis-sentinel`` processes watching them (all
``redis-server`` processes, on free ports, in temporary directories,
killed at cleanup). The shared Redis never sees a failover.

Sentinel timeouts are small (``down_after_ms``, ``failover_timeout_ms``)
so a killed master is replaced within a few seconds.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.privateredis import PrivateRedis

SERVICE = "anonchat"


class PrivateSentinel(PrivateRedis):
    """``redis-server sentinel.conf --sentinel`` watching one master."""

    def __init__(self, test: TestCase, master_port: int, *, quorum: int, down_after_ms: int,
                 failover_timeout_ms: int) -> None:
        super().__init__(test)
        self.config = os.path.join(self.directory, "sentinel.conf")
        with open(self.config, "w", encoding="ascii") as f:  # Sentinel rewrites it: its own copy
            f.write(f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} {quorum}\n"
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                    f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}\n")

    def argv(self) -> list[str]:
        return [self.binary, self.config, "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.directory]


class PrivateReplicatedRedis:
    def __init__(self, test: TestCase, *extra: str) -> None:
        """``extra`` are redis-server options for the master and the replica."""
        self.test = test
        # no 5 s wait for more replicas before a full sync (either may be master)
        extra = ("--repl-diskless-sync-delay", "0", *extra)
        self.master = PrivateRedis(test, *extra)
        self.replica = PrivateRedis(test, *extra, "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinels: list[PrivateSentinel] = []

    async def start(self, sentinels: int = 0, down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        """Master and replica (in sync when this returns), then the sentinels,
        each knowing the replica and the others when this returns."""
        await self.master.start()
        await self.replica.start()
        await self._until(lambda: self._role(self.replica.port, b"connected"), "the replica to be in sync")
        for _ in range(sentinels):
            sentinel = PrivateSentinel(self.test, self.master.port, quorum=sentinels // 2 + 1,
                                       down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms)
            await sentinel.start()
            self.sentinels.append(sentinel)
        for sentinel in self.sentinels:
            await self._until(lambda: self._knows_everyone(sentinel.port, sentinels - 1),
                              "every sentinel to know the replica and the other sentinels")

    @property
    def url(self) -> str:
        """The ``sentinel://`` URL of this service, db 0."""
        return "sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{SERVICE}/0"

    def master_address(self) -> tuple[str, int] | None:
        """What the first sentinel that answers says the master is."""
        for sentinel in self.sentinels:
            reply = _command(sentinel.port, b"SENTINEL", b"get-master-addr-by-name", SERVICE.encode())
            if reply and reply.startswith(b"*2"):
                lines = reply.split(b"\r\n")
                return lines[2].decode(), int(lines[4])
        return None

    def is_master(self, port: int) -> bool:
        return self._role(port, b"master")

    @staticmethod
    def _role(port: int, word: bytes) -> bool:
        reply = _command(port, b"ROLE")
        return bool(reply) and word in reply

    @staticmethod
    def _knows_everyone(port: int, others: int) -> bool:
        replicas = _command(port, b"SENTINEL", b"REPLICAS", SERVICE.encode()) or b""
        sentinels = _command(port, b"SENTINEL", b"SENTINELS", SERVICE.encode()) or b""
        return replicas.startswith(b"*1\r\n") and sentinels.startswith(f"*{others}\r\n".encode())

    async def _until(self, check: object, what: str, timeout: float = 20.0) -> None:
        waited = 0.0
        while not check():  # type: ignore[operator]
            if waited > timeout:
                raise RuntimeError(f"timed out waiting for {what}")
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1


def _command(port: int, *args: bytes) -> bytes | None:
    """One command on a fresh connection; the raw reply (what a short
    read got of it), or None when nothing answers."""
    import socket

    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(request)
            return s.recv(65536)
    except OSError:
        return None
