"""Rejoin tokens: a dropped connection that comes back in time keeps its
nickname, with no LEAVE/JOIN pair for the gap.

A token names the nickname and a one-time nonce, and is signed with a key
every node shares, so a client may come back on any node. The nonce is
what the presence registry holds while the name waits; taking it there
is atomic, so one token rejoins once, and only the last token issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import attrs


@attrs.frozen
class RejoinTicket:
    name: str
    nonce: str


class RejoinTokens:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"anonchat rejoin\0" + key).digest()

    def issue(self, name: str) -> tuple[str, RejoinTicket]:
        nonce = secrets.token_hex(8)
        payload = base64.urlsafe_b64encode(f"{nonce}:{name}".encode("utf-8")).rstrip(b"=")
        return (payload + b"." + self._sign(payload)).decode("ascii"), RejoinTicket(name, nonce)

    def read(self, token: str | None) -> RejoinTicket | None:
        """The ticket a genuine token carries; None for anything else."""
        if not token or len(token) > 512:
            return None
        payload, _, signature = token.encode("ascii", "replace").partition(b".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            nonce, _, name = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return RejoinTicket(name, nonce) if nonce and name else None

    def _sign(self, payload: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()[:18])
