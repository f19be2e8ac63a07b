"""The JSON endpoints: recent messages, history, online users (health is ``health.py``).

History reads the buffer before the archive: a message the flusher moves
in between is then still in one of the two reads (the archive only
grows), so a page never has a hole.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from anonchat.chat.message import ChatMessage, id_key, iso_timestamp
from anonchat.chat.ports import ArchiveUnavailable, IMessageArchive, IMessageBuffer, IPresence
from anonchat.chat.readgate import HistoryRate, ReadGate
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
            finish_json(request, 403, {"error": "origin not allowed"})
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
        except ArchiveUnavailable as e:
            # busy (too many history reads waiting) or down: try again soon
            log.debug("{path}: the archive is unavailable ({error})", path=request.path, error=type(e).__name__)
            request.setHeader("Retry-After", "1")
            status, body = 503, {"error": "temporarily unavailable"}
        finish_json(request, status, body)

    def _failed(self, failure: Failure, request: Request) -> None:
        log.failure("{path} failed", failure=failure, path=request.path)
        finish_json(request, 503, {"error": "temporarily unavailable"})



def finish_json(request: Request, status: int, body: Any) -> None:
    """Answer an asynchronous JSON request (204: no body), unless the client
    is gone already."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader("Cache-Control", "no-store")
    if status != 204:
        request.setHeader("Content-Type", "application/json;charset=UTF-8")
        request.write(_json_bytes(body))
    request.finish()


#: Why a REST request may not go on: (status, error message), or None.
Admission = Callable[[Request], "tuple[int, str] | None"]


class RateLimitedApi(Resource):
    """``/api``: every request under it first takes a token from its client
    address's budget (``--api-rate``; past it, 429 with ``Retry-After``),
    then, but for the ``open`` children, passes ``admission`` (access
    token, bans)."""

    def __init__(self, limits: AddressLimits, client_address: Callable[[Request], str], cors: CorsPolicy,
                 admission: Admission | None = None, open: frozenset[bytes] = frozenset()) -> None:
        super().__init__()
        self._limits = limits
        self._client_address = client_address
        self._cors = cors
        self._admission = admission
        self._open = open

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        wait = self._limits.take_request(self._client_address(request))
        if wait is not None:
            return Refusal(429, {"error": "too many requests", "retry_after": wait}, self._cors,
                           {"Retry-After": str(wait)})
        if self._admission is not None and path not in self._open:
            refused = self._admission(request)
            if refused is not None:
                status, message = refused
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
                return Refusal(status, {"error": message}, self._cors, headers)
        return super().getChildWithDefault(path, request)  # type: ignore[no-any-return]

    def getChild(self, path: bytes, request: Request) -> Resource:
        """Nothing at ``path`` (``admin`` too, without ``--admin-token``):
        a JSON 404 like every other answer under ``/api``."""
        return Refusal(404, {"error": "not found"}, self._cors, {})


class Refusal(Resource):
    """A JSON error answered to any method."""

    isLeaf = True

    def __init__(self, status: int, body: Any, cors: CorsPolicy, headers: dict[str, str]) -> None:
        super().__init__()
        self._status = status
        self._body = body
        self._cors = cors
        self._headers = headers

    def render(self, request: Request) -> bytes:
        if self._cors.permits(request):
            self._cors.apply(request)
        request.setResponseCode(self._status)
        for name, value in self._headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json;charset=UTF-8")
        request.setHeader("Cache-Control", "no-store")
        return _json_bytes(self._body)


def messages_json(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.to_dict() for m in messages]


class Api:
    """The handlers, bound to the stores they read."""

    def __init__(self, buffer: IMessageBuffer, archive: IMessageArchive, presence: IPresence,
                 hidden: Callable[[Sequence[str]], Deferred[set[str]]] | None = None,
                 gate: ReadGate | None = None, rate: HistoryRate | None = None) -> None:
        self.buffer = buffer
        self._gate = gate
        self._rate = rate
        self.archive = archive
        self.presence = presence
        self._hidden = hidden

    async def _visible(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """Without the messages a moderator deleted."""
        if self._hidden is None or not messages:
            return messages
        deleted = await self._hidden([m.id for m in messages])
        return [m for m in messages if m.id not in deleted] if deleted else messages

    async def _admitted(self, read: Callable[[], Awaitable[tuple[int, Any]]]) -> tuple[int, Any]:
        if self._rate is not None:
            self._rate.admit()
        status, body = await (self._gate.run(read) if self._gate is not None else read())
        if self._rate is not None:
            messages = body if isinstance(body, list) else body.get("messages", [])
            self._rate.charge(len(messages))
        return status, body

    async def recent(self, request: Request) -> tuple[int, Any]:
        limit = parse_limit(request)

        async def read() -> tuple[int, Any]:
            return 200, messages_json(await self._visible(await self.buffer.recent(limit)))

        return await self._admitted(read)

    async def history(self, request: Request) -> tuple[int, Any]:
        limit = parse_limit(request)
        before = parse_message_id(request, "before")
        return await self._admitted(lambda: self._history_page(before, limit))

    async def _history_page(self, before: str | None, limit: int) -> tuple[int, Any]:
        buffered = await self.buffer.read_before(before, limit)
        archived = await self.archive.read_before(before, limit)
        merged = {m.id: m for m in archived}
        merged.update((m.id, m) for m in buffered)
        page = sorted(merged.values(), key=lambda m: id_key(m.id))[-limit:]
        # paging goes by what was read, so a page thinned by deletions
        # never ends the walk early
        next_before = page[0].id if len(page) == limit else None
        return 200, {"messages": messages_json(await self._visible(page)), "next_before": next_before}

    async def users(self, request: Request) -> tuple[int, Any]:
        online = await self.presence.online()
        users = [{"name": name, "since": iso_timestamp(since)} for name, since in online]
        return 200, {"users": users, "count": len(users)}
