"""How fast the flusher drains a Redis backlog into MariaDB.

    PYTHONPATH=. python benchmarks/flush_rate.py [N] [BATCH ...]

For each batch size: append N messages to the Redis stream buffer (db 14,
key prefix ``bench-flush:``) with no flusher running, then time one drain
(``Flusher.stop()``, which flushes until the backlog is empty) into the
``anonchat_bench`` database, whose table is emptied first. Prints rows/s.
The live scenario (d) of run.py cannot show this any more: the flusher is
nudged as messages arrive, so no backlog builds up.
"""

from __future__ import annotations

import sys
import time

import pymysql
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from anonchat.chat.message import ChatMessage, MessageType
from anonchat.store.flusher import Flusher
from anonchat.store.redis_buffer import RedisStreamBuffer
from anonchat.store.sql_archive import SqlArchive

REDIS = "redis://127.0.0.1:6379/14"
MYSQL = "mysql://root:@127.0.0.1:3306/anonchat_bench"


def empty_table() -> None:
    db = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with db.cursor() as c:
        c.execute("CREATE DATABASE IF NOT EXISTS anonchat_bench CHARACTER SET utf8mb4")
        c.execute("DROP TABLE IF EXISTS anonchat_bench.chat_messages")
    db.close()


async def one(n: int, batch: int) -> None:
    empty_table()
    buffer = RedisStreamBuffer(reactor, REDIS, key_prefix=f"bench-flush-{batch}-{time.time_ns()}:")
    archive = SqlArchive.from_url(MYSQL, reactor=reactor)
    await buffer.start()
    await archive.start()
    content = "안녕하세요, 벤치마크 메시지입니다 👋 " * 3
    for start in range(0, n, 5000):
        await gatherResults([buffer.append(ChatMessage(MessageType.CHAT, "익명-12345", content, 1))
                             for _ in range(min(5000, n - start))])
    flusher = Flusher(buffer, archive, reactor, interval=3600, batch_size=batch)
    began = time.perf_counter()
    await flusher.stop()  # drains
    took = time.perf_counter() - began
    print(f"batch {batch}: {flusher.flushed_total} rows in {took:.2f} s = {flusher.flushed_total / took:,.0f} rows/s")
    await buffer.stop()
    await archive.stop()


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60000
    for batch in [int(b) for b in sys.argv[2:]] or [500, 5000]:
        await one(n, batch)


def run() -> None:
    d = Deferred.fromCoroutine(main())
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: reactor.stop())


reactor.callWhenRunning(run)
reactor.run()
