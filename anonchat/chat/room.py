"""The chat room: what each destination means, join and leave, and fan-out.

A sent message goes only into the buffer; it reaches subscribers when
the buffer's ordered feed hands it back, so every node delivers the same
messages in the same order and nothing is seen that is not durable.

A resuming subscriber (``x-since-id``) joins the topic only after its
replay (``HistoryReplay``, one per connection at most). The online list
goes out at most once a second and is rendered once per change: under
churn a per-event list would cost O(users) per join for every subscriber.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from itertools import count
from typing import Any, Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.chat.access import AccessDenied, AccessPolicy
from anonchat.chat.fanout import Topic, send_one
from anonchat.chat.message import ChatMessage, MessageType, id_key, iso_timestamp
from anonchat.chat.moderation import Report
from anonchat.chat.moderator import Moderator
from anonchat.chat.nicknames import claim_nickname
from anonchat.chat.payload import ApplicationError, parse_chat_content, parse_report, parse_typing
from anonchat.chat.ports import (
    AppendOutcomeUnknown, BufferUnavailable, IMessageArchive, IMessageBuffer, IPresence, IRelay,
)
from anonchat.chat.readgate import HistoryRate, ReadGate
from anonchat.chat.rejoin import RejoinTicket, RejoinTokens
from anonchat.chat.relay import LocalRelay
from anonchat.chat.replay import HistoryReplay, ReplayFailed
from anonchat.chat.subscriber import Subscriber
from anonchat.logs import ThrottledLog
from anonchat.ratelimit import TokenBucket
from anonchat.stomp.application import DestinationError, IStompApplication, SessionRefused
from anonchat.stomp.session import State, StompSession

log = Logger()
refusals = ThrottledLog(log)  # one line a minute per code; all are counted in /metrics

CHAT_TOPIC = "/topic/chat"
TYPING_TOPIC = "/topic/chat.typing"
USERS_TOPIC = "/topic/chat.users"
ERRORS_QUEUE = "/user/queue/errors"
SEND_MESSAGE = "/app/chat.sendMessage"
SEND_TYPING = "/app/chat.typing"
SEND_REPORT = "/app/chat.report"
REJOIN_HEADER = "x-rejoin-token"
#: Why a session ended that ends its user at once (no rejoin grace).
FINAL_CLOSES = frozenset({"disconnect", "banned", "server-shutdown"})
SINCE_HEADER = "x-since-id"
#: How long a rendered online list may be served to new subscribers.
USERS_CACHE_SECONDS = 1.0
#: Retries of a LEAVE the buffer refused back off up to this (seconds).
MAX_RETRY_DELAY = 5.0


@attrs.frozen
class RoomConfig:
    nickname_prefix: str = "익명"
    max_content: int = 1000
    #: Messages per second per connection; 0 = no limit. Burst is twice.
    rate_limit: float = 20.0
    #: A typing indicator with no update for this long is cleared.
    typing_lapse: float = 5.0
    #: Typing updates per second per connection; past it they are dropped.
    typing_rate: float = 2.0
    #: Messages one x-since-id replay delivers at most.
    max_replay: int = 1000
    #: The online list goes out at most this often (seconds).
    users_interval: float = 1.0
    #: Seconds a dropped user's nickname waits for a rejoin (0 = none).
    rejoin_grace: float = 30.0


@attrs.define(eq=False)
class ChatUser:
    """A connected session's chat identity and per-connection state."""

    name: str
    messages: TokenBucket
    typing_updates: TokenBucket
    error_subscriptions: set[str] = attrs.Factory(set)
    typing_timer: IDelayedCall | None = None
    left: bool = False
    #: The opaque moderation id of its address ("" without moderation).
    client: str = ""
    #: What its current rejoin token carries.
    ticket: RejoinTicket | None = None


