"""What clients may put in a SEND body, and the application errors for the rest.

Content is checked here, before the buffer, so nothing that cannot be
stored as UTF-8 (a lone surrogate from a JSON escape) ever reaches the
flusher.
"""

from __future__ import annotations

import json
from typing import Any

import attrs


@attrs.frozen
class ApplicationError(Exception):
    """A refusal reported on ``/user/queue/errors``; the connection stays."""

    code: str
    message: str

    def to_json(self, receipt: str | None = None) -> bytes:
        body: dict[str, str] = {"code": self.code, "message": self.message}
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
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise ApplicationError("INVALID_TEXT", "content must be valid Unicode text") from None
    return content


def parse_typing(body: bytes) -> bool:
    """The ``typing`` flag of a ``/app/chat.typing`` body."""
    typing = _json_object(body).get("typing")
    if not isinstance(typing, bool):
        raise ApplicationError("INVALID_TYPING", "typing must be true or false")
    return typing
