"""A Lua script sent by its SHA1 (``EVALSHA``), loaded again when Redis
has forgotten it (``NOSCRIPT``: a restart, a failover, ``SCRIPT FLUSH``).

Sending the text with every ``EVAL`` cost Redis a hash of it per call and
the network its bytes; a script is loaded once per Redis instead.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import attrs
import txredisapi
from twisted.internet.defer import Deferred

#: issues one Redis command (name, then arguments) and fires with its reply
Command = Callable[..., "Deferred[Any]"]


@attrs.frozen
class RedisScript:
    text: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()

    def run(self, command: Command, keys: Sequence[Any], args: Sequence[Any] = ()) -> Deferred[Any]:
        """``EVALSHA``; on ``NOSCRIPT``, ``SCRIPT LOAD`` and ``EVALSHA`` again.
        A ``NOSCRIPT`` reply means the script did not run, so the retry
        cannot run it twice."""

        async def run() -> Any:
            try:
                return await command("EVALSHA", self.sha, len(keys), *keys, *args)
            except txredisapi.ResponseError as e:
                if "NOSCRIPT" not in str(e):
                    raise
            await command("SCRIPT", "LOAD", self.text)
            return await command("EVALSHA", self.sha, len(keys), *keys, *args)

        return Deferred.fromCoroutine(run())
