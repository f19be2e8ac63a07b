"""Connections to Redis: the URL, a reconnecting txredisapi pool of one,
and the txredisapi behaviours we change. Replies are parsed by hiredis (a
dependency, which txredisapi picks up by itself): a whole read at once.

Shared by the stream buffer, presence and the pub/sub relay so every Redis
user reconnects and times out the same way.

With ``sentinel://`` every connection asks Sentinel where the master is
before it connects (``redis_sentinel``), checks ``ROLE`` before it counts as
connected, and is dropped (so it asks again) when the master answers
``READONLY`` (it was demoted) or Sentinel names another master.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure


@attrs.frozen
class RedisAddress:
    """Where Redis is, from ``redis://[[user]:password@]host[:port][/db]``
    (``rediss://`` for TLS; ``?ssl_ca_certs=/path/ca.pem`` trusts that CA
    instead of the platform's, as redis-py spells it)."""

    host: str
    port: int = 6379
    db: int = 0
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    username: str | None = None
    ca_certs: str | None = None
    #: ``sentinel://``: where the sentinels are, and the service they watch
    #: (``host``/``port`` are then the first sentinel's, for messages)
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None


T = TypeVar("T")

SENTINEL_PORT = 26379



#: Our own timeout on a command fires this much after txredisapi's
#: replyTimeout, so that its timeout (which also drops the stuck connection
#: and fails its own Deferred, consumed) wins for a command already sent;
#: firing both at once left txredisapi's failure unhandled in the log.
TIMEOUT_GRACE = 0.25

def parse_redis_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or
    ``sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
    (the password is the master's); ValueError saying what is wrong."""
    if url.startswith("sentinel://"):
        return _parse_sentinel_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("a Redis URL starts with redis://, rediss:// or sentinel://")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the Redis db in the URL path must be a number")
    query = parse_qs(parts.query)
    unknown = set(query) - {"ssl_ca_certs"}
    if unknown:
        raise ValueError(f"unknown Redis URL parameters: {', '.join(sorted(unknown))}")
    return RedisAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path) if path else 0,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        ca_certs=query["ssl_ca_certs"][0] if "ssl_ca_certs" in query else None,
    )


def _parse_sentinel_url(url: str) -> RedisAddress:
    rest = url[len("sentinel://"):]
    if "?" in rest or "#" in rest:
        raise ValueError("a sentinel:// URL takes no parameters (no TLS through Sentinel)")
    netloc, _, path = rest.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if not host:
            raise ValueError("a sentinel:// URL lists sentinels as host:port,host:port")
        try:
            number = int(port) if colon else SENTINEL_PORT
        except ValueError:
            raise ValueError(f"sentinel port {port!r} is not a number") from None
        if not 0 < number < 65536:
            raise ValueError(f"sentinel port {number} is out of range")
        sentinels.append((host, number))
    segments = path.split("/") if path else []
    if not segments or not segments[0] or len(segments) > 2:
        raise ValueError("a sentinel:// URL ends with /SERVICE or /SERVICE/DB")
    db = segments[1] if len(segments) == 2 else "0"
    if not db.isdigit():
        raise ValueError("the Redis db in the URL path must be a number")
    return RedisAddress(
        host=sentinels[0][0], port=sentinels[0][1], db=int(db),
        password=unquote(password) if password else None,
        username=unquote(username) if username else None,
        sentinels=tuple(sentinels), service=unquote(segments[0]),
    )


