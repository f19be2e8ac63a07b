"""Anonymous nicknames: ``<prefix>-<5 digits>``, unique among online users.

Uniqueness is the presence registry's job (it may span nodes); this only
draws candidates and retries on a clash.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred

from anonchat.chat.ports import IPresence


class NicknamesExhausted(Exception):
    """No free nickname was found after the allowed number of draws."""


async def claim_nickname(presence: IPresence, prefix: str, since_ms: int, rng: random.Random, attempts: int = 50) -> str:
    for _ in range(attempts):
        candidate = f"{prefix}-{rng.randint(10000, 99999)}"
        d: Deferred[bool] = presence.claim(candidate, since_ms)
        if await d:
            return candidate
    raise NicknamesExhausted(prefix)
