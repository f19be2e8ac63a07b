"""The chat room: what each destination means, join and leave, and fan-out.

A sent message goes only into the buffer; it reaches subscribers when
the buffer's ordered feed hands it back, so every node delivers the same
messages in the same order and nothing is seen that is not durable.

A resuming subscriber (``x-since-id``) joins the topic only after its
replay: meanwhile the feed queues for it, and the queue is delivered
past the replay's last id, so there is no gap and no duplicate.
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
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.chat.fanout import Topic, send_one
from anonchat.chat.message import ChatMessage, MessageType, id_key, iso_timestamp
from anonchat.chat.nicknames import claim_nickname
from anonchat.chat.ports import BufferUnavailable, IMessageArchive, IMessageBuffer, IPresence, IRelay
from anonchat.chat.payload import ApplicationError, parse_chat_content, parse_typing
from anonchat.chat.ratelimit import TokenBucket
from anonchat.chat.relay import LocalRelay
from anonchat.logs import ThrottledLog
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
SINCE_HEADER = "x-since-id"
REPLAY_PAGE = 500


@attrs.frozen
class RoomConfig:
    nickname_prefix: str = "익명"
    max_content: int = 1000
    #: Messages per second per connection; 0 = no limit. Burst is twice.
    rate_limit: float = 20.0
    #: A typing indicator with no update for this long is cleared.
    typing_lapse: float = 5.0


@attrs.define(eq=False)
class ChatUser:
    """A connected session's chat identity and per-connection state."""

    name: str
    since_ms: int
    messages: TokenBucket
    typing_updates: TokenBucket
    error_subscriptions: set[str] = attrs.Factory(set)
    typing_timer: IDelayedCall | None = None
    left: bool = False


