"""The ports the chat layer needs, defined where they are used.

``store/`` implements them (Redis, SQL) and imports ``chat/``, never the
reverse; each has an in-process twin (``InMemoryBuffer``,
``InMemoryPresence``, ``LocalRelay``) and one contract test mixin run
against every implementation (tests/buffer_contract.py, archive_contract.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Interface

from anonchat.chat.message import ChatMessage

if TYPE_CHECKING:
    from anonchat.chat.moderation import LogEntry, Report, ReportSummary, Sanction

FeedListener = Callable[[Sequence[ChatMessage]], None]
ReapedListener = Callable[[Sequence[str]], None]
RelayListener = Callable[[bytes], None]


class BufferUnavailable(Exception):
    """The buffer could not take or give messages right now (e.g. Redis down)."""


class ModerationUnavailable(Exception):
    """The moderation store could not be reached or did not answer in time."""


class AppendOutcomeUnknown(Exception):
    """An append was sent and its answer lost, and the buffer could not find
    out in time whether it was stored: it may or may not be. Deliberately
    not a BufferUnavailable, which promises "certainly not stored"."""


class ArchiveUnavailable(Exception):
    """The archive could not be reached or refused the transaction."""


class ArchiveBusy(ArchiveUnavailable):
    """Too many history reads are already waiting: this one is refused at
    once rather than queued; the caller may retry later (503, Retry-After)."""


class IMessageBuffer(Interface):
    """Ordered, durable-at-once store of recent and not yet archived messages."""

    def start() -> Deferred[None]:
        """Connect and start the ordered feed; fires when ready."""

    def stop() -> Deferred[None]:
        """Stop the feed and close connections; fires when done."""

    def append(message: ChatMessage) -> Deferred[ChatMessage]:
        """Append durably; fires with the message carrying its new id once
        the buffer holds it (Redis acknowledged it). Fails with
        BufferUnavailable only when it is certainly not stored: where the
        answer was lost, the buffer first finds out whether the append
        landed (and then fires with it). When it cannot find out within its
        bound, it fails with AppendOutcomeUnknown."""

    def add_listener(listener: FeedListener) -> None:
        """Deliver every appended message, from every node, to ``listener``
        exactly once, in id order, in batches."""

    def recent(limit: int) -> Deferred[list[ChatMessage]]:
        """The newest ``limit`` messages, oldest first."""

    def read_after(after_id: str, limit: int) -> Deferred[list[ChatMessage] | None]:
        """Up to ``limit`` messages with ids after ``after_id``, oldest first;
        None when ``after_id`` is older than what the buffer still holds
        (the caller must then go to the archive)."""

    def read_before(before_id: str | None, limit: int) -> Deferred[list[ChatMessage]]:
        """The newest ``limit`` messages with ids before ``before_id`` (all
        when None), oldest first."""

    def claim_batch(limit: int) -> Deferred[list[ChatMessage]]:
        """Up to ``limit`` unarchived messages for this node's flusher, oldest
        first, including those a dead node left claimed for too long."""

    def acknowledge(message_ids: Sequence[str]) -> Deferred[None]:
        """These are archived: stop offering them, and trim what is archived
        down to the retained recent window (at once, or within a bounded
        delay the backend documents)."""

    def trim_point() -> Deferred[str | None]:
        """The newest id trimmed away (None if nothing was): everything up to
        it is archived, and ``read_after`` an older id answers None."""

    def backlog() -> Deferred[int]:
        """How many messages are not archived yet."""

    def ping() -> Deferred[bool]:
        """True when the buffer is reachable now."""


class IMessageArchive(Interface):
    """The permanent store (SQL), written only by the flusher."""

    def start() -> Deferred[None]:
        """Open the pool and create or migrate the schema."""

    def stop() -> Deferred[None]:
        """Close the pool."""

    def store(messages: Sequence[ChatMessage]) -> Deferred[None]:
        """Insert in one transaction, idempotent on message id: a message
        stored twice is one row. Fails with ArchiveUnavailable."""

    def read_before(before_id: str | None, limit: int) -> Deferred[list[ChatMessage]]:
        """The newest ``limit`` messages with ids before ``before_id`` (all
        when None), oldest first. Fails with ArchiveUnavailable, or with
        ArchiveBusy when too many reads are waiting already."""

    def erase(message_ids: Sequence[str]) -> Deferred[None]:
        """A moderator deleted these chat messages: erase their content
        (their rows stay, so ids keep their order); reads leave them out.
        Ids not stored (yet) are no error."""

    def read_after(after_id: str, limit: int) -> Deferred[list[ChatMessage]]:
        """Up to ``limit`` messages with ids after ``after_id``, oldest first.
        Fails like ``read_before``."""

    def ping() -> Deferred[bool]:
        """True when the database answers now."""


class IPresence(Interface):
    def claim(name: str, since_ms: int) -> Deferred[bool]:
        """Take ``name`` for a user online since ``since_ms``; False if taken."""

    def release(name: str) -> Deferred[None]:
        """The user left."""

    def online() -> Deferred[list[tuple[str, int]]]:
        """Every online user with the time they joined, oldest first."""

    def linger(name: str, nonce: str, seconds: float) -> Deferred[None]:
        """The user's connection dropped: keep ``name`` online for up to
        ``seconds`` for a rejoin presenting ``nonce``."""

    def resume(name: str, nonce: str) -> Deferred[bool]:
        """A rejoin: end the lingering of ``name`` if ``nonce`` is the one it
        waits for, and make this node its owner. Atomic: True once only."""

    def expire_linger(name: str, nonce: str) -> Deferred[bool]:
        """The grace is over: True (and the lingering ends) if ``name`` still
        waits for ``nonce``; False if it was resumed meanwhile. The caller
        releases the name and writes the LEAVE on True."""

    def set_reaped_listener(listener: ReapedListener) -> None:
        """Called with the names of users whose node died, once each, on
        the node that removed them (so it can write their LEAVEs)."""

    def start() -> Deferred[None]:
        """Begin keeping this node's presence alive."""

    def stop() -> Deferred[None]:
        """Stop; this node's users stay until released or reaped."""


