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
