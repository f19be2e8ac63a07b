"""The moderation API under ``/api/admin/`` (mounted only with --admin-token).

Bearer auth, compared in constant time; an address that keeps presenting
wrong tokens is slowed to a few tries a minute (429), so the token cannot
be guessed online. Every action goes through the room and the Moderator,
so it reaches every node the same way a user's traffic does.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from anonchat.chat.message import id_key, iso_timestamp
from anonchat.chat.moderation import BAN, MUTE
from anonchat.chat.moderator import Moderator
from anonchat.chat.ports import IPresence
from anonchat.chat.room import ChatRoom
from anonchat.ratelimit import TokenBucket
from anonchat.web.rest import finish_json

log = Logger()

#: Wrong tokens one address may present: this many a minute, burst as many.
FAILED_AUTH_PER_MINUTE = 10
MAX_BODY = 64 * 1024

Handler = Callable[[Request, list[str]], Awaitable[tuple[int, Any]]]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_body(request: Request) -> dict[str, Any]:
    assert request.content is not None
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise HttpError(413, "body too large")
    try:
        value = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HttpError(400, "the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise HttpError(400, "the body must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, limit: int = 500) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise HttpError(400, f"{name} must be text of at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpError(400, f"{name} must be valid Unicode") from None
    return value


def _number(body: dict[str, Any], name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value > 10**7:
        raise HttpError(400, f"{name} must be a number from 0")
    return float(value)


class AdminApi(Resource):
    isLeaf = True

    def __init__(self, token: str, room: ChatRoom, moderator: Moderator, presence: IPresence,
                 clock: IReactorTime, address: Callable[[Request], str]) -> None:
        super().__init__()
        self._token = token.encode("utf-8")
        self._room = room
        self._moderator = moderator
        self._presence = presence
        self._clock = clock
        self._address = address
        self._failures: dict[str, TokenBucket] = {}
        self._routes: dict[tuple[bytes, str], Handler] = {
            (b"GET", "users"): self._users,
            (b"GET", "bans"): self._list(BAN),
            (b"POST", "bans"): self._sanction(BAN),
            (b"DELETE", "bans"): self._lift(BAN),
            (b"GET", "mutes"): self._list(MUTE),
            (b"POST", "mutes"): self._sanction(MUTE),
            (b"DELETE", "mutes"): self._lift(MUTE),
            (b"DELETE", "messages"): self._delete_message,
            (b"PUT", "slow-mode"): self._slow_mode,
            (b"GET", "reports"): self._reports,
            (b"DELETE", "reports"): self._dismiss,
            (b"GET", "log"): self._log,
        }

    # -- plumbing -----------------------------------------------------------------

    def render(self, request: Request) -> int:
        Deferred.fromCoroutine(self._serve(request)).addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _serve(self, request: Request) -> None:
        try:
            self._authorize(request)
            path = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
            handler = self._routes.get((request.method, path[0] if path else ""))
            if handler is None:
                known = any(name == (path[0] if path else "") for _, name in self._routes)
                raise HttpError(405 if known else 404, "no such admin endpoint or method")
            status, body = await handler(request, path[1:])
        except HttpError as e:
            status, body = e.status, {"error": str(e)}
        finish_json(request, status, body)

    def _authorize(self, request: Request) -> None:
        header = request.getHeader("authorization") or ""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            request.setHeader("WWW-Authenticate", 'Bearer realm="anonchat-admin"')
            raise HttpError(401, "a bearer token is required")
        address = self._address(request)
        bucket = self._failures.get(address)
        if bucket is not None and bucket.tokens_left() < 1:
            request.setHeader("Retry-After", "60")
            raise HttpError(429, "too many wrong tokens; wait a minute")
        if not hmac.compare_digest(presented.strip().encode("utf-8"), self._token):
            if bucket is None:
                if len(self._failures) > 10_000:
                    self._failures.clear()  # bounded; a flood of addresses only resets the count
                bucket = self._failures[address] = TokenBucket(
                    self._clock, FAILED_AUTH_PER_MINUTE / 60.0, FAILED_AUTH_PER_MINUTE)
            bucket.take()
            log.warn("a wrong admin token was presented")
            raise HttpError(403, "wrong token")

    def _failed(self, failure: Failure, request: Request) -> None:
        log.failure("admin request failed", failure=failure)
        finish_json(request, 503, {"error": "temporarily unavailable"})

    # -- handlers -----------------------------------------------------------------

    async def _users(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        online = await self._presence.online()
        clients = await self._moderator.names_of([name for name, _ in online])
        users = [{"name": name, "since": iso_timestamp(since), "client": clients.get(name)} for name, since in online]
        return 200, {"users": users, "count": len(users)}

    def _list(self, kind: str) -> Handler:
        async def handler(request: Request, rest: list[str]) -> tuple[int, Any]:
            now = int(self._clock.seconds() * 1000)
            found = [s.to_dict() for s in await self._moderator.store.sanctions(kind, now)]
            return 200, {kind + "s": found, "count": len(found)}
        return handler

    def _sanction(self, kind: str) -> Handler:
        async def handler(request: Request, rest: list[str]) -> tuple[int, Any]:
            body = _json_body(request)
            minutes = _number(body, "minutes", 0)
            reason = _text(body, "reason")
            name, client = body.get("name"), body.get("client")
            if isinstance(name, str) and name:
                client = (await self._moderator.names_of([name])).get(name)
                if client is None:
                    raise HttpError(404, "nobody online has that name")
            elif not (isinstance(client, str) and client):
                raise HttpError(400, "name or client is required")
            else:
                name = ""
            sanction = await self._moderator.sanction(kind, client, minutes, reason, name)
            return 201, sanction.to_dict()
        return handler

    def _lift(self, kind: str) -> Handler:
        async def handler(request: Request, rest: list[str]) -> tuple[int, Any]:
            if len(rest) != 1:
                raise HttpError(404, f"DELETE {kind}s/ID")
            if await self._moderator.lift(kind, rest[0]) is None:
                raise HttpError(404, f"no such {kind}")
            return 204, None
        return handler

    async def _delete_message(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        if len(rest) != 1 or not _is_id(rest[0]):
            raise HttpError(404, "DELETE messages/ID")
        if not await self._room.delete_message(rest[0]):
            raise HttpError(404, "no such message")
        return 204, None

    async def _slow_mode(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        seconds = _number(_json_body(request), "seconds")
        if seconds != int(seconds) or seconds > 86400:
            raise HttpError(400, "seconds must be a whole number from 0 to 86400")
        await self._moderator.set_slow_mode(int(seconds))
        return 200, {"seconds": int(seconds)}

    async def _reports(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        found = []
        for summary in await self._moderator.store.reports():
            message = await self._room.find_message(summary.message_id)
            found.append({"id": summary.message_id, "count": summary.count, "reasons": list(summary.reasons),
                          "last": iso_timestamp(summary.last_ms),
                          "message": message.to_dict() if message is not None else None})
        return 200, {"reports": found, "count": len(found)}

    async def _dismiss(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        if len(rest) != 1 or not await self._moderator.store.dismiss_report(rest[0]):
            raise HttpError(404, "no such report")
        return 204, None

    async def _log(self, request: Request, rest: list[str]) -> tuple[int, Any]:
        if self._moderator.audit is None:
            return 200, {"log": []}
        entries = await self._moderator.audit.newest(500)
        return 200, {"log": [e.to_dict() for e in entries]}


def _is_id(text: str) -> bool:
    try:
        id_key(text)
    except ValueError:
        return False
    return True
