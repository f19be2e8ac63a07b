"""This node's side of moderation: checks on every CONNECT and chat SEND,
and the actions a moderator takes.

The shared state (``IModerationStore``) is read into a snapshot once a
second rather than per SEND: a SEND is checked without a round trip, and
a ban made on any node reaches this node's connections within that second
(the listener closes them). Slow mode is kept per client on this node.
"""

from __future__ import annotations

import math
import secrets
from typing import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from anonchat.chat.moderation import BAN, MUTE, BlockedWords, LogEntry, Sanction, client_id
from anonchat.chat.payload import ApplicationError
from anonchat.chat.ports import IModerationLog, IModerationStore

log = Logger()

BanListener = Callable[[set[str]], None]


class Moderator:
    def __init__(self, store: IModerationStore, clock: IReactorTime, *, audit: IModerationLog | None = None,
                 blocked_words_path: str | None = None, refresh_every: float = 1.0) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.blocked_words_path = blocked_words_path
        self.blocked = BlockedWords()
        #: Until the shared key is read (the store may be away at start),
        #: client ids are made with a key of this node's own: such a client
        #: matches no ban, and is moderated by name.
        self._key = secrets.token_bytes(32)
        self.ready = False
        self._bans: dict[str, Sanction] = {}
        self._mutes: dict[str, Sanction] = {}
        self.slow_mode = 0
        #: client -> when it last sent a chat message (for slow mode).
        self._last_sent: dict[str, float] = {}
        self._ban_listener: BanListener | None = None
        self._refresher = LoopingCall(self._refresh_quietly)
        self._refresher.clock = clock
        self._refresh_every = refresh_every
        self._failing = False

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    # -- life -------------------------------------------------------------------

    async def start(self) -> None:
        self.reload_blocked_words()
        await self.store.start()
        if self.audit is not None:
            await self.audit.start()
        self._key = await self.store.client_key()
        await self.refresh()
        self.ready = True
        if not self._refresher.running:
            self._refresher.start(self._refresh_every, now=False)

    def start_later(self, every: float, started: Callable[[], None]) -> None:
        """The store could not be reached at start (the database is down):
        try again every ``every`` seconds until it can; ``started`` then."""
        async def attempt() -> None:
            if self.ready:
                return
            try:
                await self.start()
            except Exception:
                return
            log.info("moderation store reachable again: moderation is on")
            retry.stop()
            started()

        retry = self._retry = LoopingCall(attempt)
        retry.clock = self.clock
        retry.start(every, now=False)

    _retry: LoopingCall | None = None

    async def stop(self) -> None:
        if self._refresher.running:
            self._refresher.stop()
        if self._retry is not None and self._retry.running:
            self._retry.stop()
        await self.store.stop()
        if self.audit is not None:
            await self.audit.stop()

    def set_ban_listener(self, listener: BanListener) -> None:
        """Called with the banned clients after every refresh."""
        self._ban_listener = listener

    def reload_blocked_words(self) -> None:
        """(Re)read --blocked-words; a file that cannot be read keeps the
        words already loaded."""
        if self.blocked_words_path is None:
            return
        try:
            self.blocked = BlockedWords.load(self.blocked_words_path)
        except (OSError, UnicodeDecodeError) as e:
            log.error("cannot read the blocked words file: {error}", error=type(e).__name__)
            return
        log.info("{count} blocked words loaded", count=len(self.blocked.words))

    async def refresh(self) -> None:
        now = self._now_ms()
        bans = await self.store.sanctions(BAN, now)
        mutes = await self.store.sanctions(MUTE, now)
        self.slow_mode = await self.store.slow_mode()
        self._bans = {s.client: s for s in reversed(bans)}
        self._mutes = {s.client: s for s in reversed(mutes)}
        horizon = self.clock.seconds() - self.slow_mode
        self._last_sent = {c: t for c, t in self._last_sent.items() if t > horizon}
        if self._bans and self._ban_listener is not None:
            self._ban_listener(set(self._bans))

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as e:
            if not self._failing:
                log.warn("moderation state not refreshed: {error}", error=type(e).__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("moderation state refreshed again")
            self._failing = False

    # -- checks -----------------------------------------------------------------

    @property
    def shared_key(self) -> bytes:
        """The secret every node shares (client ids, rejoin tokens)."""
        return self._key

    def client_of(self, identity: str) -> str:
        """The opaque client id of an address or token subject."""
        return client_id(self._key, identity)

    def ban_of(self, client: str) -> Sanction | None:
        ban = self._bans.get(client)
        return ban if ban is not None and ban.in_force(self._now_ms()) else None

    def check_chat(self, client: str, content: str) -> ApplicationError | None:
        """Why this chat message may not go (None: it may); a message that
        may go takes this client's slow-mode slot."""
        mute = self._mutes.get(client)
        if mute is not None and mute.in_force(self._now_ms()):
            until = None if mute.expires_ms is None else mute.to_dict()["expires"]
            return ApplicationError("MUTED", "you are muted", {"until": until})
        if self.blocked.blocks(content):
            return ApplicationError("BLOCKED_CONTENT", "the message contains a blocked word")
        if self.slow_mode:
            now = self.clock.seconds()
            last = self._last_sent.get(client)
            if last is not None and now - last < self.slow_mode:
                wait = math.ceil(self.slow_mode - (now - last))
                return ApplicationError("SLOW_MODE", f"slow mode: one message every {self.slow_mode} s",
                                        {"retry_after": wait})
            self._last_sent[client] = now
        return None

    # -- actions ------------------------------------------------------------------

    async def sanction(self, kind: str, client: str, minutes: float, reason: str, name: str = "") -> Sanction:
        now = self._now_ms()
        expires = None if minutes <= 0 else now + int(minutes * 60_000)
        stored = await self.store.add_sanction(Sanction(kind, client, now, expires, reason, name))
        await self.record(kind, name or client, reason)
        await self.refresh()
        return stored

    async def lift(self, kind: str, sanction_id: str) -> Sanction | None:
        lifted = await self.store.lift_sanction(kind, sanction_id)
        if lifted is not None:
            await self.record(f"un{kind}", lifted.name or lifted.client, "")
            await self.refresh()
        return lifted

    async def set_slow_mode(self, seconds: int) -> None:
        await self.store.set_slow_mode(seconds)
        await self.record("slow-mode", str(seconds), "")
        await self.refresh()

    async def record(self, action: str, target: str, reason: str) -> None:
        """The audit log; an action is not undone because the log is down."""
        if self.audit is None:
            return
        try:
            await self.audit.record(LogEntry(action, target, reason, self._now_ms()))
        except Exception as e:
            log.error("moderation action {action} not written to the log: {error}", action=action,
                      error=type(e).__name__)

    def names_of(self, names: Sequence[str]) -> Deferred[dict[str, str]]:
        return self.store.name_clients(names)
