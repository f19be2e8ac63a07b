"""Who is online across every node, in Redis.

``<prefix>users`` is a hash ``nickname -> "<node>|<since ms>"``: HSETNX
makes a nickname unique across nodes. Each node keeps ``<prefix>node:<id>``
alive with a TTL; every beat, one Lua script removes the users whose node
key has expired and returns them, so exactly one node writes their LEAVEs.
A node that died thus loses its users within ``node_ttl`` + ``beat``.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.ports import IPresence, ReapedListener
from anonchat.store.redis_connection import connect, is_connected, parse_redis_url, wait_connected
from anonchat.store.turnbatch import TurnBatcher

log = Logger()

REAP_SCRIPT = """
local users, prefix = KEYS[1], ARGV[1]
local alive, gone = {}, {}
local entries = redis.call('HGETALL', users)
for i = 1, #entries, 2 do
  local name, value = entries[i], entries[i + 1]
  local node = string.match(value, '^([^|]*)|')
  if node then
    if alive[node] == nil then alive[node] = redis.call('EXISTS', prefix .. node) == 1 end
    if not alive[node] then
      redis.call('HDEL', users, name)
      gone[#gone + 1] = name
    end
  end
end
return gone
"""

# Claims and releases made in one reactor turn go as one script each.
# CLAIM: ARGV = name, value, name, value...; one 0/1 per name.
CLAIM_SCRIPT = """
local taken = {}
for i = 1, #ARGV, 2 do
  taken[#taken + 1] = redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
return taken
"""

# RELEASE: ARGV[1] = this node; then names; removes only this node's.
RELEASE_SCRIPT = """
local mine = ARGV[1] .. '|'
local done = {}
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value and string.sub(value, 1, string.len(mine)) == mine then
    done[#done + 1] = redis.call('HDEL', KEYS[1], ARGV[i])
  else
    done[#done + 1] = 0
  end
end
return done
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@implementer(IPresence)
class RedisPresence:
    def __init__(self, reactor: Any, url: str, *, key_prefix: str = "anonchat:", node_id: str | None = None,
                 node_ttl: float = 15.0, beat: float = 5.0, command_timeout: float = 5.0) -> None:
        self._reactor = reactor
        self._address = parse_redis_url(url)
        self._users = key_prefix + "users"
        self._node_prefix = key_prefix + "node:"
        self.node_id = node_id or uuid.uuid4().hex
        self._node_ttl_ms = int(node_ttl * 1000)
        self._timeout = command_timeout
        self._connection: Any = None
        self._listener: ReapedListener | None = None
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._beat_interval = beat
        self._unreleased: set[str] = set()
        self._claims: TurnBatcher[tuple[str, str], Any] = TurnBatcher(reactor, self._send_claims)
        self._releases: TurnBatcher[str, Any] = TurnBatcher(reactor, self._send_releases)

    def _command(self, *args: Any) -> Deferred[Any]:
        if not is_connected(self._connection):
            return fail(ConnectionError("not connected to Redis"))
        d: Deferred[Any] = self._connection.handler.execute_command(*args)
        return d.addTimeout(self._timeout, self._reactor)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._connection = connect(self._reactor, self._address, reply_timeout=self._timeout,
                                   connect_timeout=self._timeout)
        await wait_connected(self._reactor, self._connection, self._timeout)
        await self._keep_alive()
        self._beat.start(self._beat_interval, now=False)

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._beat.running:
            self._beat.stop()
        if self._connection is None:
            return
        try:
            await self._command("DEL", self._node_prefix + self.node_id)
        except Exception:
            log.warn("could not remove this node's presence key")
        connection, self._connection = self._connection, None
        await DeferredList([connection.disconnect()], consumeErrors=True)

    def _keep_alive(self) -> Deferred[Any]:
        return self._command("SET", self._node_prefix + self.node_id, "1", "PX", self._node_ttl_ms)

    async def _heartbeat(self) -> None:
        try:
            await self._keep_alive()
            if self._unreleased:
                names = sorted(self._unreleased)
                await self._send_releases(names)
                self._unreleased.difference_update(names)
                log.info("{count} nickname releases retried", count=len(names))
            gone = await self._command("EVAL", REAP_SCRIPT, 1, self._users, self._node_prefix)
        except Exception as e:
            log.warn("presence heartbeat failed: {error}", error=type(e).__name__)
            return
        names = [_text(n) for n in gone or ()]
        if names:
            log.info("{count} users of a node that stopped answering left", count=len(names))
            if self._listener is not None:
                self._listener(names)

    # -- IPresence ------------------------------------------------------------

    def set_reaped_listener(self, listener: ReapedListener) -> None:
        self._listener = listener

    def claim(self, name: str, since_ms: int) -> Deferred[bool]:
        d: Deferred[Any] = self._claims.add((name, f"{self.node_id}|{since_ms}"))
        return d.addCallback(lambda added: int(added) == 1)

    def release(self, name: str) -> Deferred[None]:
        """Never fails: a release Redis could not take is retried at every
        beat, so the user does not stay listed (nor get a second LEAVE when
        this node's key expires)."""
        d: Deferred[Any] = self._releases.add(name)
        return d.addCallbacks(lambda _: None, lambda _: self._unreleased.add(name))

    def _send_claims(self, batch: list[tuple[str, str]]) -> Deferred[Sequence[Any]]:
        return self._command("EVAL", CLAIM_SCRIPT, 1, self._users, *[part for pair in batch for part in pair])

    def _send_releases(self, batch: list[str]) -> Deferred[Sequence[Any]]:
        return self._command("EVAL", RELEASE_SCRIPT, 1, self._users, self.node_id, *batch)

    def online(self) -> Deferred[list[tuple[str, int]]]:
        return self._command("HGETALL", self._users).addCallback(self._parse)

    @staticmethod
    def _parse(flat: Sequence[Any]) -> list[tuple[str, int]]:
        users = []
        for name, value in zip(flat[::2], flat[1::2]):
            _, _, since = _text(value).partition("|")
            users.append((_text(name), int(since) if since.isdigit() else 0))
        return sorted(users, key=lambda item: (item[1], item[0]))
