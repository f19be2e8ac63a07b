"""Who is online across every node, in Redis.

``<prefix>users`` is a hash ``nickname -> "<node>|<since ms>"``: HSETNX
makes a nickname unique across nodes. Each node keeps ``<prefix>node:<id>``
alive with a TTL and its users in the set ``<prefix>node:<id>:users``;
``<prefix>nodes`` lists the nodes. Every beat, one Lua script looks at each
node's key and, for a node whose key has expired, removes its users and
returns them, so exactly one node writes their LEAVEs: reaping costs a
lookup per node, not per user. A node that died thus loses its users within
``node_ttl`` + ``beat``.

A Redis outage expires every node's key at once, though the nodes and their
users are alive. So a node reaps nobody until it has been in touch with
Redis for ``node_ttl`` plus the longest reconnection delay without a break
(after start, an outage, or finding its own key gone): the others reconnect
and re-beat meanwhile. Each node also remembers
its own users, and after an outage or when its key was gone it registers
them again (Redis may have lost them: restarted without persistence, or a
node reaped them while this one could not answer). The rule for a name
someone else claimed meanwhile is that Redis decides, as for any claim:
whoever holds it keeps it, and the user here is not listed again (counted
in ``lost_names``, logged). That can only happen when Redis forgot the
name, i.e. lost its data, where no guarantee holds anyway. A node cut off
alone for longer than ``node_ttl`` is dead to the others: its users get
their LEAVEs, and are listed again (without a JOIN) if it comes back.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.ports import IPresence, ReapedListener
from anonchat.store.redis_connection import (
    TIMEOUT_GRACE, ReconnectingFactory, connect, is_connected, parse_redis_url, wait_connected,
)
from anonchat.store.redis_script import RedisScript
from anonchat.store.turnbatch import TurnBatcher

log = Logger()

#: Most names one registration script carries.
REGISTER_BATCH = 1000

# KEYS: users, nodes. ARGV: node key prefix. Remove the users of every node
# whose key expired (only those still recorded as that node's); return them.
REAP_SCRIPT = RedisScript("""
local users, nodes, prefix = KEYS[1], KEYS[2], ARGV[1]
local gone = {}
for _, node in ipairs(redis.call('SMEMBERS', nodes)) do
  if redis.call('EXISTS', prefix .. node) == 0 then
    local own, mine = prefix .. node .. ':users', node .. '|'
    for _, name in ipairs(redis.call('SMEMBERS', own)) do
      local value = redis.call('HGET', users, name)
      if value and string.sub(value, 1, #mine) == mine then
        redis.call('HDEL', users, name)
        gone[#gone + 1] = name
      end
    end
    redis.call('DEL', own)
    redis.call('SREM', nodes, node)
  end
end
return gone
""")

# KEYS: this node's key, nodes. ARGV: node id, ttl ms. Keep this node alive;
# 1 if its key was still there, 0 if it had expired or Redis lost it.
BEAT_SCRIPT = RedisScript("""
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
""")

# KEYS: users, this node's set, nodes. ARGV: node id, mode, then name, value
# pairs. One 0/1 per name (HSETNX); in mode 'again' (registering this node's
# users again) a name already this node's counts as taken by it.
CLAIM_SCRIPT = RedisScript("""
local users, own, mine = KEYS[1], KEYS[2], ARGV[1] .. '|'
local registering = ARGV[2] == 'again'
local taken = {}
redis.call('SADD', KEYS[3], ARGV[1])
for i = 3, #ARGV, 2 do
  local name = ARGV[i]
  local ok = redis.call('HSETNX', users, name, ARGV[i + 1])
  if ok == 0 and registering then
    local value = redis.call('HGET', users, name)
    if value and string.sub(value, 1, #mine) == mine then ok = 1 end
  end
  if ok == 1 then redis.call('SADD', own, name) end
  taken[#taken + 1] = ok
end
return taken
""")

# KEYS: users, this node's set. ARGV: node id, then names; removes only this
# node's.
RELEASE_SCRIPT = RedisScript("""
local mine = ARGV[1] .. '|'
local done = {}
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[2], ARGV[i])
  if value and string.sub(value, 1, string.len(mine)) == mine then
    done[#done + 1] = redis.call('HDEL', KEYS[1], ARGV[i])
  else
    done[#done + 1] = 0
  end
end
return done
""")

# KEYS: users, nodes. ARGV: node key prefix. Once at start: file every user
# under its node, for entries written by nodes that kept no set (upgrade).
ADOPT_SCRIPT = RedisScript("""
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local node = string.match(entries[i + 1], '^([^|]*)|')
  if node then
    redis.call('SADD', KEYS[2], node)
    redis.call('SADD', ARGV[1] .. node .. ':users', entries[i])
  end
end
return #entries / 2
""")


# KEYS: users, this node's set, the name's rejoin key, nodes. ARGV: node
# key prefix, node id, name, nonce. A rejoin: if the name still waits for
# this nonce and is still online, end the wait and make this node its
# owner; its since ms, or false.
RESUME_SCRIPT = RedisScript("""
local users, own, waiting, prefix, node, name = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', waiting) ~= ARGV[4] then return false end
redis.call('DEL', waiting)
local value = redis.call('HGET', users, name)
if not value then return false end
local owner, since = string.match(value, '^([^|]*)|(.*)$')
if owner and owner ~= node then redis.call('SREM', prefix .. owner .. ':users', name) end
redis.call('HSET', users, name, node .. '|' .. (since or '0'))
redis.call('SADD', own, name)
redis.call('SADD', KEYS[4], node)
return since or '0'
""")

# KEYS: the name's rejoin key. ARGV: nonce. The grace is over: 1 (and the
# wait ends) if the name still waits for this nonce, else 0.
EXPIRE_SCRIPT = RedisScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
""")

#: The rejoin key outlives the grace by this much, so the node whose timer
#: ends the grace still finds it even if its clock runs a little late.
REJOIN_KEY_SLACK = 10.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@implementer(IPresence)
class RedisPresence:
    def __init__(self, reactor: Any, url: str, *, key_prefix: str = "anonchat:", node_id: str | None = None,
                 node_ttl: float = 15.0, beat: float = 5.0, command_timeout: float = 5.0) -> None:
        self._reactor = reactor
        self._address = parse_redis_url(url)
        self._users = key_prefix + "users"
        self._rejoin_prefix = key_prefix + "rejoin:"
        self._nodes = key_prefix + "nodes"
        self._node_prefix = key_prefix + "node:"
        self.node_id = node_id or uuid.uuid4().hex
        self._node_key = self._node_prefix + self.node_id
        self._own = self._node_key + ":users"
        self._node_ttl = node_ttl
        #: how long a node reaps nobody after it (re)gained touch with Redis
        self._grace = node_ttl + ReconnectingFactory.maxDelay
        self._timeout = command_timeout
        self._connection: Any = None
        self._listener: ReapedListener | None = None
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._beat_interval = beat
        #: this node's users, registered again after an outage: name -> since ms
        self._mine: dict[str, int] = {}
        self._in_touch = False
        self._reap_from = 0.0
        self._unreleased: set[str] = set()
        self._claims: TurnBatcher[tuple[str, str], Any] = TurnBatcher(reactor, self._send_claims)
        self._releases: TurnBatcher[str, Any] = TurnBatcher(reactor, self._send_releases)
        #: For metrics: users of this node whose name someone else held when
        #: they were registered again.
        self.lost_names = 0

    def _command(self, *args: Any) -> Deferred[Any]:
        if not is_connected(self._connection):
            return fail(ConnectionError("not connected to Redis"))
        d: Deferred[Any] = self._connection.handler.execute_command(*args)
        return d.addTimeout(self._timeout + TIMEOUT_GRACE, self._reactor)

    def _script(self, script: RedisScript, keys: Sequence[Any], args: Sequence[Any] = ()) -> Deferred[Any]:
        return script.run(self._command, keys, args)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._connection = connect(self._reactor, self._address, reply_timeout=self._timeout,
                                   connect_timeout=self._timeout)
        await wait_connected(self._reactor, self._connection, self._timeout)
        await self._keep_alive()
        await self._script(ADOPT_SCRIPT, [self._users, self._nodes], [self._node_prefix])
        self._in_touch = True
        # nodes may be re-beating after an outage this one did not see
        self._reap_from = self._reactor.seconds() + self._grace
        self._beat.start(self._beat_interval, now=False)

    def stop(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._beat.running:
            self._beat.stop()
        if self._connection is None:
            return
        try:
            await self._command("DEL", self._node_key)
        except Exception:
            log.warn("could not remove this node's presence key")
        connection, self._connection = self._connection, None
        await DeferredList([connection.disconnect()], consumeErrors=True)

    def _keep_alive(self) -> Deferred[Any]:
        return self._script(BEAT_SCRIPT, [self._node_key, self._nodes], [self.node_id, int(self._node_ttl * 1000)])

    async def _heartbeat(self) -> None:
        try:
            existed = int(await self._keep_alive())
            if not (self._in_touch and existed):
                self._reap_from = self._reactor.seconds() + self._grace
                await self._register_again()
            self._in_touch = True
            if self._unreleased:
                names = sorted(self._unreleased)
                await self._send_releases(names)
                self._unreleased.difference_update(names)
                log.info("{count} nickname releases retried", count=len(names))
            if self._reactor.seconds() < self._reap_from:
                return
            gone = await self._script(REAP_SCRIPT, [self._users, self._nodes], [self._node_prefix])
        except Exception as e:
            self._in_touch = False
            log.warn("presence heartbeat failed: {error}", error=type(e).__name__)
            return
        names = [_text(n) for n in gone or ()]
        if names:
            log.info("{count} users of a node that stopped answering left", count=len(names))
            if self._listener is not None:
                self._listener(names)

    async def _register_again(self) -> None:
        """Register this node's users again (Redis may have lost them)."""
        users = sorted(self._mine.items())
        lost = []
        for start in range(0, len(users), REGISTER_BATCH):
            batch = users[start:start + REGISTER_BATCH]
            args = [part for name, since in batch for part in (name, f"{self.node_id}|{since}")]
            taken = await self._script(CLAIM_SCRIPT, [self._users, self._own, self._nodes],
                                       [self.node_id, "again", *args])
            lost += [name for (name, _), ok in zip(batch, taken) if int(ok) != 1]
        for name in lost:
            self._mine.pop(name, None)
        self.lost_names += len(lost)
        log.info("{count} users of this node registered again after losing touch with Redis; "
                 "{lost} names were held by someone else meanwhile", count=len(users) - len(lost), lost=len(lost))

    # -- IPresence ------------------------------------------------------------

    def set_reaped_listener(self, listener: ReapedListener) -> None:
        self._listener = listener

    def claim(self, name: str, since_ms: int) -> Deferred[bool]:
        d: Deferred[Any] = self._claims.add((name, f"{self.node_id}|{since_ms}"))

        def claimed(added: Any) -> bool:
            if int(added) == 1:
                self._mine[name] = since_ms
                return True
            return False

        return d.addCallback(claimed)

    def release(self, name: str) -> Deferred[None]:
        """Never fails: a release Redis could not take is retried at every
        beat, so the user does not stay listed (nor get a second LEAVE when
        this node's key expires)."""
        self._mine.pop(name, None)
        d: Deferred[Any] = self._releases.add(name)
        return d.addCallbacks(lambda _: None, lambda _: self._unreleased.add(name))

    def _send_claims(self, batch: list[tuple[str, str]]) -> Deferred[Sequence[Any]]:
        return self._script(CLAIM_SCRIPT, [self._users, self._own, self._nodes],
                            [self.node_id, "new", *[part for pair in batch for part in pair]])

    def _send_releases(self, batch: list[str]) -> Deferred[Sequence[Any]]:
        return self._script(RELEASE_SCRIPT, [self._users, self._own], [self.node_id, *batch])

    def linger(self, name: str, nonce: str, seconds: float) -> Deferred[None]:
        ttl = int((seconds + REJOIN_KEY_SLACK) * 1000)
        return self._command("SET", self._rejoin_prefix + name, nonce, "PX", ttl).addCallback(lambda _: None)

    def resume(self, name: str, nonce: str) -> Deferred[bool]:
        d = self._script(RESUME_SCRIPT, [self._users, self._own, self._rejoin_prefix + name, self._nodes],
                         [self._node_prefix, self.node_id, name, nonce])

        def resumed(since: Any) -> bool:
            if since is None:
                return False
            text = _text(since)
            self._mine[name] = int(text) if text.isdigit() else 0
            return True

        return d.addCallback(resumed)

    def expire_linger(self, name: str, nonce: str) -> Deferred[bool]:
        d = self._script(EXPIRE_SCRIPT, [self._rejoin_prefix + name], [nonce])

        def expired(still_waiting: Any) -> bool:
            if int(still_waiting) != 1:
                self._mine.pop(name, None)  # another node has the user now
                return False
            return True

        return d.addCallback(expired)

    def online(self) -> Deferred[list[tuple[str, int]]]:
        return self._command("HGETALL", self._users).addCallback(self._parse)

    @staticmethod
    def _parse(flat: Sequence[Any]) -> list[tuple[str, int]]:
        users = []
        for name, value in zip(flat[::2], flat[1::2]):
            _, _, since = _text(value).partition("|")
            users.append((_text(name), int(since) if since.isdigit() else 0))
        return sorted(users, key=lambda item: (item[1], item[0]))
