"""Polling transports: ``xhr`` and ``jsonp`` (one frame per response), and the send URLs ``xhr_send``, ``jsonp_send``.

A poll is answered by the first frame the session has for it, with a
Content-Length, then the session waits for the next poll (up to the
disconnect delay). Send bodies are bounded by ``max_message_size``; a send
that arrives while the session has paused reading is answered only once
its messages have been read (see ``SockJSSession.pause_reading``).
"""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import parse_qs

from twisted.web.server import NOT_DONE_YET, Request

from anonchat.web.sockjs import framing, responses
from anonchat.web.sockjs.endpoint import Endpoint
from anonchat.web.sockjs.httpchannel import HTTPChannel, serve

#: Callback names a JSONP/htmlfile request may ask for (anything else could inject script).
CALLBACK = re.compile(r"^[a-zA-Z0-9_.-]{1,256}$")


class PollingChannel(HTTPChannel):
    def deliver(self, data: bytes) -> None:
        self.request.setHeader(b"Content-Length", b"%d" % len(data))
        self.request.write(data)
        self.end()


class XhrPollingChannel(PollingChannel):
    def wrap(self, frame: bytes) -> bytes:
        return frame + b"\n"


class JsonpPollingChannel(PollingChannel):
    def wrap(self, frame: bytes) -> bytes:
        callback = callback_of(self.request)
        return callback + b"(" + framing.encode_literal(frame) + b");\r\n"


def callback_of(request: Request) -> bytes:
    """The ``c`` query parameter (the JavaScript callback name), or empty."""
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(b"c") or [b""]
    return values[0]


def callback_error(request: Request) -> bytes | None:
    """A 500 answer when the ``c`` parameter is missing or unsafe, else None."""
    callback = callback_of(request).decode("utf-8", "replace")
    if not callback:
        return responses.error(request, 500, '"callback" parameter required')
    if not CALLBACK.match(callback):
        return responses.error(request, 500, 'invalid "callback" parameter')
    return None


def xhr(endpoint: Endpoint, request: Request, session_id: str) -> object:
    return serve(endpoint, request, session_id, "xhr", responses.JAVASCRIPT, XhrPollingChannel)


def jsonp(endpoint: Endpoint, request: Request, session_id: str) -> object:
    failed = callback_error(request)
    if failed is not None:
        return failed
    return serve(endpoint, request, session_id, "jsonp", responses.JAVASCRIPT, JsonpPollingChannel)


def _read_body(endpoint: Endpoint, request: Request) -> bytes | None:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    body: bytes = content.read(endpoint.options.max_message_size + 1)
    if len(body) > endpoint.options.max_message_size:
        return None
    return body


def _deliver(endpoint: Endpoint, request: Request, session_id: str, payload: bytes | str, ok: bytes) -> object:
    session = endpoint.registry.get(session_id)
    if session is None:
        return responses.not_found(request)
    try:
        messages = framing.decode_array(payload)
    except framing.EmptyPayload:
        return responses.error(request, 500, "Payload expected.")
    except framing.BrokenJSON:
        return responses.error(request, 500, "Broken JSON encoding.")
    if session.holding:
        # The session stopped reading and still holds an earlier send's messages.
        return responses.error(request, 429, "Another send is still being processed.")
    responses.session_headers(request, endpoint.options, responses.TEXT_PLAIN)
    if not ok:
        request.setResponseCode(204)
    session.messages_received(messages)
    if not session.holding:
        return ok
    # Answered once the session has read them all: the client waits meanwhile.
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def answer(_: None) -> None:
        if not gone and not request.finished:
            request.write(ok)
            request.finish()

    session.when_read().addCallback(answer)
    return NOT_DONE_YET


def _send(endpoint: Endpoint, request: Request, session_id: str, ok: bytes,
          payload_of: Callable[[Request, bytes], bytes | str | None]) -> object:
    responses.set_cors(request, endpoint.options)  # errors too, so a browser sees them as errors, not CORS failures
    body = _read_body(endpoint, request)
    if body is None:
        return responses.error(request, 413, "Payload too large.")
    payload = payload_of(request, body)
    if payload is None:
        return responses.error(request, 500, "Broken JSON encoding.")
    return _deliver(endpoint, request, session_id, payload, ok)


def xhr_send(endpoint: Endpoint, request: Request, session_id: str) -> object:
    return _send(endpoint, request, session_id, b"", lambda request, body: body)


def _jsonp_payload(request: Request, body: bytes) -> bytes | str | None:
    """Form-encoded ``d=`` (what the browser's hidden form posts) or a raw body."""
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/x-www-form-urlencoded":
        return body
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    return (form.get("d") or [""])[0]


def jsonp_send(endpoint: Endpoint, request: Request, session_id: str) -> object:
    return _send(endpoint, request, session_id, b"ok", _jsonp_payload)
