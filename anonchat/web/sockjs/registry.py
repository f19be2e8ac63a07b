"""Every live SockJS session of one endpoint: HTTP sessions by id, WebSocket ones by identity.

WebSocket sessions are not addressable by id (the protocol lets two sockets
share one), so they are kept in a set only for ``close_all``.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

from twisted.logger import Logger

from anonchat.stomp.transport import ClientInfo
from anonchat.web.sockjs.hints import Clock, ReceiverFactory
from anonchat.web.sockjs.options import SockJSOptions
from anonchat.web.sockjs.session import SockJSSession


class Closeable(Protocol):
    def shutdown(self) -> None:
        """Close now; the STOMP session hears ``connection_lost`` before this returns."""


class SessionRegistry:
    log = Logger()

    def __init__(self, session_factory: ReceiverFactory, clock: Clock, options: SockJSOptions) -> None:
        self.session_factory = session_factory
        self._clock = clock
        self._options = options
        self._by_id: dict[str, SockJSSession] = {}
        self._unnamed: set[Closeable] = set()

    def __len__(self) -> int:
        return len(self._by_id) + len(self._unnamed)

    def __iter__(self) -> Iterator[Closeable]:
        return iter([*self._by_id.values(), *self._unnamed])

    def get(self, session_id: str) -> SockJSSession | None:
        return self._by_id.get(session_id)

    def create(self, session_id: str, kind: str, client: ClientInfo) -> SockJSSession:
        """A new polling/streaming session under ``session_id``, gone after its disconnect delay."""

        def gone(session: SockJSSession) -> None:
            if self._by_id.get(session_id) is session:
                del self._by_id[session_id]

        session = self._new(kind, client, self._options.disconnect_delay, gone)
        self._by_id[session_id] = session
        return session

    def create_unnamed(self, kind: str, client: ClientInfo) -> SockJSSession:
        """A session that lives exactly as long as its one WebSocket."""
        session = self._new(kind, client, 0.0, self.untrack)
        self.track(session)
        return session

    def track(self, connection: Closeable) -> None:
        """Remember a connection that has no session id, for ``close_all``."""
        self._unnamed.add(connection)

    def untrack(self, connection: Closeable) -> None:
        self._unnamed.discard(connection)

    def _new(
        self, kind: str, client: ClientInfo, delay: float, gone: Callable[[SockJSSession], None]
    ) -> SockJSSession:
        return SockJSSession(
            kind=kind,
            client=client,
            receiver_factory=self.session_factory,
            clock=self._clock,
            heartbeat_delay=self._options.heartbeat_delay,
            disconnect_delay=delay,
            max_send_buffer=self._options.max_send_buffer,
            on_gone=gone,
            on_close=self._options.on_close,
        )

    def close_all(self) -> None:
        """Close every session now (server shutdown); each STOMP session hears ``connection_lost``."""
        sessions = list(self)
        if sessions:
            self.log.info("Closing {count} SockJS sessions", count=len(sessions))
        for session in sessions:
            session.shutdown()