class MasterOnly(txredisapi.RedisProtocol):  # type: ignore[misc]
    """A connection that must be to the master (``sentinel://``): ``ROLE``
    first, and a connection that finds a replica, or is told ``READONLY``
    later (its server was demoted), is dropped so the pool reconnects through
    Sentinel. Without Sentinel it is txredisapi's protocol unchanged."""

    def connectionMade(self) -> Any:
        if getattr(self.factory, "locator", None) is None:
            return super().connectionMade()
        return Deferred.fromCoroutine(self._master_or_drop())

    async def _master_or_drop(self) -> None:
        try:
            if self.password is not None:
                await self.auth(self.password, self.username)
            role = await self.execute_command("ROLE").addTimeout(self.factory.locator.timeout, self.factory.clock)
            is_master = _str(role[0]) == "master"
        except Exception as e:
            self.factory.log.warn("Redis ROLE check failed: {error}", error=type(e).__name__)
            is_master = False
        if not is_master:
            self.factory.log.warn("Redis at {peer} is not the master; asking Sentinel again", peer=self._peer())
            self.transport.loseConnection()
            return
        await super().connectionMade()

    def replyReceived(self, reply: Any) -> None:
        super().replyReceived(reply)
        if (isinstance(reply, txredisapi.ResponseError) and str(reply).startswith("READONLY")
                and getattr(self.factory, "locator", None) is not None):
            self.factory.log.warn("Redis at {peer} was demoted (READONLY); reconnecting to the master",
                                  peer=self._peer())
            self.transport.loseConnection()

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SubscriberProtocol(MasterOnly, txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """Subscribes to its factory's channel on every (re)connection and hands
    each message to the factory's listener."""

    def connectionMade(self) -> Any:
        d = super().connectionMade()
        self.whenConnected().addCallback(lambda p: p.subscribe(self.factory.channel)).addErrback(
            lambda f: self.factory.log.warn("Redis SUBSCRIBE failed: {error}", error=f.getErrorMessage())
        )
        return d

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.listener(message)


class ReconnectingFactory(txredisapi.RedisFactory):  # type: ignore[misc]
    """A txredisapi pool that keeps reconnecting whatever happens.

    txredisapi gives up for good when AUTH or SELECT fails on a new
    connection, which is also what a server that is paused or still
    loading looks like (the reply times out); we retry with backoff instead.
    """

    protocol = MasterOnly  # hiredis' parser: a whole read at once
    initialDelay = 0.1
    maxDelay = 2.0
    log = Logger()
    #: with ``sentinel://``, where the master is (set by ``connect``)
    locator: Any = None
    clock: Any = None

    def disconnect(self) -> Deferred[Any]:
        if self.locator is not None:
            self.locator.unwatch(self)
        return super().disconnect()  # type: ignore[no-any-return]

    def stopTrying(self) -> Deferred[Any]:
        if self.disconnectCalled:
            return super().stopTrying()  # type: ignore[no-any-return]
        return succeed(None)

    def connectionError(self, why: str) -> None:
        self.log.warn("Redis connection not usable: {why}", why=why)


class SubscriberFactory(ReconnectingFactory):
    protocol = SubscriberProtocol

    def __init__(self, *args: Any, channel: str, listener: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel = channel
        self.listener = listener


def endpoint(reactor: Any, address: RedisAddress, timeout: float) -> IStreamClientEndpoint:
    result = cast(IStreamClientEndpoint, HostnameEndpoint(reactor, address.host, address.port, timeout=max(timeout, 1.0)))
    if address.tls:
        # verifies the certificate against the platform trust store (or the
        # given CA) and the host name or IP address with service_identity
        trust = None
        if address.ca_certs:
            with open(address.ca_certs, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        result = wrapClientTLS(optionsForClientTLS(address.host, trustRoot=trust), result)
    return result


def connect(reactor: Any, address: RedisAddress, *, reply_timeout: float | None, connect_timeout: float,
            factory_class: type[ReconnectingFactory] = ReconnectingFactory, **extra: Any) -> Any:
    """A started, reconnecting pool of one connection (commands pipelined)."""
    factory = factory_class(
        uuid=f"{address.host}:{address.port}",
        dbid=address.db or None,
        poolsize=1,
        isLazy=True,
        handler=txredisapi.ConnectionHandler,
        charset="utf-8",
        password=address.password,
        replyTimeout=reply_timeout,
        convertNumbers=False,
        username=address.username,
        **extra,
    )
    factory.clock = reactor
    if address.sentinels:
        from anonchat.store.redis_sentinel import SentinelEndpoint, locator_for

        factory.locator = locator_for(reactor, address, connect_timeout)
        factory.startConnecting(SentinelEndpoint(reactor, factory.locator, factory, connect_timeout))
    else:
        factory.startConnecting(endpoint(reactor, address, connect_timeout))
    return factory


async def wait_connected(reactor: Any, factory: Any, timeout: float) -> None:
    """Wait until the pool has its connection (fails after ``timeout``)."""
    await factory.getConnection(peek=True).addTimeout(timeout, reactor)
    # txredisapi wakes waiters before it counts the connection in the pool
    # (what ``is_connected`` reads): let it finish that first.
    await deferLater(reactor, 0, lambda: None)


def is_connected(factory: Any) -> bool:
    """Whether a command would be written now rather than queued until a
    reconnection. Callers fail fast instead of queueing: a command written
    the moment Redis returns could run after its caller gave up on it."""
    return bool(factory is not None and factory.size)


def guarded(log: Logger, what: str, work: Callable[[], Awaitable[T]], unavailable: type[Exception],
            passed: tuple[type[BaseException], ...] = ()) -> Deferred[T]:
    """Run one public operation of a Redis-backed store: ``unavailable`` and
    the ``passed`` errors go through as they are; anything else Redis or
    the connection did becomes ``unavailable``, logged once, in words that
    never quote a value (txredisapi's InvalidData would quote a message)."""

    async def run() -> T:
        return await work()

    def translate(failure: Failure) -> Failure:
        if failure.check(unavailable, ValueError, *passed):
            return failure
        if failure.check(txredisapi.InvalidData):
            return Failure(ValueError("the value cannot be encoded as UTF-8"))
        error = failure.type.__name__
        if failure.check(txredisapi.ResponseError):
            error = failure.getErrorMessage()  # Redis' own words, no values in them
        log.warn("Redis {operation} failed: {error}", operation=what, error=error)
        return Failure(unavailable(f"Redis {what} failed: {error}"))

    return Deferred.fromCoroutine(run()).addErrback(translate)