@implementer(IStompApplication)
class ChatRoom:
    def __init__(self, buffer: IMessageBuffer, presence: IPresence, clock: IReactorTime,
                 config: RoomConfig = RoomConfig(), rng: random.Random | None = None,
                 archive: IMessageArchive | None = None, relay: IRelay | None = None) -> None:
        self.buffer = buffer
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
        self._sessions: dict[StompSession, None] = {}
        #: For metrics: messages durably accepted, and refusals by code.
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        #: Live messages held for subscribers still replaying history.
        self._replaying: dict[tuple[StompSession, str], list[ChatMessage]] = {}
        #: Replays that read further than the feed has delivered (with Redis
        #: the feed is another connection, and can lag): the last id read.
        #: They go live once the feed passes it, or that part comes twice.
        self._awaiting_feed: dict[tuple[StompSession, str], str] = {}
        self._fed_up_to: tuple[int, int] | None = None
        self._in_flight: set[Deferred[Any]] = set()
        self._event_ids = count(1)
        self._event_prefix = f"e{self._rng.getrandbits(32):08x}"
        presence.set_reaped_listener(self._on_reaped)
        self.relay.set_listener(self._on_typing_event)

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

    def connect(self, session: StompSession) -> Deferred[Mapping[str, str]]:
        return Deferred.fromCoroutine(self._connect(session))

    async def _connect(self, session: StompSession) -> Mapping[str, str]:
        now_ms = self._now_ms()
        try:
            name = await claim_nickname(self.presence, self.config.nickname_prefix, now_ms, self._rng)
        except Exception as e:
            log.warn("no nickname could be claimed ({error}); refusing the session", error=type(e).__name__)
            raise SessionRefused("the chat is unavailable right now; try again") from None
        if session.state is State.CLOSED:
            await self.presence.release(name)
            raise SessionRefused("session ended while its nickname was being claimed")
        rate = self.config.rate_limit
        session.principal = ChatUser(
            name=name,
            since_ms=now_ms,
            messages=TokenBucket(self.clock, rate, 2 * rate),
            typing_updates=TokenBucket(self.clock, rate, 2 * rate),
        )
        self._sessions[session] = None
        joined = self.buffer.append(ChatMessage(MessageType.JOIN, name, "", now_ms))
        self._track(joined)
        try:
            await joined
        except Exception as e:
            # No JOIN, no session: refuse it rather than pretend it opened.
            log.warn("JOIN not buffered ({error}); refusing the session", error=type(e).__name__)
            session.principal.left = True
            self._sessions.pop(session, None)
            await self.presence.release(name)
            raise SessionRefused("the chat is unavailable right now; try again") from None
        return {"user-name": name}

    def disconnected(self, session: StompSession) -> None:
        user: ChatUser | None = session.principal
        if user is None or user.left:
            return
        user.left = True
        self._sessions.pop(session, None)
        for subscription, destination in session.subscriptions.items():
            self._replaying.pop((session, subscription), None)
            self._awaiting_feed.pop((session, subscription), None)
            topic = self._topics.get(destination)
            if topic is not None:
                topic.remove(session, subscription)
        if user.typing_timer is not None:
            self._set_typing(user, False)
        # Released before the LEAVE is appended: every node refreshes its
        # online list when the LEAVE comes through the feed.
        leave = ChatMessage(MessageType.LEAVE, user.name, "", self._now_ms())
        released = self.presence.release(user.name)
        released.addErrback(lambda f: log.failure("could not release a nickname", failure=f))
        released.addCallback(lambda _: self._append(leave))
        self._track(released)

    def _on_reaped(self, users: Sequence[str]) -> None:
        """Users of a node that died: they leave, once, from the node that
        noticed."""
        now_ms = self._now_ms()
        for name in users:
            self._append(ChatMessage(MessageType.LEAVE, name, "", now_ms))

    def subscribe(self, session: StompSession, subscription: str, destination: str, headers: Mapping[str, str]) -> None:
        user: ChatUser = session.principal
        if destination == ERRORS_QUEUE:
            user.error_subscriptions.add(subscription)
            return
        topic = self._topics.get(destination)
        if topic is None:
            raise DestinationError(f"unknown destination {destination}")
        since = headers.get(SINCE_HEADER)
        if topic is self.chat and since:
            try:
                id_key(since)
            except ValueError:
                raise DestinationError(f"invalid {SINCE_HEADER} header") from None
            self._replaying[(session, subscription)] = []
            self._track(Deferred.fromCoroutine(self._replay(session, subscription, since)))
            return
        topic.add(session, subscription)
        if topic is self.users:
            self._track(self._send_users(session, subscription))

    def unsubscribe(self, session: StompSession, subscription: str) -> None:
        user: ChatUser = session.principal
        destination = session.subscriptions.get(subscription)
        if destination == ERRORS_QUEUE:
            user.error_subscriptions.discard(subscription)
            return
        self._replaying.pop((session, subscription), None)
        self._awaiting_feed.pop((session, subscription), None)
        topic = self._topics.get(destination or "")
        if topic is not None:
            topic.remove(session, subscription)

    def send(self, session: StompSession, destination: str, body: bytes) -> Deferred[bool]:
        user: ChatUser = session.principal
        try:
            if destination == SEND_MESSAGE:
                if not user.messages.take():
                    raise ApplicationError("RATE_LIMITED", "too many messages; slow down")
                content = parse_chat_content(body, self.config.max_content)
                return self._send_chat(session, user, content)
            if destination == SEND_TYPING:
                typing = parse_typing(body)
                if user.typing_updates.take():
                    self._set_typing(user, typing)
                return succeed(True)
        except ApplicationError as error:
            self._report(session, user, error)
            return succeed(False)
        raise DestinationError(f"cannot send to {destination}")

    # -- chat ---------------------------------------------------------------

    def _send_chat(self, session: StompSession, user: ChatUser, content: str) -> Deferred[bool]:
        d = self.buffer.append(ChatMessage(MessageType.CHAT, user.name, content, self._now_ms()))

        def stored(_: object) -> bool:
            self.accepted += 1
            return True

        def failed(failure: Failure) -> bool:
            if failure.check(ValueError):
                self._report(session, user, ApplicationError("INVALID_TEXT", "content must be valid Unicode text"))
                return False
            failure.trap(BufferUnavailable)
            log.debug("message not buffered: {error}", error=failure.getErrorMessage())  # the buffer logs outages
            self._report(session, user, ApplicationError("NOT_STORED", "the message could not be stored; send it again"))
            return False

        return d.addCallbacks(stored, failed)

    def _append(self, message: ChatMessage) -> None:
        d = self.buffer.append(message)
        d.addErrback(lambda f: log.failure("could not buffer {type} of a session", failure=f, type=message.type.value))
        self._track(d)

    def on_feed(self, messages: Sequence[ChatMessage]) -> int:
        """The buffer's ordered feed: fan each message out; returns deliveries."""
        for held in self._replaying.values():
            held.extend(messages)
        deliveries = self.chat.publish_batch([(m.id, m.to_json()) for m in messages])
        if any(m.type is not MessageType.CHAT for m in messages):
            self._publish_users()
        if messages:
            self._fed_up_to = fed = id_key(messages[-1].id)
            for key, read in list(self._awaiting_feed.items()):
                if fed >= id_key(read):
                    self._go_live(key, read)
        return deliveries

    async def _replay(self, session: StompSession, subscription: str, since: str) -> None:
        key = (session, subscription)
        cursor = since
        read: str | None = None  # the newest id the replay read
        try:
            while key in self._replaying:
                page = await self.buffer.read_after(cursor, REPLAY_PAGE)
                caught_up = page is not None and len(page) < REPLAY_PAGE
                if page is None:
                    # Older than the buffer holds: from the archive, but only
                    # up to the trim point. Past it another node may have
                    # archived a later batch before an earlier one, and the
                    # buffer still holds everything there.
                    trimmed = await self.buffer.trim_point()
                    archived = await self.archive.read_after(cursor, REPLAY_PAGE) if self.archive else []
                    page = [m for m in archived if trimmed is None or id_key(m.id) <= id_key(trimmed)]
                    if not page:
                        if trimmed is None:
                            break  # nothing was trimmed after all: nothing to replay
                        # Trimmed yet not archived cannot happen (trimming
                        # follows archiving); should it, go on from the buffer.
                        log.warn("replay found the archive short of the trim point {trimmed}", trimmed=trimmed)
                        cursor = trimmed
                        continue
                for message in page:
                    # Paced by the socket: a long gap must not overflow the
                    # client's send buffer and get it cut as too slow.
                    await session.when_writable()
                    if key not in self._replaying or session.state is not State.CONNECTED:
                        return
                    self.chat.send_to(session, subscription, message.id, message.to_json())
                if page:
                    cursor = read = page[-1].id
                if caught_up:
                    break
        except Exception:
            log.failure("replay after {since} failed", since=since)
            self._report(session, session.principal, ApplicationError("REPLAY_FAILED", "history could not be replayed"))
        if key not in self._replaying:
            return
        fed = self._fed_up_to
        if read is not None and session.state is State.CONNECTED and (fed is None or fed < id_key(read)):
            self._awaiting_feed[key] = read  # on_feed calls _go_live
            return
        self._go_live(key, cursor)

    def _go_live(self, key: tuple[StompSession, str], cursor: str) -> None:
        """The held live messages past ``cursor``, then the topic."""
        session, subscription = key
        self._awaiting_feed.pop(key, None)
        held = self._replaying.pop(key, None)
        if held is None or session.state is not State.CONNECTED:
            return
        last = id_key(cursor)
        for message in held:
            if id_key(message.id) > last:
                self.chat.send_to(session, subscription, message.id, message.to_json())
        self.chat.add(session, subscription)

    def _report(self, session: StompSession, user: ChatUser, error: ApplicationError) -> None:
        self.refused[error.code] += 1
        refusals.info(self.clock, error.code, "application error {code} for session {session}", code=error.code,
                      session=session.session_id)
        if not user.error_subscriptions:
            return
        body = error.to_json()
        for subscription in user.error_subscriptions:
            send_one(session, ERRORS_QUEUE, subscription, self._event_id(), body)

    def _event_id(self) -> str:
        return f"{self._event_prefix}-{next(self._event_ids)}"

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

    def _users_body(self) -> Deferred[bytes]:
        def render(online: list[tuple[str, int]]) -> bytes:
            users = [{"name": name, "since": iso_timestamp(since)} for name, since in online]
            return json.dumps({"users": users, "count": len(users)}, ensure_ascii=False).encode("utf-8")

        return self.presence.online().addCallback(render)

    def _publish_users(self) -> None:
        if len(self.users):
            d = self._users_body().addCallback(lambda body: self.users.publish(self._event_id(), body))
            d.addErrback(lambda f: log.failure("could not publish the online list", failure=f))

    def _send_users(self, session: StompSession, subscription: str) -> Deferred[object]:
        d = self._users_body().addCallback(lambda body: self.users.send_to(session, subscription, self._event_id(), body))
        return d.addErrback(lambda f: log.failure("could not send the online list", failure=f))

    # -- shutdown ---------------------------------------------------------------

    def shutdown(self) -> Deferred[None]:
        """Close every session (their LEAVEs are appended) and wait for the
        work in flight to reach the buffer."""
        for session in list(self._sessions):
            self.disconnected(session)
            session.close("server-shutdown")
        return Deferred.fromCoroutine(self._settle())

    async def _settle(self) -> None:
        while self._in_flight:
            await DeferredList(list(self._in_flight), consumeErrors=True)
