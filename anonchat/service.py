"""Wiring: build the stores, the room, the flusher and the site from Settings,
and start and stop them in the right order.

``makeService`` stays synchronous; the stores connect in ``startService``
and the port opens only once they are ready. ``stopService`` drains:
stop accepting, close every session (their LEAVEs are appended), flush
the buffer, close the pools.

A start that cannot succeed (bad endpoint, port taken, Redis unreachable
for ``--start-timeout``) ends in one log line saying why, never a
traceback, and ``on_start_failed``; the twistd entry then exits 1. The
database is not needed to chat, so a database down at start only makes
the node degraded, and the log says why at once.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from twisted.application import service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from prometheus_client.metrics_core import Metric
from twisted.python.failure import Failure


from anonchat.chat.access import AccessPolicy
from anonchat.chat.message import ChatMessage
from anonchat.chat.moderator import Moderator
from anonchat.chat.ports import IMessageArchive, IMessageBuffer, IModerationStore, IPresence, IRelay
from anonchat.chat.presence import InMemoryPresence
from anonchat.chat.readgate import HistoryRate, ReadGate
from anonchat.chat.relay import LocalRelay
from anonchat.chat.room import ChatRoom, RoomConfig
from anonchat.metrics import Metrics, counter, gauge
from anonchat.settings import Settings
from anonchat.stomp.session import SessionLimits, StompSession
from anonchat.stomp.transport import ClientInfo, IFrameReceiver, IFrameTransport
from anonchat.store.flusher import Flusher
from anonchat.store.memory import InMemoryBuffer
from anonchat.store.sql_archive import WAITING_READS_PER_READER, SqlArchive
from anonchat.web.addresslimits import AddressLimits
from anonchat.web.site import build_site

log = Logger()

#: seconds between attempts to reach Redis at start, and the most a stop
#: waits for each Redis-backed part to let go
RETRY_EVERY = 1.0
STOP_WAIT = 5.0


class StartFailed(Exception):
    """Why this node cannot start, in one line."""


def make_moderator(settings: Settings, reactor: Any) -> Moderator:
    """Moderation state in Redis when Redis is used (every node shares it),
    else in the database (so it survives a restart); the audit log is the
    archive's moderation_log table either way."""
    from anonchat.store.sql_moderation import SqlModerationLog, SqlModerationStore

    store: IModerationStore
    if settings.redis:
        from anonchat.store.redis_moderation import RedisModerationStore

        store = RedisModerationStore(reactor, settings.redis)
    else:
        store = SqlModerationStore.from_url(settings.database, reactor=reactor)
    return Moderator(store, reactor, audit=SqlModerationLog.from_url(settings.database, reactor=reactor),
                     blocked_words_path=settings.blocked_words)


def make_access(settings: Settings) -> AccessPolicy | None:
    if settings.access_jwt_secret:
        return AccessPolicy.with_secret(settings.access_jwt_secret, settings.access_jwt_audience)
    if settings.access_jwt_public_key:
        with open(settings.access_jwt_public_key, "rb") as f:
            return AccessPolicy.with_public_key(f.read(), settings.access_jwt_audience)
    return None


def admin_token(settings: Settings) -> str | None:
    if settings.admin_token_file:  # checked when the option was parsed
        with open(settings.admin_token_file, encoding="utf-8") as f:
            return f.read().strip()
    return settings.admin_token


def make_buffer(settings: Settings, reactor: Any) -> IMessageBuffer:
    if settings.redis:
        from anonchat.store.redis_buffer import RedisStreamBuffer

        return RedisStreamBuffer(reactor, settings.redis, retain=settings.redis_retain, claim_idle=settings.claim_idle,
                                 wait_replicas=settings.redis_wait, wait_timeout_ms=settings.redis_wait_timeout)
    return InMemoryBuffer(reactor, retain=settings.redis_retain)


