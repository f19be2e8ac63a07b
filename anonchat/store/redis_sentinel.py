"""Finding the Redis master through Sentinel, and following it.

txredisapi's own Sentinel client was not enough: it waits its 10 s
discovery timeout whenever the master Sentinel names is down (the very
moment of a failover), runs on the global reactor, and a connection learns
of a new master only when it drops. A connection that does not drop (the
feed's blocking ``XREAD`` and a pub/sub subscriber work on a replica too)
would stay on a demoted master. So: one ``MasterLocator`` per process and
service asks every sentinel (``SENTINEL get-master-addr-by-name``, on a
short-lived connection, the answer most of them give wins), every
connection attempt connects where it says (``SentinelEndpoint``), and once
a second it asks again and drops every watched connection that is not to
the master, so each reconnects to the new one.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any, Sequence

import hiredis
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.store.redis_connection import RedisAddress

__all__ = ["MasterLocator", "MasterNotFound", "SentinelEndpoint", "locator_for"]

#: seconds one sentinel has to answer; a sentinel that is down is skipped
QUERY_TIMEOUT = 1.0
#: seconds between two checks that every watched connection is to the master
CHECK_EVERY = 1.0

log = Logger()


class MasterNotFound(ConnectionError):
    """No sentinel named a master for the service."""


def _command(*args: str) -> bytes:
    encoded = [a.encode("utf-8") for a in args]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)


class _OneReply(Protocol):
    """Sends one command, fires ``reply`` with its parsed reply."""

    transport: Any

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.reply: Deferred[Any] = Deferred()
        self._reader = hiredis.Reader()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        reply = self._reader.gets()
        if reply is not False and not self.reply.called:
            self.reply.callback(reply)
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.reply.called:
            self.reply.errback(ConnectionError("sentinel closed the connection"))


async def ask_sentinel(reactor: Any, host: str, port: int, service: str) -> tuple[str, int] | None:
    """The master this sentinel names for ``service`` (None: it knows no such
    service)."""
    query = _OneReply(_command("SENTINEL", "get-master-addr-by-name", service))
    endpoint = HostnameEndpoint(reactor, host, port, timeout=QUERY_TIMEOUT)
    try:
        await connectProtocol(endpoint, query).addTimeout(QUERY_TIMEOUT, reactor)
        reply = await query.reply.addTimeout(QUERY_TIMEOUT, reactor)
    finally:
        if query.transport is not None and query.transport.connected:
            query.transport.abortConnection()
    if not isinstance(reply, list) or len(reply) != 2:
        return None
    return reply[0].decode("utf-8"), int(reply[1])


class MasterLocator:
    def __init__(self, reactor: Any, sentinels: Sequence[tuple[str, int]], service: str, timeout: float) -> None:
        self.reactor = reactor
        self.sentinels = tuple(sentinels)
        self.service = service
        #: seconds a connection to the master has to answer ROLE
        self.timeout = timeout
        self.master: tuple[str, int] | None = None
        self._watched: list[Any] = []
        self._check = LoopingCall(self._check_connections)
        self._check.clock = reactor
        self._checking = False

    async def locate(self) -> tuple[str, int]:
        """Ask every sentinel; the master most of those that answer name."""
        asked = [Deferred.fromCoroutine(ask_sentinel(self.reactor, host, port, self.service))
                 for host, port in self.sentinels]
        results = await DeferredList(asked, consumeErrors=True)
        named = Counter(result for ok, result in results if ok and result is not None)
        if not named:
            raise MasterNotFound(f"no sentinel named a master for {self.service}")
        master = named.most_common(1)[0][0]
        if master != self.master:
            log.info("Redis master for {service} is {host}:{port}", service=self.service, host=master[0],
                     port=master[1])
            self.master = master
        return master

    def watch(self, factory: Any) -> None:
        """Keep the connections of ``factory`` (a txredisapi pool) on the master."""
        self._watched.append(factory)
        if not self._check.running:
            self._check.start(CHECK_EVERY, now=False)

    def unwatch(self, factory: Any) -> None:
        if factory in self._watched:
            self._watched.remove(factory)
        if not self._watched:
            if self._check.running:
                self._check.stop()
            _LOCATORS.pop(_key(self.reactor, self.sentinels, self.service), None)

    def _check_connections(self) -> None:
        if self._checking:
            return
        self._checking = True

        async def check() -> None:
            try:
                master = await self.locate()
            except Exception:
                return  # no answer is no reason to drop anything
            finally:
                self._checking = False
            for factory in list(self._watched):
                for connection in list(factory.pool):
                    if not _is(connection, master):
                        log.warn("Redis connection to {peer} is not to the master {host}:{port}; reconnecting",
                                 peer=_peer(connection), host=master[0], port=master[1])
                        connection.transport.loseConnection()

        Deferred.fromCoroutine(check())


def _peer(connection: Any) -> str:
    peer = connection.transport.getPeer()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


def _is(connection: Any, master: tuple[str, int]) -> bool:
    """Whether ``connection`` goes to ``master``; a master named by host name
    (not an address) cannot be compared with a peer, so it counts as yes."""
    try:
        wanted = ipaddress.ip_address(master[0])
    except ValueError:
        return True
    peer = connection.transport.getPeer()
    try:
        return bool(ipaddress.ip_address(peer.host) == wanted and peer.port == master[1])
    except (AttributeError, ValueError):
        return True


_LOCATORS: dict[tuple[int, tuple[tuple[str, int], ...], str], MasterLocator] = {}


def _key(reactor: Any, sentinels: Sequence[tuple[str, int]], service: str) -> tuple[int, tuple[tuple[str, int], ...], str]:
    return id(reactor), tuple(sentinels), service


def locator_for(reactor: Any, address: RedisAddress, timeout: float) -> MasterLocator:
    """The process's locator for this service: one check loop, however many
    connections (it ends when the last pool stops watching)."""
    assert address.service is not None
    key = _key(reactor, address.sentinels, address.service)
    if key not in _LOCATORS:
        _LOCATORS[key] = MasterLocator(reactor, address.sentinels, address.service, timeout)
    return _LOCATORS[key]


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """Connects to wherever Sentinel says the master is, asked anew on every
    attempt; the pool's connections are watched from then on."""

    def __init__(self, reactor: Any, locator: MasterLocator, factory: Any, timeout: float) -> None:
        self._reactor = reactor
        self._locator = locator
        self._timeout = timeout
        locator.watch(factory)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        async def connect() -> Any:
            host, port = await self._locator.locate()
            return await HostnameEndpoint(self._reactor, host, port, timeout=max(self._timeout, 1.0)).connect(
                protocolFactory)

        return Deferred.fromCoroutine(connect())
