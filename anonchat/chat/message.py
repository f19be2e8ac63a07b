"""The chat message value, its JSON shape and the ordering of its ids.

Ids look like Redis stream ids, ``<milliseconds>-<sequence>``, whichever
buffer assigns them, so they sort the same way on every backend; compare
them with :func:`id_key`, never as strings.
"""

from __future__ import annotations

import datetime
import json
from enum import Enum
from typing import Any

import attrs


class MessageType(str, Enum):
    CHAT = "CHAT"
    JOIN = "JOIN"
    LEAVE = "LEAVE"
    #: A moderator removed the message whose id is the DELETE's target.
    DELETE = "DELETE"


#: Each part of an id fits a signed 64-bit integer (the archive's BIGINT,
#: SQLite's INTEGER, Redis's stream ids).
MAX_ID_PART = 2**63 - 1


def id_key(message_id: str) -> tuple[int, int]:
    """The sort key of a message id; raises ValueError for a malformed one."""
    ms, sep, seq = message_id.partition("-")
    if not sep or len(message_id) > 41 or not (ms + seq).isascii() or not ms.isdigit() or not seq.isdigit():
        raise ValueError(f"not a message id: {message_id!r}")
    key = int(ms), int(seq)
    if key[0] > MAX_ID_PART or key[1] > MAX_ID_PART:
        raise ValueError(f"not a message id: {message_id!r}")
    return key


def iso_timestamp(created_ms: int) -> str:
    """ISO-8601 UTC with milliseconds: ``2026-11-24T06:11:54.123Z``."""
    seconds, millis = divmod(created_ms, 1000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


@attrs.frozen
class ChatMessage:
    """One message of the room. ``id`` is empty until the buffer assigns it."""

    type: MessageType
    sender: str
    content: str
    created_ms: int
    id: str = ""

    def with_id(self, message_id: str) -> ChatMessage:
        return attrs.evolve(self, id=message_id)

    @classmethod
    def deletion(cls, target_id: str, created_ms: int) -> ChatMessage:
        """A DELETE: stores keep its target id where content goes (no
        schema of any store changes); on the wire content is empty and
        the id is ``target``."""
        return cls(MessageType.DELETE, "", target_id, created_ms)

    def to_dict(self) -> dict[str, Any]:
        if self.type is MessageType.DELETE:
            return {"id": self.id, "type": "DELETE", "sender": self.sender, "content": "", "target": self.content,
                    "timestamp": iso_timestamp(self.created_ms)}
        return {
            "id": self.id,
            "type": self.type.value,
            "sender": self.sender,
            "content": self.content,
            "timestamp": iso_timestamp(self.created_ms),
        }

    def to_json(self) -> bytes:
        """The wire body: compact UTF-8 JSON, Unicode kept as is."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