class AnonchatService(service.Service):
    def __init__(self, settings: Settings, reactor: Any, *,
                 on_start_failed: Callable[[StartFailed], None] | None = None,
                 endpoint: IStreamServerEndpoint | None = None) -> None:
        """``endpoint`` listens instead of ``--port`` (a worker's adopted socket)."""
        self.settings = settings
        self._endpoint = endpoint
        self._on_start_failed = on_start_failed
        self.start_failure: StartFailed | None = None
        self.reactor = reactor
        self.metrics = Metrics()
        self.buffer = make_buffer(settings, reactor)
        self.archive: IMessageArchive = SqlArchive.from_url(
            settings.database, reactor=reactor, readers=settings.history_readers, replica=settings.database_replica)
        self.presence: IPresence = InMemoryPresence()
        self.relay: IRelay = LocalRelay()
        if settings.redis:
            from anonchat.store.redis_presence import RedisPresence
            from anonchat.store.redis_relay import RedisRelay

            self.presence = RedisPresence(reactor, settings.redis, node_ttl=settings.node_ttl,
                                          beat=settings.node_ttl / 3)
            self.relay = RedisRelay(reactor, settings.redis)
        self.moderator = make_moderator(settings, reactor)
        self.access = make_access(settings)
        self.room = ChatRoom(
            self.buffer,
            self.presence,
            reactor,
            RoomConfig(
                nickname_prefix=settings.nickname_prefix,
                max_content=settings.max_content,
                rate_limit=settings.rate_limit,
                max_replay=settings.max_replay,
                rejoin_grace=settings.rejoin_grace,
            ),
            rng=random.SystemRandom(),
            archive=self.archive,
            relay=self.relay,
            moderator=self.moderator,
            access=self.access,
            history_gate=ReadGate(settings.history_readers, settings.history_readers * WAITING_READS_PER_READER),
            history_rate=HistoryRate(reactor, settings.history_rate),
        )
        self.buffer.add_listener(self._fan_out)
        self.flusher = Flusher(
            self.buffer, self.archive, reactor, interval=settings.flush_interval, batch_size=settings.batch_size,
            hidden=self.room.hidden,
        )
        self.limits = SessionLimits(
            max_frame=settings.max_frame,
            max_headers=settings.max_headers,
            max_header_length=settings.max_header_length,
            connect_timeout=settings.connect_timeout,
            heartbeat=(settings.heartbeat, settings.heartbeat),
            max_subscriptions=settings.max_subscriptions,
            frame_rate=settings.frame_rate,
            max_pending_sends=settings.max_pending_sends,
            max_held_bytes=settings.max_send_buffer,
            keepalive=(settings.ws_ping_interval, settings.ws_ping_timeout),
        )
        self.limiter = AddressLimits(reactor, max_connections=settings.max_connections_per_ip,
                                     api_rate=settings.api_rate)
        self.sessions: dict[StompSession, None] = {}
        #: Per-address slots this service holds (SockJS sessions).
        self._slots: dict[StompSession, str] = {}
        self.ready = False
        self._backlog = 0
        self._fed_since_nudge = 0
        self._backlog_sampler = LoopingCall(self._sample_backlog)
        self._backlog_sampler.clock = reactor
        self.metrics.add_sampler(self._sample)
        self.site, self.sockjs = build_site(
            settings, reactor, session_factory=self.new_session, buffer=self.buffer, archive=self.archive,
            presence=self.presence, ready=lambda: self.ready, metrics=self.metrics, limits=self.limiter,
            on_close=self.count_close, room=self.room, moderator=self.moderator, access=self.access,
            admin_token=admin_token(settings),
        )
        self.port: IListeningPort | None = None
        self._starting: Deferred[None] | None = None

    # -- sessions -------------------------------------------------------------

    def new_session(self, transport: IFrameTransport, client: ClientInfo) -> IFrameReceiver:
        """The session factory every carrier calls."""
        session = StompSession(
            transport, client, self.room, self.reactor, secrets.token_hex(8), self.limits,
            on_close=self.count_close, on_lost=self._session_lost,
        )
        self.sessions[session] = None
        if not client.slot_held:
            # SockJS sessions are counted here; raw WebSockets at the handshake.
            if self.limiter.acquire(client.address):
                self._slots[session] = client.address
            else:
                session.protocol_error("too many connections", "too many connections from this address",
                                       reason="too-many-connections")
        return session

    def count_close(self, reason: str) -> None:
        self.metrics.closes.labels(reason).inc()

    def _session_lost(self, session: StompSession) -> None:
        self.sessions.pop(session, None)
        address = self._slots.pop(session, None)
        if address is not None:
            self.limiter.release(address)

    def _sample(self) -> Iterable[Metric]:
        """Read at every scrape: plain counters kept by the room, flusher and archive."""
        by_transport: Counter[str] = Counter(s.transport.kind for s in self.sessions)
        yield gauge("anonchat_connections", "Open STOMP connections", labels=dict(by_transport), label="transport")
        yield counter("anonchat_messages_in", "Chat messages accepted into the buffer", self.room.accepted)
        yield gauge("anonchat_sends_waiting", "SENDs read and waiting for the buffer to answer (a connection"
                    " with --max-pending-sends of them is not read meanwhile)",
                    sum(s.budget.pending_sends for s in self.sessions))
        yield counter("anonchat_refused", "Application errors reported to clients, by code",
                      labels=dict(self.room.refused), label="code")
        yield gauge("anonchat_buffer_backlog", "Messages not yet archived (sampled)", self._backlog)
        flusher = self.flusher
        yield counter("anonchat_flushed", "Messages written to the archive", flusher.flushed_total)
        yield gauge("anonchat_flush_batch_size", "Messages in the last flushed batch", flusher.last_batch_size)
        yield gauge("anonchat_flush_lag_seconds", "Send-to-archive lag of the last batch", flusher.last_lag_seconds)
        yield gauge("anonchat_flush_failures", "Flushes failed in a row", flusher.consecutive_failures)
        yield counter("anonchat_dead_letters", "Rows the database refused, set aside",
                      getattr(self.archive, "dead_lettered", 0))
        yield counter("anonchat_buffer_dead_letters", "Buffer entries this node could not decode, set aside",
                      getattr(self.buffer, "dead_lettered", 0))
        yield counter("anonchat_history_reads_refused", "Database history reads refused as too many were waiting",
                      getattr(self.archive, "reads_refused", 0))
        room = self.room
        yield counter("anonchat_history_refused", "REST pages and replays refused: too many history reads "
                      "waiting, or past --history-rate",
                      (room.history_gate.refused if room.history_gate else 0)
                      + (room.history_rate.refused if room.history_rate else 0))
        yield counter("anonchat_lost_names", "Users whose name another held when Redis lost it",
                      getattr(self.presence, "lost_names", 0))

    async def _sample_backlog(self) -> None:
        try:
            self._backlog = await self.buffer.backlog()
        except Exception:
            pass  # the buffer being down is reported by /healthz

    def _fan_out(self, messages: Sequence[ChatMessage]) -> None:
        started = time.perf_counter()
        self.metrics.deliveries.inc(self.room.on_feed(messages))
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        self._fed_since_nudge += len(messages)
        if self._fed_since_nudge >= self.flusher.batch_size:
            self._fed_since_nudge = 0
            self.flusher.nudge()

    # -- lifecycle --------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        starting: Deferred[None] = Deferred.fromCoroutine(self._start())
        starting.addErrback(self._start_failed)
        self._starting = starting

    async def when_ready(self) -> None:
        """Wait until the stores are connected and the port is open."""
        assert self._starting is not None, "service not started"
        while not self.ready:
            if self._starting.called and not self.ready:
                raise self.start_failure or StartFailed("anonchat did not start; see the log")
            d: Deferred[None] = Deferred()
            self.reactor.callLater(0.01, d.callback, None)
            await d

    @property
    def listening_port(self) -> int:
        assert self.port is not None
        return int(self.port.getHost().port)  # type: ignore[attr-defined]

    async def _start(self) -> None:
        timeout = self.settings.start_timeout
        deadline = self.reactor.seconds() + timeout
        try:
            endpoint = self._endpoint or serverFromString(self.reactor, self.settings.port)
        except Exception as e:
            raise StartFailed(f"--port {self.settings.port!r} is not a server endpoint: {_one_line(e)}") from None
        await self._reach("Redis", self.buffer.start, self.buffer.stop, deadline)
        await self._start_archive(deadline)
        await self._reach("Redis (presence)", self.presence.start, self.presence.stop, deadline)
        await self._reach("Redis (typing relay)", self.relay.start, self.relay.stop, deadline)
        if self.settings.redis:
            await self._reach("the moderation store", self._start_moderation,
                              lambda: Deferred.fromCoroutine(self.moderator.stop()), deadline)
        else:
            await self._start_moderation_degraded(deadline)
        self.flusher.start()
        self._backlog_sampler.start(5.0)
        try:
            self.port = await endpoint.listen(self.site)
        except CannotListenError as e:
            raise StartFailed(_one_line(e)) from None
        self.ready = True
        log.info("anonchat listening on {port}", port=self.settings.port)

    async def _reach(self, what: str, start: Callable[[], Deferred[None]], stop: Callable[[], Deferred[None]],
                     deadline: float) -> None:
        """Start one part, retrying until ``deadline``: a Redis that is
        restarting with us comes up in time; one that is not there fails
        the start instead of hanging it."""
        while True:
            attempt = start()
            attempt.addTimeout(max(deadline - self.reactor.seconds(), 0.0), self.reactor)
            try:
                await attempt
                return
            except Exception as e:
                error = e
            if not self.running:
                raise CancelledError()  # stopped while starting
            await _settled(stop().addTimeout(STOP_WAIT, self.reactor))
            left = deadline - self.reactor.seconds()
            if left <= 0:
                where = f" at {_redis_address(self.settings.redis)}" if self.settings.redis else ""
                why = _one_line(error)
                # a timeout says no more than the line already does
                detail = "" if "TimeoutError" in why or "CancelledError" in why else f": {why}"
                raise StartFailed(f"{what}{where} unreachable for {self.settings.start_timeout:g} s"
                                  f" (--start-timeout){detail}")
            log.warn("{what} not reachable yet ({error}); retrying for {left:.0f} s", what=what,
                     error=_one_line(error), left=left)
            await deferLater(self.reactor, min(RETRY_EVERY, left), lambda: None)

    def _start_moderation(self) -> Deferred[None]:
        async def start() -> None:
            await self.moderator.start()
            self.room.use_rejoin_key(self.moderator.shared_key)

        return Deferred.fromCoroutine(start())

    async def _start_moderation_degraded(self, deadline: float) -> None:
        """Moderation in the database, like the archive: a database that is
        away at start is no reason to stop; moderation comes on with it."""
        attempt = self._start_moderation()
        attempt.addTimeout(max(deadline - self.reactor.seconds(), 0.1), self.reactor)
        try:
            await attempt
        except Exception:
            if not self.running:
                raise CancelledError() from None
            # the database line above already says why
            log.warn("moderation is off until the database answers: bans and mutes are not checked meanwhile")
            self.moderator.start_later(
                RETRY_EVERY * 5, lambda: self.room.use_rejoin_key(self.moderator.shared_key))

    def reload(self) -> None:
        """SIGHUP: read the blocked words file again."""
        self.moderator.reload_blocked_words()

    async def _start_archive(self, deadline: float) -> None:
        attempt = self.archive.start()
        attempt.addTimeout(max(deadline - self.reactor.seconds(), 0.1), self.reactor)
        try:
            await attempt
        except Exception as e:
            if not self.running:
                raise CancelledError() from None
            # Chat works without the database; the flusher retries and
            # the schema is created on its first successful write.
            log.warn("database unavailable at start, running degraded (messages wait in the buffer): {why}",
                     why=_one_line(e))

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and not self.running:
            log.info("anonchat stopped while starting")
            return
        if failure.check(StartFailed):
            self.start_failure = failure.value
            log.critical("anonchat could not start: {why}", why=str(failure.value))
        else:
            # not one of the reasons above: a bug, whose traceback is needed
            self.start_failure = StartFailed(f"{failure.type.__name__}: {_one_line(failure.value)}")
            log.failure("anonchat could not start", failure=failure)
        if self._on_start_failed is not None:
            self._on_start_failed(self.start_failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.ready = False
        if self._starting is not None:
            self._starting.cancel()  # a start still waiting for Redis gives up now
            await self._starting  # its errback logs a failed start
        if self.port is not None:
            stopped = self.port.stopListening()
            self.port = None
            if stopped is not None:
                await stopped
        await self.room.shutdown()
        for session in list(self.sessions):
            session.close("server-shutdown")
        self.sockjs.close_all()
        if self._backlog_sampler.running:
            self._backlog_sampler.stop()
        if self.flusher.running:  # not when the start failed before it
            await self.flusher.stop()
        await DeferredList([self.relay.stop().addTimeout(STOP_WAIT, self.reactor),
                            self.presence.stop().addTimeout(STOP_WAIT, self.reactor),
                            Deferred.fromCoroutine(self.moderator.stop()).addTimeout(STOP_WAIT, self.reactor)],
                           consumeErrors=True)
        await DeferredList([self.buffer.stop(), self.archive.stop()], consumeErrors=True)
        log.info("anonchat stopped")


async def _settled(d: Deferred[Any]) -> None:
    """Wait for ``d``, whatever its outcome."""
    await DeferredList([d], consumeErrors=True)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _redis_address(url: str | None) -> str:
    from anonchat.store.redis_connection import parse_redis_url

    address = parse_redis_url(url or "")
    return f"{address.host}:{address.port}"
