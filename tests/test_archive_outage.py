"""The flusher and the MySQL archive through a database outage, on the real reactor.

The archive talks to MySQL through a fault-injecting proxy while messages keep
arriving; the link is cut (or blackholed) and restored, and afterwards every
message must be in MySQL exactly once and the buffer drained. "Once" is
counted by content (every message carries a unique one): ``id`` is a UNIQUE
key, so counting rows per id could never find a double. Short driver
timeouts (in the URL) keep the blackhole case to a few seconds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import reactor as _reactor
from twisted.internet import task
from twisted.trial import unittest

from anonchat.chat.message import ChatMessage, MessageType
from anonchat.store.flusher import Flusher
from anonchat.store.memory import InMemoryBuffer
from anonchat.store.sql_archive import SqlArchive
from tests.faultproxy import FaultProxy
from tests.test_archive_mysql import prepare_mysql, query_mysql

reactor: Any = _reactor


def sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


class ArchiveOutageTests(unittest.TestCase):
    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        self.url = await prepare_mysql(self)
        target = urlsplit(self.url)
        self.proxy = FaultProxy(reactor, target.hostname or "127.0.0.1", target.port or 3306)
        port = await self.proxy.start()
        self.addCleanup(self.proxy.stop)
        userinfo = target.netloc.rpartition("@")[0]
        proxied = urlunsplit(
            ("mysql", f"{userinfo}@127.0.0.1:{port}", target.path, "connect_timeout=1&read_timeout=2", "")
        )
        self.archive = SqlArchive.from_url(proxied)
        self.addCleanup(self.archive.stop)
        await self.archive.start()
        self.buffer = InMemoryBuffer(reactor, retain=50)
        self.flusher = Flusher(self.buffer, self.archive, reactor, interval=0.05, batch_size=25)
        self.appended: dict[str, str] = {}  # content (unique) -> id

    async def append_one(self) -> None:
        content = f"메시지 {len(self.appended)} 👋"
        stored: ChatMessage = await self.buffer.append(
            ChatMessage(MessageType.CHAT, "익명-12345", content, int(reactor.seconds() * 1000))
        )
        self.appended[content] = stored.id

    async def survive(self, fault: Callable[[], None], outage_seconds: float) -> None:
        writer = task.LoopingCall(self.append_one)
        writer.clock = reactor
        writing = writer.start(0.005)
        self.flusher.start()
        await sleep(0.3)
        fault()
        await sleep(outage_seconds)
        failures_during_outage = self.flusher.consecutive_failures
        backlog_during_outage = await self.buffer.backlog()
        self.proxy.restore()
        await sleep(0.3)
        writer.stop()
        await writing
        for _ in range(200):
            if await self.buffer.backlog() == 0:
                break
            await sleep(0.05)
        await self.flusher.stop()

        self.assertGreater(failures_during_outage, 0, "the outage was never noticed")
        self.assertGreater(backlog_during_outage, 0, "nothing queued up during the outage")
        self.assertEqual(await self.buffer.backlog(), 0)
        self.assertEqual(self.flusher.consecutive_failures, 0)
        self.assertGreater(len(self.appended), 20)
        rows = await query_mysql(self.url, "SELECT id, content FROM chat_messages")
        per_content = Counter(content for _, content in rows)
        self.assertEqual({c: n for c, n in per_content.items() if n > 1}, {}, "a message is stored twice")
        self.assertEqual(dict((content, id_) for id_, content in rows), self.appended)
        self.assertEqual(self.flusher.flushed_total, len(self.appended))

    async def test_connections_reset_then_restored(self) -> None:
        await self.survive(self.proxy.cut, outage_seconds=0.6)

    async def test_network_silent_then_restored(self) -> None:
        await self.survive(self.proxy.blackhole, outage_seconds=3.0)

    async def test_cut_twice_in_a_row(self) -> None:
        def cut_restore_cut() -> None:
            self.proxy.cut()
            reactor.callLater(0.2, self.proxy.restore)
            reactor.callLater(0.35, self.proxy.cut)

        await self.survive(cut_restore_cut, outage_seconds=0.7)
