"""Moderation values and rules: sanctions, reports, blocked words, client ids.

A ``client`` is the only handle moderation has on an anonymous user: an
HMAC of the client's address (or access-token subject) under a key every
node shares, so it is stable across nodes and reconnects, yet the address
itself is never stored, shown or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from typing import Any, Iterable

import attrs

from anonchat.chat.message import iso_timestamp

BAN = "ban"
MUTE = "mute"
KINDS = (BAN, MUTE)


def client_id(key: bytes, identity: str) -> str:
    """The opaque, stable id of one address or token subject."""
    return hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


@attrs.frozen
class Sanction:
    """A ban or a mute of one client; ``expires_ms`` None = until lifted."""

    kind: str
    client: str
    created_ms: int
    expires_ms: int | None
    reason: str = ""
    #: The nickname it was aimed at, when it was aimed at one.
    name: str = ""
    id: str = ""

    def in_force(self, now_ms: int) -> bool:
        return self.expires_ms is None or now_ms < self.expires_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "name": self.name or None,
            "reason": self.reason,
            "created": iso_timestamp(self.created_ms),
            "expires": None if self.expires_ms is None else iso_timestamp(self.expires_ms),
        }


@attrs.frozen
class Report:
    """One user's report of one message."""

    message_id: str
    reporter: str
    reason: str
    created_ms: int


@attrs.frozen
class ReportSummary:
    """Everything reported about one message."""

    message_id: str
    count: int
    reasons: tuple[str, ...]
    last_ms: int


def normalize(text: str) -> str:
    """What blocked words are matched on: NFKC, then case folding (so
    full-width, ligatures and case variants all match)."""
    return unicodedata.normalize("NFKC", text).casefold()


class BlockedWords:
    """Words or phrases that chat content may not contain."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.words = tuple(sorted({normalize(w) for w in words if w.strip()}))

    @classmethod
    def parse(cls, text: str) -> BlockedWords:
        """One word or phrase a line; blank lines and ``#`` comments skipped."""
        return cls(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))

    @classmethod
    def load(cls, path: str) -> BlockedWords:
        with open(path, encoding="utf-8") as f:
            return cls.parse(f.read())

    def blocks(self, content: str) -> bool:
        if not self.words:
            return False
        text = normalize(content)
        return any(word in text for word in self.words)


@attrs.frozen
class LogEntry:
    """One moderation action, as the audit log and ``moderation_log`` keep it."""

    action: str
    target: str
    reason: str
    created_ms: int
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "target": self.target, "reason": self.reason,
                "at": iso_timestamp(self.created_ms)}
