"""Optional access control: only holders of a signed token may chat.

The token (a JWT: HS256 with a shared secret, or RS256/ES256 with a public
key) is checked with PyJWT at CONNECT (``passcode``) and on REST
(``Authorization: Bearer``). Users stay anonymous: the token's identity
is never shown; its ``sub`` only gives moderation a handle that follows a
user across addresses.
"""

from __future__ import annotations

import hashlib

import attrs
import jwt

HMAC_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


class AccessDenied(Exception):
    """Missing, malformed, badly signed, expired or for another audience."""


@attrs.frozen
class AccessPolicy:
    """``key``: the HS256 secret or the PEM public key."""

    key: str | bytes
    algorithms: tuple[str, ...]
    audience: str | None = None

    @classmethod
    def with_secret(cls, secret: str, audience: str | None = None) -> AccessPolicy:
        return cls(secret, HMAC_ALGORITHMS, audience)

    @classmethod
    def with_public_key(cls, pem: bytes, audience: str | None = None) -> AccessPolicy:
        return cls(pem, PUBLIC_KEY_ALGORITHMS, audience)

    def subject(self, token: str | None) -> str:
        """Who the token speaks for (its ``sub``, else a digest of the
        token itself), or AccessDenied."""
        if not token:
            raise AccessDenied("a token is required")
        try:
            claims = jwt.decode(token, self.key, algorithms=list(self.algorithms), audience=self.audience,
                                options={"verify_aud": self.audience is not None})
        except jwt.PyJWTError as e:
            raise AccessDenied(type(e).__name__) from None
        subject = claims.get("sub")
        if isinstance(subject, str) and subject:
            return "sub:" + subject
        return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()
