"""SockJS 0.3.3 framing, sans-IO: the frames the server sends and the payloads it accepts.

An outbound STOMP frame becomes a JSON string literal once per ``Outbound``
(its ``Literals`` encoding, cached there), so a broadcast costs one JSON encoding in all.
Lone surrogates pass through as ``surrogatepass`` bytes in both directions:
the STOMP layer, not the carrier, decides that such text is refused.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

from anonchat.stomp.outbound import Outbound

OPEN = b"o"
HEARTBEAT = b"h"

#: Characters the SockJS client needs escaped even inside a valid JSON string
#: (browsers and proxies mangle them); the set sockjs-node escapes.
_ESCAPABLE = re.compile("[\x00-\x1f\ud800-\udfff\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufeff\ufff0-\uffff]")


class PayloadError(ValueError):
    """A client payload that is not what the transport accepts."""


class EmptyPayload(PayloadError):
    """No payload at all (HTTP: ``500 Payload expected.``)."""


class BrokenJSON(PayloadError):
    """A payload that is not JSON of the expected shape (HTTP: ``500 Broken JSON encoding.``)."""


def _escape(match: re.Match[str]) -> str:
    return "\\u%04x" % ord(match.group(0))


def quote(text: str) -> str:
    """``text`` as a JSON string literal, with the SockJS escapes applied."""
    return _ESCAPABLE.sub(_escape, json.dumps(text, ensure_ascii=False))


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


def encode_literal(data: bytes) -> bytes:
    """The UTF-8 JSON string literal of one message given as UTF-8 bytes."""
    return quote(_decode_text(data)).encode("utf-8", "surrogatepass")


class Literals:
    """Outbound's encoding for SockJS: each frame a JSON string literal, a
    batch's literals joined as array elements. JSON escapes character by
    character, so a literal splits around any whole part of its text."""

    separator = b","

    @staticmethod
    def encode(data: bytes) -> bytes:
        return encode_literal(data)

    @staticmethod
    def around(head: bytes, tail: bytes, line_length: int) -> tuple[bytes, bytes]:
        return encode_literal(head)[:-1], encode_literal(tail)[1:]

    @staticmethod
    def inner(line: bytes) -> bytes:
        return encode_literal(line)[1:-1]


LITERALS = Literals()


def literal(out: Outbound) -> bytes:
    """``encode_literal(out.data)``, computed once per ``Outbound``; for a
    batch, its frames' literals joined as array elements."""
    return out.encoded(LITERALS)


def array_frame(literals: Iterable[bytes]) -> bytes:
    """``a[...]`` from already encoded string literals."""
    return b"a[" + b",".join(literals) + b"]"


def close_frame(code: int, reason: str) -> bytes:
    """``c[code,"reason"]``."""
    return b"c[%d,%s]" % (code, quote(reason).encode("utf-8"))


def message_bytes(message: str) -> bytes:
    """One decoded client message as the bytes handed to the STOMP session."""
    return message.encode("utf-8", "surrogatepass")


def _loads(payload: bytes | str) -> object:
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # RecursionError: nesting deeper than the decoder's stack (``[`` * 5000
        # is a 5 KB payload) is broken JSON too, not a server error.
        raise BrokenJSON(str(e)) from None


def decode_array(payload: bytes | str) -> list[str]:
    """The messages of an HTTP send payload: a JSON array of strings."""
    if not payload:
        raise EmptyPayload("empty payload")
    value = _loads(payload)
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise BrokenJSON("not an array of strings")
    return value


def decode_websocket(payload: bytes | str) -> list[str]:
    """The messages of one WebSocket message: a JSON array of strings or one string.

    An empty message carries nothing and is ignored, as the protocol asks.
    """
    if not payload:
        return []
    value = _loads(payload)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return value
    raise BrokenJSON("not a string or an array of strings")
