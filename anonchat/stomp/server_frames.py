"""The frames a server sends, built in one place so every path agrees."""

from __future__ import annotations

from anonchat.stomp.frame import Frame
from anonchat.stomp.serializer import serialize

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


def message_frame(destination: str, subscription: str, message_id: str, body: bytes, version: str,
                  extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    return serialize(
        Frame(
            "MESSAGE",
            (
                ("destination", destination),
                ("content-type", JSON_CONTENT_TYPE),
                ("subscription", subscription),
                ("message-id", message_id),
            ) + extra + (("content-length", str(len(body))),),
            body,
        ),
        version,
    )


#: A subscription value no header can hold (it has no special character
#: and is never a real id), marking where a subscription header goes.
_SUBSCRIPTION_SLOT = "\x01sub\x01"


def message_frame_parts(destination: str, message_id: str, body: bytes, version: str) -> tuple[bytes, bytes]:
    """``message_frame`` in two halves around its ``subscription`` header
    line: a broadcast is serialized once, and each group of subscribers
    gets ``head + header_line("subscription", id) + tail``, a join instead
    of a serialization (clients pick their subscription ids freely, so a
    room may hold many)."""
    whole = message_frame(destination, _SUBSCRIPTION_SLOT, message_id, body, version)
    head, _, tail = whole.partition(b"subscription:" + _SUBSCRIPTION_SLOT.encode() + b"\n")
    return head, tail


def receipt_frame(receipt_id: str, version: str) -> bytes:
    return serialize(Frame("RECEIPT", (("receipt-id", receipt_id),)), version)


def error_frame(message: str, detail: str, version: str, *, receipt_id: str | None = None,
                extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = detail.encode("utf-8")
    headers: tuple[tuple[str, str], ...] = (("message", message),) + extra
    if receipt_id is not None:
        headers += (("receipt-id", receipt_id),)
    headers += (("content-type", "text/plain;charset=UTF-8"), ("content-length", str(len(body))))
    return serialize(Frame("ERROR", headers, body), version)
