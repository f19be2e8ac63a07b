"""The ports the chat layer needs, defined where they are used.

``store/`` implements them (Redis, SQL) and imports ``chat/``, never the
reverse; each has an in-process twin (``InMemoryBuffer``,
``InMemoryPresence``, ``LocalRelay``) and one contract test mixin run
against every implementation (tests/buffer_contract.py, archive_contract.py).
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Interface

from anonchat.chat.message import ChatMessage

FeedListener = Callable[[Sequence[ChatMessage]], None]
ReapedListener = Callable[[Sequence[str]], None]
RelayListener = Callable[[bytes], None]


class BufferUnavailable(Exception):
    """The buffer could not take or give messages right now (e.g. Redis down)."""


class AppendOutcomeUnknown(Exception):
    """An append was sent and its answer lost, and the buffer could not find
    out in time whether it was stored: it may or may not be. Deliberately
    not a BufferUnavailable, which promises "certainly not stored"."""


class ArchiveUnavailable(Exception):
    """The archive could not be reached or refused the transaction."""


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
        when None), oldest first."""

    def read_after(after_id: str, limit: int) -> Deferred[list[ChatMessage]]:
        """Up to ``limit`` messages with ids after ``after_id``, oldest first."""

    def ping() -> Deferred[bool]:
        """True when the database answers now."""


class IPresence(Interface):
    def claim(name: str, since_ms: int) -> Deferred[bool]:
        """Take ``name`` for a user online since ``since_ms``; False if taken."""

    def release(name: str) -> Deferred[None]:
        """The user left."""

    def online() -> Deferred[list[tuple[str, int]]]:
        """Every online user with the time they joined, oldest first."""

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