@implementer(IStompApplication)
class ChatRoom:
    def __init__(self, buffer: IMessageBuffer, presence: IPresence, clock: IReactorTime,
                 config: RoomConfig = RoomConfig(), rng: random.Random | None = None,
                 archive: IMessageArchive | None = None, relay: IRelay | None = None,
                 moderator: Moderator | None = None, access: AccessPolicy | None = None,
                 rejoin_key: bytes | None = None, history_gate: ReadGate | None = None,
                 history_rate: HistoryRate | None = None) -> None:
        self.buffer = buffer
        self.moderator = moderator
        self.access = access
        #: Admission for replays' history reads, shared with REST.
        self.history_gate = history_gate
        #: Messages per second of history the node serves, shared with REST.
        self.history_rate = history_rate
        self.archive = archive
        self.relay = relay or LocalRelay()
        self.presence = presence
        self.clock = clock
        self.config = config
        self._rng = rng or random.SystemRandom()
        self.chat = Topic(CHAT_TOPIC)
        self.typing = Topic(TYPING_TOPIC)
        self.users = Topic(USERS_TOPIC)
        self._topics = {CHAT_TOPIC: self.chat, TYPING_TOPIC: self.typing, USERS_TOPIC: self.users}
        self._sessions: dict[Subscriber, None] = {}
        #: For metrics: messages durably accepted, and refusals by code.
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        #: The one replay each resuming connection may run.
        self._replays: dict[Subscriber, HistoryReplay] = {}
        self._fed_up_to: tuple[int, int] | None = None
        self._draining = False
        self._rejoin = RejoinTokens(rejoin_key if rejoin_key is not None else self._rng.randbytes(32))
        #: Users whose connection dropped, waiting for a rejoin: grace timers.
        self._lingering: dict[str, tuple[IDelayedCall, RejoinTicket]] = {}
        #: The rendered online list (None: stale), when, and who waits for it.
        self._users_cache: bytes | None = None
        self._users_cached_at = 0.0
        self._users_waiters: list[Deferred[bytes]] | None = None
        self._users_generation = 0
        self._users_timer: IDelayedCall | None = None
        self._users_published_at = float("-inf")
        self._in_flight: set[Deferred[Any]] = set()
        self._event_ids = count(1)
        self._event_prefix = f"e{self._rng.getrandbits(32):08x}"
        presence.set_reaped_listener(self._on_reaped)
        self.relay.set_listener(self._on_typing_event)
        if moderator is not None:
            moderator.set_ban_listener(self._close_banned)

    def _on_typing_event(self, body: bytes) -> None:
        self.typing.publish(self._event_id(), body)

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def _track(self, d: Deferred[Any]) -> None:
        """Keep work that must finish before shutdown completes."""
        self._in_flight.add(d)

        def done(result: object) -> object:
            self._in_flight.discard(d)
            return result

        d.addBoth(done)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- IStompApplication --------------------------------------------------

    def connect(self, session: StompSession, headers: Mapping[str, str]) -> Deferred[Mapping[str, str]]:
        return Deferred.fromCoroutine(self._connect(session, headers))

    async def _connect(self, session: StompSession, headers: Mapping[str, str]) -> Mapping[str, str]:
        if self._draining:
            raise SessionRefused("the server is shutting down; connect again")
        identity = session.client.address
        if self.access is not None:
            try:
                identity = self.access.subject(headers.get("passcode"))
            except AccessDenied:
                raise SessionRefused("a valid access token is required in passcode", "access denied") from None
        client = ""
        if self.moderator is not None:
            client = self.moderator.client_of(identity)
            if self.moderator.ban_of(client) is not None:
                raise SessionRefused("this client is banned", "banned")
        now_ms = self._now_ms()
        name = await self._rejoined(headers.get(REJOIN_HEADER))
        rejoined = name is not None
        if name is None:
            try:
                name = await claim_nickname(self.presence, self.config.nickname_prefix, now_ms, self._rng)
            except Exception as e:
                log.warn("no nickname could be claimed ({error}); refusing the session", error=type(e).__name__)
                raise SessionRefused("the chat is unavailable right now; try again") from None
        if session.state is State.CLOSED or self._draining:
            await self.presence.release(name)
            if rejoined:
                self._append_until_stored(ChatMessage(MessageType.LEAVE, name, "", now_ms))
            raise SessionRefused("session ended while its nickname was being claimed")
        token, ticket = self._rejoin.issue(name)
        rate = self.config.rate_limit
        session.principal = ChatUser(
            name=name,
            messages=TokenBucket(self.clock, rate, 2 * rate),
            typing_updates=TokenBucket(self.clock, self.config.typing_rate, self.config.typing_rate),
            client=client,
            ticket=ticket,
        )
        if self.moderator is not None:
            self._note_name(name, client)
        self._sessions[session] = None
        extra = {"user-name": name, REJOIN_HEADER: token}
        if rejoined:
            return extra  # the same user goes on: no JOIN
        joined = self.buffer.append(ChatMessage(MessageType.JOIN, name, "", now_ms))
        self._track(joined)
        try:
            await joined
        except Exception as e:
            # No JOIN, no session: refuse it rather than pretend it opened.
            log.warn("JOIN not buffered ({error}); refusing the session", error=type(e).__name__)
            session.principal.left = True
            self._sessions.pop(session, None)
            if isinstance(e, AppendOutcomeUnknown):
                self._leave(name)  # the JOIN may have landed: it must not stay without its LEAVE
            else:
                await self.presence.release(name)
            raise SessionRefused("the chat is unavailable right now; try again") from None
        return extra

    def use_rejoin_key(self, key: bytes) -> None:
        """The key every node shares, once it is known (at start)."""
        self._rejoin = RejoinTokens(key)

    async def _rejoined(self, token: str | None) -> str | None:
        """The nickname a genuine, current rejoin token brings back, if it
        is still waiting (on any node); None: a fresh nickname, no error."""
        ticket = self._rejoin.read(token)
        if ticket is None or self.config.rejoin_grace <= 0:
            return None
        try:
            if not await self.presence.resume(ticket.name, ticket.nonce):
                return None
        except Exception as e:
            log.warn("a rejoin could not be checked ({error}); a fresh nickname instead", error=type(e).__name__)
            return None
        lingering = self._lingering.pop(ticket.name, None)
        if lingering is not None and lingering[0].active():
            lingering[0].cancel()
        return ticket.name

    def disconnected(self, session: Subscriber) -> None:
        user: ChatUser | None = session.principal
        if user is None or user.left:
            return
        user.left = True
        self._sessions.pop(session, None)
        self._cancel_replay(session)
        for subscription, destination in session.subscriptions.items():
            topic = self._topics.get(destination)
            if topic is not None:
                topic.remove(session, subscription)
        if user.typing_timer is not None:
            self._set_typing(user, False)
        grace = self.config.rejoin_grace
        if grace > 0 and user.ticket is not None and not self._draining and session.close_reason not in FINAL_CLOSES:
            ticket = user.ticket
            lingering = self.presence.linger(ticket.name, ticket.nonce, grace)
            lingering.addErrback(lambda f: log.warn("could not keep a nickname for a rejoin: {error}",
                                                    error=f.type.__name__))
            self._lingering[ticket.name] = (self.clock.callLater(grace, self._grace_over, ticket), ticket)
            return
        self._leave(user.name)

    def _grace_over(self, ticket: RejoinTicket) -> None:
        """No rejoin in time: the user is gone, unless another node took it."""
        self._lingering.pop(ticket.name, None)
        expired = self.presence.expire_linger(ticket.name, ticket.nonce)

        def decide(still_waiting: bool) -> None:
            if still_waiting:
                self._leave(ticket.name)

        expired.addCallbacks(decide, lambda f: self._leave(ticket.name))
        self._track(expired)

    def _leave(self, name: str) -> None:
        # Released before the LEAVE is appended: every node refreshes its
        # online list when the LEAVE comes through the feed.
        leave = ChatMessage(MessageType.LEAVE, name, "", self._now_ms())
        if self.moderator is not None:
            self._note_name(name, None)
        released = self.presence.release(name)
        released.addErrback(lambda f: log.failure("could not release a nickname", failure=f))
        released.addCallback(lambda _: self._append_until_stored(leave))
        self._track(released)  # shutdown waits for the LEAVE to be appended

    def _on_reaped(self, users: Sequence[str]) -> None:
        """Users of a node that died: they leave, once, from the node that
        noticed."""
        now_ms = self._now_ms()
        for name in users:
            self._append_until_stored(ChatMessage(MessageType.LEAVE, name, "", now_ms))

    def subscribe(self, session: Subscriber, subscription: str, destination: str, headers: Mapping[str, str]) -> None:
        user: ChatUser = session.principal
        if destination == ERRORS_QUEUE:
            user.error_subscriptions.add(subscription)
            return
        topic = self._topics.get(destination)
        if topic is None:
            raise DestinationError(f"unknown destination {destination}")
        since = headers.get(SINCE_HEADER)
        if topic is self.chat and since:
            self._start_replay(session, subscription, since)
            return
        topic.add(session, subscription)
        if topic is self.users:
            self._track(self._send_users(session, subscription))

    def unsubscribe(self, session: Subscriber, subscription: str, destination: str) -> None:
        user: ChatUser = session.principal
        if destination == ERRORS_QUEUE:
            user.error_subscriptions.discard(subscription)
            return
        replay = self._replays.get(session)
        if replay is not None and replay.subscription == subscription:
            self._cancel_replay(session)
        topic = self._topics.get(destination)
        if topic is not None:
            topic.remove(session, subscription)

    def send(self, session: Subscriber, destination: str, body: bytes, receipt: str | None = None) -> Deferred[bool]:
        user: ChatUser = session.principal
        try:
            if destination == SEND_MESSAGE:
                if not user.messages.take():
                    raise ApplicationError("RATE_LIMITED", "too many messages; slow down")
                content = parse_chat_content(body, self.config.max_content)
                if self.moderator is not None:
                    refusal = self.moderator.check_chat(user.client, content)
                    if refusal is not None:
                        raise refusal
                return self._send_chat(session, user, content, receipt)
            if destination == SEND_REPORT:
                message_id, reason = parse_report(body)
                return Deferred.fromCoroutine(self._report_message(session, user, message_id, reason, receipt))
            if destination == SEND_TYPING:
                typing = parse_typing(body)
                if user.typing_updates.take():
                    self._set_typing(user, typing)
                return succeed(True)
        except ApplicationError as error:
            self._report(session, user, error, receipt)
            return succeed(False)
        raise DestinationError(f"cannot send to {destination}")

    # -- chat ---------------------------------------------------------------

    def _send_chat(self, session: Subscriber, user: ChatUser, content: str, receipt: str | None) -> Deferred[bool]:
        d = self.buffer.append(ChatMessage(MessageType.CHAT, user.name, content, self._now_ms()))

        def stored(_: object) -> bool:
            self.accepted += 1
            return True

        def failed(failure: Failure) -> bool:
            if failure.check(ValueError):
                self._report(session, user, ApplicationError("INVALID_TEXT", "content must be valid Unicode text"),
                             receipt)
                return False
            if failure.check(AppendOutcomeUnknown):
                # The buffer could not find out whether it landed: saying
                # NOT_STORED could double it, saying nothing would leave the
                # client waiting for a RECEIPT forever.
                self._report(session, user, ApplicationError(
                    "UNCONFIRMED", "the message may or may not have been stored; check the history before sending "
                    "it again"), receipt)
                return False
            failure.trap(BufferUnavailable)
            log.debug("message not buffered: {error}", error=failure.getErrorMessage())  # the buffer logs outages
            self._report(session, user, ApplicationError("NOT_STORED", "the message could not be stored; send it again"),
                         receipt)
            return False

        return d.addCallbacks(stored, failed)

    def _append_until_stored(self, message: ChatMessage) -> None:
        """A LEAVE must be stored however long the buffer is away: every
        user gets exactly one. Retried with back-off (until shutdown gives up)."""
        self._track(Deferred.fromCoroutine(self._append_retrying(message)))

    async def _append_retrying(self, message: ChatMessage) -> None:
        delay = 0.25
        while True:
            try:
                await self.buffer.append(message)
                return
            except BufferUnavailable:
                pass
            except Exception:
                log.failure("could not buffer the {type} of a session", type=message.type.value)
                return
            if self._draining and self._gave_up:
                log.error("gave up buffering a {type} at shutdown: the buffer is unreachable", type=message.type.value)
                return
            await deferLater(self.clock, delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def on_feed(self, messages: Sequence[ChatMessage]) -> int:
        """The buffer's ordered feed: fan each message out; returns deliveries."""
        bodies = [(m.id, m.to_json()) for m in messages]
        deliveries = self.chat.publish_batch(bodies)
        # After the topic: a replay that goes live here must not get this
        # batch from the topic too.
        if self._replays and messages:
            fed = [(id_key(message_id), message_id, body) for message_id, body in bodies]
            for session, replay in list(self._replays.items()):
                replay.on_feed(fed)
                if replay.cancelled:  # cut as too slow
                    del self._replays[session]
        if messages:
            self._fed_up_to = id_key(messages[-1].id)
            if any(m.type is MessageType.JOIN or m.type is MessageType.LEAVE for m in messages):
                self._users_changed()
        return deliveries

    # -- resume -------------------------------------------------------------------

    def _start_replay(self, session: Subscriber, subscription: str, since: str) -> None:
        try:
            id_key(since)
        except ValueError:
            raise DestinationError(f"invalid {SINCE_HEADER} header") from None
        replay = HistoryReplay(session, subscription, since, clock=self.clock, destination=CHAT_TOPIC,
                               buffer=self.buffer,
                               archive=self.archive, limit=self.config.max_replay, hidden=self.hidden,
                               gate=self.history_gate, rate=self.history_rate,
                               fed_up_to=lambda: self._fed_up_to, go_live=self._replay_done)
        if not session.budget.claim_replay(replay):
            raise DestinationError("a resume is already running on this connection")
        self._replays[session] = replay
        d = Deferred.fromCoroutine(replay.run())
        d.addErrback(self._replay_failed, session)
        self._track(d)

    def _replay_failed(self, failure: Failure, session: Subscriber) -> None:
        if not failure.check(ReplayFailed):
            log.failure("replay failed", failure=failure)
        if session.is_open:
            self._report(session, session.principal, ApplicationError("REPLAY_FAILED", "history could not be replayed"))

    def _replay_done(self, replay: HistoryReplay) -> None:
        session = replay.subscriber
        if self._replays.get(session) is replay:
            del self._replays[session]
        if session.is_open:
            self.chat.add(session, replay.subscription)

    def _cancel_replay(self, session: Subscriber) -> None:
        replay = self._replays.pop(session, None)
        if replay is not None:
            replay.cancel()

    def _report(self, session: Subscriber, user: ChatUser, error: ApplicationError,
                receipt: str | None = None) -> None:
        """An application error on /user/queue/errors; one that answers a
        frame asking for a receipt names it, so the client stops waiting."""
        self.refused[error.code] += 1
        refusals.info(self.clock, error.code, "application error {code} for session {session}", code=error.code,
                      session=session.session_id)
        if not user.error_subscriptions:
            return
        body = error.to_json(receipt)
        extra = (("receipt-id", receipt),) if receipt is not None else ()
        for subscription in user.error_subscriptions:
            send_one(session, ERRORS_QUEUE, subscription, self._event_id(), body, extra)

    def _event_id(self) -> str:
        return f"{self._event_prefix}-{next(self._event_ids)}"

    # -- moderation -----------------------------------------------------------

    def _note_name(self, name: str, client: str | None) -> None:
        assert self.moderator is not None
        d = self.moderator.store.set_name_client(name, client)
        d.addErrback(lambda f: log.warn("could not note a nickname's client: {error}", error=f.type.__name__))

    def _close_banned(self, clients: set[str]) -> None:
        """Every connection of a banned client, on this node, goes (each
        with its LEAVE)."""
        for session in list(self._sessions):
            user: ChatUser = session.principal
            if user.client in clients:
                session.protocol_error("banned", "this client is banned", reason="banned")

    async def find_message(self, message_id: str) -> ChatMessage | None:
        """One message by id, from the buffer or else the archive."""
        ms, seq = id_key(message_id)
        before = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**63 - 1}"
        if ms == 0 and seq == 0:
            return None
        page = await self.buffer.read_after(before, 1)
        if page is None and self.archive is not None:
            page = await self.archive.read_after(before, 1)
        if page and page[0].id == message_id:
            return page[0]
        return None

    async def _report_message(self, session: Subscriber, user: ChatUser, message_id: str, reason: str,
                              receipt: str | None) -> bool:
        assert self.moderator is not None
        message = await self.find_message(message_id)
        if message is None or message.type is MessageType.DELETE:
            self._report(session, user, ApplicationError("NOT_FOUND", "no such message"), receipt)
            return False
        await self.moderator.store.add_report(Report(message_id, user.client, reason, self._now_ms()))
        return True

    async def delete_message(self, message_id: str) -> bool:
        """A moderator removes a message: it is hidden from every read at
        once, and a DELETE naming it goes through the buffer to every
        subscriber, in order. False: no such message."""
        assert self.moderator is not None
        message = await self.find_message(message_id)
        if message is None or message.type is MessageType.DELETE:
            return False
        if await self.moderator.store.mark_deleted(message_id):
            self._append_until_stored(ChatMessage.deletion(message_id, self._now_ms()))
            if self.archive is not None:
                # already archived: erased now, not when the DELETE is next
                # flushed; if the database is away, that flush erases it
                erased = self.archive.erase([message_id])
                erased.addErrback(lambda f: log.warn("a deleted message is erased from the archive later: {error}",
                                                     error=f.type.__name__))
                self._track(erased)
            await self.moderator.record("delete", message_id, "")
        return True

    def hidden(self, message_ids: Sequence[str]) -> Deferred[set[str]]:
        """Which of these messages a moderator deleted."""
        if self.moderator is None or not message_ids:
            return succeed(set())
        return self.moderator.store.deleted_among(message_ids)

    # -- typing ---------------------------------------------------------------

    def _set_typing(self, user: ChatUser, typing: bool) -> None:
        if user.typing_timer is not None and user.typing_timer.active():
            user.typing_timer.cancel()
        user.typing_timer = None
        if typing:
            user.typing_timer = self.clock.callLater(self.config.typing_lapse, self._set_typing, user, False)
        body = json.dumps(
            {"sender": user.name, "typing": typing, "timestamp": iso_timestamp(self._now_ms())}, ensure_ascii=False
        ).encode("utf-8")
        self.relay.publish(body)

    # -- online users -----------------------------------------------------------

    def _users_changed(self) -> None:
        """Someone joined or left: the list goes out at most once per
        ``users_interval``, always the latest."""
        self._users_cache = None
        self._users_generation += 1
        if not len(self.users) or self._users_timer is not None:
            return
        wait = self._users_published_at + self.config.users_interval - self.clock.seconds()
        if wait <= 0:
            self._publish_users()
        else:
            self._users_timer = self.clock.callLater(wait, self._publish_users)

    def _publish_users(self) -> None:
        self._users_timer = None
        self._users_published_at = self.clock.seconds()
        if len(self.users):
            d = self._users_body().addCallback(lambda body: self.users.publish(self._event_id(), body))
            d.addErrback(lambda f: log.failure("could not publish the online list", failure=f))

    def _users_body(self) -> Deferred[bytes]:
        """The online list rendered once per change (and at most a second
        old), shared by everyone who asks meanwhile."""
        if self._users_cache is not None and self.clock.seconds() - self._users_cached_at < USERS_CACHE_SECONDS:
            return succeed(self._users_cache)
        waiter: Deferred[bytes] = Deferred()
        if self._users_waiters is not None:
            self._users_waiters.append(waiter)
            return waiter
        self._users_waiters = [waiter]
        generation = self._users_generation

        def render(online: list[tuple[str, int]]) -> bytes:
            users = [{"name": name, "since": iso_timestamp(since)} for name, since in online]
            body = json.dumps({"users": users, "count": len(users)}, ensure_ascii=False).encode("utf-8")
            if generation == self._users_generation:
                self._users_cache, self._users_cached_at = body, self.clock.seconds()
            return body

        def answer(result: bytes | Failure) -> None:
            waiters, self._users_waiters = self._users_waiters or [], None
            for d in waiters:
                d.callback(result)

        self.presence.online().addCallback(render).addBoth(answer)
        return waiter

    def _send_users(self, session: Subscriber, subscription: str) -> Deferred[object]:
        d = self._users_body().addCallback(lambda body: self.users.send_to(session, subscription, self._event_id(), body))
        return d.addErrback(lambda f: log.failure("could not send the online list", failure=f))

    # -- shutdown ---------------------------------------------------------------

    def shutdown(self, give_up_after: float = 10.0) -> Deferred[None]:
        """Refuse new sessions, close every session (their LEAVEs are
        appended) and wait for the work in flight to reach the buffer; a
        LEAVE the buffer still refuses after ``give_up_after`` seconds is
        logged as lost."""
        self._draining = True
        if self._users_timer is not None and self._users_timer.active():
            self._users_timer.cancel()
        self._users_timer = None
        for session in list(self._sessions):
            self.disconnected(session)
            session.close("server-shutdown")
        for timer, ticket in list(self._lingering.values()):
            timer.cancel()
            self._grace_over(ticket)  # this node will not be there to end it
        give_up = self.clock.callLater(give_up_after, setattr, self, "_gave_up", True)
        return Deferred.fromCoroutine(self._settle(give_up))

    _gave_up = False

    async def _settle(self, give_up: IDelayedCall) -> None:
        while self._in_flight:
            await DeferredList(list(self._in_flight), consumeErrors=True)
        if give_up.active():
            give_up.cancel()
