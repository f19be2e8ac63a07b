"""What clients may put in a SEND body, and the application errors for the rest.

Content is checked here, before the buffer, so nothing that cannot be
stored as UTF-8 (a lone surrogate from a JSON escape) ever reaches the
flusher.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from anonchat.chat.message import id_key


@attrs.frozen
class ApplicationError(Exception):
    """A refusal reported on ``/user/queue/errors``; the connection stays."""

    code: str
    message: str
    #: Extra fields of the error body (``until``, ``retry_after``).
    details: dict[str, Any] = attrs.field(factory=dict, hash=False)

    def to_json(self, receipt: str | None = None) -> bytes:
        body: dict[str, Any] = {"code": self.code, "message": self.message, **self.details}
        if receipt is not None:
            body["receipt"] = receipt
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApplicationError("INVALID_JSON", "the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise ApplicationError("INVALID_JSON", "the body must be a JSON object")
    return value


def parse_chat_content(body: bytes, max_content: int) -> str:
    """The ``content`` of a ``/app/chat.sendMessage`` body, exactly as sent."""
    content = _json_object(body).get("content")
    if not isinstance(content, str):
        raise ApplicationError("INVALID_CONTENT", "content must be a string")
    if not content.strip():
        raise ApplicationError("EMPTY_CONTENT", "content must not be empty")
    if len(content) > max_content:
        raise ApplicationError("CONTENT_TOO_LONG", f"content is limited to {max_content} characters")
    _check_text(content)
    return content


def _check_text(text: str) -> None:
    """Refuse what cannot be stored as UTF-8 (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApplicationError("INVALID_TEXT", "text must be valid Unicode") from None


def parse_typing(body: bytes) -> bool:
    """The ``typing`` flag of a ``/app/chat.typing`` body."""
    typing = _json_object(body).get("typing")
    if not isinstance(typing, bool):
        raise ApplicationError("INVALID_TYPING", "typing must be true or false")
    return typing


def parse_report(body: bytes) -> tuple[str, str]:
    """A user's report: ``{"id": MESSAGE_ID, "reason": "..."}``."""
    value = _json_object(body)
    message_id, reason = value.get("id"), value.get("reason", "")
    if not isinstance(message_id, str):
        raise ApplicationError("INVALID_REPORT", "a report needs the message id")
    try:
        id_key(message_id)
    except ValueError:
        raise ApplicationError("INVALID_REPORT", "a report needs the message id") from None
    if not isinstance(reason, str) or len(reason) > 500:
        raise ApplicationError("INVALID_REPORT", "the reason must be text of at most 500 characters")
    _check_text(reason)
    return message_id, reason