class IRelay(Interface):
    def publish(body: bytes) -> None:
        """Send one event to every node (this one included), best effort."""

    def set_listener(listener: RelayListener) -> None:
        """Receive every event published by any node."""

    def start() -> Deferred[None]:
        """Connect."""

    def stop() -> Deferred[None]:
        """Disconnect."""


class IModerationStore(Interface):
    """Moderation state every node shares: sanctions (bans, mutes), slow
    mode, reports, deleted message ids and the key that makes client ids.
    Redis when Redis is used, the SQL database on the embedded defaults,
    so it survives a node restart. Times are epoch milliseconds."""

    def start() -> Deferred[None]:
        """Connect (and create tables); fires when ready."""

    def stop() -> Deferred[None]:
        """Disconnect."""

    def client_key() -> Deferred[bytes]:
        """The secret every node uses to turn an address into a client id
        (made once, by whichever node asks first, then shared)."""

    def add_sanction(sanction: Sanction) -> Deferred[Sanction]:
        """Store a ban or mute; fires with it carrying its new id."""

    def sanctions(kind: str, now_ms: int) -> Deferred[list[Sanction]]:
        """The ``kind`` ("ban" or "mute") sanctions in force at ``now_ms``,
        newest first (expired ones are gone)."""

    def lift_sanction(kind: str, sanction_id: str) -> Deferred[Sanction | None]:
        """Remove one; fires with it, or None if there was none."""

    def set_slow_mode(seconds: int) -> Deferred[None]:
        """Room-wide: one chat message per user per ``seconds`` (0 = off)."""

    def slow_mode() -> Deferred[int]:
        """The slow-mode interval in seconds (0 = off)."""

    def add_report(report: Report) -> Deferred[bool]:
        """One user's report of one message; False if that reporter already
        reported that message."""

    def reports() -> Deferred[list[ReportSummary]]:
        """Reported messages, newest report first, with their counts."""

    def dismiss_report(message_id: str) -> Deferred[bool]:
        """Forget the reports of one message; False if there were none."""

    def set_name_client(name: str, client: str | None) -> Deferred[None]:
        """Which client holds nickname ``name`` now (None: nobody), so a
        moderator on any node can act on a name."""

    def name_clients(names: Sequence[str]) -> Deferred[dict[str, str]]:
        """The clients of those names that have one."""

    def mark_deleted(message_id: str) -> Deferred[bool]:
        """Remember a deleted message; False if it already was."""

    def deleted_among(message_ids: Sequence[str]) -> Deferred[set[str]]:
        """Which of these ids were deleted."""


class IModerationLog(Interface):
    """The audit log of moderation actions: the archive's ``moderation_log``
    table, whichever store holds the moderation state."""

    def start() -> Deferred[None]:
        """Create the table if needed."""

    def stop() -> Deferred[None]:
        """Close."""

    def record(entry: LogEntry) -> Deferred[LogEntry]:
        """Append one action; fires with it carrying its id. Fails with
        ArchiveUnavailable when the database cannot take it now."""

    def newest(limit: int) -> Deferred[list[LogEntry]]:
        """The newest ``limit`` actions, newest first."""
