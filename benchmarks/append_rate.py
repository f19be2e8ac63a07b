"""Appends per second into the Redis stream buffer, in bursts.

    PYTHONPATH=. python benchmarks/append_rate.py [N] [redis://127.0.0.1:6379/11]

Three rounds of N appends (10 bursts each); prints appends/s per round and
how many the feed delivered. Uses the key prefix ``bench-append:``.
"""
import sys, time
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from anonchat.chat.message import ChatMessage, MessageType
from anonchat.store.redis_buffer import RedisStreamBuffer

async def main():
    url = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/11"
    b = RedisStreamBuffer(reactor, url, key_prefix="bench-append:")
    got = [0]
    b.add_listener(lambda batch: got.__setitem__(0, got[0] + len(batch)))
    await b.start()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    for rnd in range(3):
        t = time.perf_counter()
        for chunk in range(10):
            ds = [b.append(ChatMessage(MessageType.CHAT, "익명-12345", "안녕하세요 " * 5, 1)) for _ in range(n // 10)]
            await gatherResults(ds)
        dt = time.perf_counter() - t
        print(f"round {rnd}: {n/dt:.0f} appends/s; fed {got[0]}")
    await b.stop()

def run():
    d = Deferred.fromCoroutine(main())
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: reactor.stop())
reactor.callWhenRunning(run)
reactor.run()
