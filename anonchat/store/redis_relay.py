"""Typing events between nodes over Redis pub/sub.

Pub/sub channels are not scoped by Redis db number, so the channel name
carries the db: deployments (and tests) on other dbs of the same server
never hear each other. Delivery is best effort, as typing needs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from anonchat.chat.ports import IRelay, RelayListener
from anonchat.store.redis_connection import TIMEOUT_GRACE, SubscriberFactory, connect, parse_redis_url

log = Logger()


@implementer(IRelay)
class RedisRelay:
    def __init__(self, reactor: Any, url: str, *, key_prefix: str = "anonchat:", command_timeout: float = 5.0) -> None:
        self._reactor = reactor
        self._address = parse_redis_url(url)
        self.channel = f"{key_prefix}typing:{self._address.db}"
        self._timeout = command_timeout
        self._listener: RelayListener | None = None
        self._publisher: Any = None
        self._subscriber: Any = None

    def set_listener(self, listener: RelayListener) -> None:
        self._listener = listener

    def _received(self, message: Any) -> None:
        if self._listener is not None:
            self._listener(message.encode("utf-8") if isinstance(message, str) else bytes(message))

    def publish(self, body: bytes) -> None:
        if self._publisher is None:
            return
        d: Deferred[Any] = self._publisher.handler.execute_command("PUBLISH", self.channel, body.decode("utf-8"))
        d.addTimeout(self._timeout + TIMEOUT_GRACE, self._reactor)
        d.addErrback(lambda f: log.debug("typing event not relayed: {error}", error=f.getErrorMessage()))

    def start(self) -> Deferred[None]:
        self._publisher = connect(self._reactor, self._address, reply_timeout=self._timeout,
                                  connect_timeout=self._timeout)
        self._subscriber = connect(self._reactor, self._address, reply_timeout=None, connect_timeout=self._timeout,
                                   factory_class=SubscriberFactory, channel=self.channel, listener=self._received)
        return Deferred.fromCoroutine(self._subscribed())

    async def _subscribed(self) -> None:
        """Wait until the subscription is in place, so nothing published
        after start is missed."""
        connection = await self._subscriber.getConnection()
        await connection.whenConnected()
        await connection.execute_command("PING")

    def stop(self) -> Deferred[None]:
        factories = [f for f in (self._publisher, self._subscriber) if f is not None]
        self._publisher = self._subscriber = None
        d = DeferredList([f.disconnect() for f in factories], consumeErrors=True)
        return d.addCallback(lambda _: None)
