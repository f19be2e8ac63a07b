"""The JSON endpoints: recent messages, history, online users (health is ``health.py``).

History reads the buffer before the archive: a message the flusher moves
in between is then still in one of the two reads (the archive only
grows), so a page never has a hole.
"""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from anonchat.chat.message import ChatMessage, iso_timestamp
from anonchat.chat.message import id_key
from anonchat.chat.ports import IPresence
from anonchat.chat.ports import IMessageArchive, IMessageBuffer
from anonchat.web.addresslimits import AddressLimits
from anonchat.web.origins import CorsPolicy

log = Logger()

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class BadRequest(Exception):
    pass


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _arg(request: Request, name: str) -> str | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode())
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{name} is not UTF-8") from None


def parse_limit(request: Request) -> int:
    raw = _arg(request, "limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # isdigit() alone also takes "²", which int() refuses
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_message_id(request: Request, name: str) -> str | None:
    raw = _arg(request, name)
    if raw is None or raw == "":
        return None
    try:
        id_key(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a message id") from None
    return raw


class JsonResource(Resource):
    """A GET endpoint whose handler is a coroutine returning (status, body)."""

    isLeaf = True

    def __init__(self, handler: Callable[[Request], Awaitable[tuple[int, Any]]], cors: CorsPolicy) -> None:
        super().__init__()
        self._handler = handler
        self._cors = cors

    def render_OPTIONS(self, request: Request) -> bytes:
        if not self._cors.permits(request):
            request.setResponseCode(403)
            return b""
        self._cors.preflight(request, b"GET, OPTIONS", 31536000)
        return b""

    def render_GET(self, request: Request) -> int:
        if not self._cors.permits(request):
            self._finish(request, 403, {"error": "origin not allowed"})
            return NOT_DONE_YET
        self._cors.apply(request)
        d = Deferred.fromCoroutine(self._run(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _run(self, request: Request) -> None:
        try:
            status, body = await self._handler(request)
        except BadRequest as e:
            status, body = 400, {"error": str(e)}
        self._finish(request, status, body)

    def _failed(self, failure: Failure, request: Request) -> None:
        log.failure("{path} failed", failure=failure, path=request.path)
        self._finish(request, 503, {"error": "temporarily unavailable"})

    @staticmethod
    def _finish(request: Request, status: int, body: Any) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json;charset=UTF-8")
        request.setHeader("Cache-Control", "no-store")
        request.write(_json_bytes(body))
        request.finish()


class RateLimitedApi(Resource):
    """``/api``: every request under it first takes a token from its client
    address's budget (``--api-rate``); past it, 429 with ``Retry-After``."""

    def __init__(self, limits: AddressLimits, client_address: Callable[[Request], str], cors: CorsPolicy) -> None:
        super().__init__()
        self._limits = limits
        self._client_address = client_address
        self._cors = cors

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        wait = self._limits.take_request(self._client_address(request))
        if wait is not None:
            return TooManyRequests(wait, self._cors)
        return super().getChildWithDefault(path, request)  # type: ignore[no-any-return]


class TooManyRequests(Resource):
    isLeaf = True

    def __init__(self, retry_after: int, cors: CorsPolicy) -> None:
        super().__init__()
        self._retry_after = retry_after
        self._cors = cors

    def render(self, request: Request) -> bytes:
        if self._cors.permits(request):
            self._cors.apply(request)
        request.setResponseCode(429)
        request.setHeader("Retry-After", str(self._retry_after))
        request.setHeader("Content-Type", "application/json;charset=UTF-8")
        request.setHeader("Cache-Control", "no-store")
        return _json_bytes({"error": "too many requests", "retry_after": self._retry_after})


def messages_json(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.to_dict() for m in messages]


class Api:
    """The handlers, bound to the stores they read."""

    def __init__(self, buffer: IMessageBuffer, archive: IMessageArchive, presence: IPresence) -> None:
        self.buffer = buffer
        self.archive = archive
        self.presence = presence

    async def recent(self, request: Request) -> tuple[int, Any]:
        limit = parse_limit(request)
        return 200, messages_json(await self.buffer.recent(limit))

    async def history(self, request: Request) -> tuple[int, Any]:
        limit = parse_limit(request)
        before = parse_message_id(request, "before")
        buffered = await self.buffer.read_before(before, limit)
        archived = await self.archive.read_before(before, limit)
        merged = {m.id: m for m in archived}
        merged.update((m.id, m) for m in buffered)
        page = sorted(merged.values(), key=lambda m: id_key(m.id))[-limit:]
        next_before = page[0].id if len(page) == limit else None
        return 200, {"messages": messages_json(page), "next_before": next_before}

    async def users(self, request: Request) -> tuple[int, Any]:
        online = await self.presence.online()
        users = [{"name": name, "since": iso_timestamp(since)} for name, since in online]
        return 200, {"users": users, "count": len(users)}
