"""One connection's abuse budget, checked in one place.

Anyone may connect without an account, so everything one connection can
make this node hold or do is bounded here: frames per second, SENDs
waiting for the buffer, subscriptions, one history replay at a time, and
the bytes held for it while that replay runs. The STOMP session charges
frames, SENDs and subscriptions as they arrive; the chat charges the
replay. (Per-address limits, connections and REST rate, live in web/.)
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from anonchat.ratelimit import TokenBucket


class ConnectionBudget:
    __slots__ = ("max_pending_sends", "max_subscriptions", "max_held_bytes",
                 "pending_sends", "held_bytes", "_frames", "_replay")

    def __init__(self, clock: IReactorTime, *, frame_rate: float, max_pending_sends: int,
                 max_subscriptions: int, max_held_bytes: int) -> None:
        #: Frames per second (0 = no limit), burst twice that.
        self._frames = TokenBucket(clock, frame_rate, 2 * frame_rate)
        self.max_pending_sends = max_pending_sends
        self.max_subscriptions = max_subscriptions
        self.max_held_bytes = max_held_bytes
        self.pending_sends = 0
        self.held_bytes = 0
        self._replay: object | None = None

    def charge_frame(self) -> bool:
        """One client frame arrived (heart-beats are free); False: overdrawn."""
        return self._frames.take()

    # -- SENDs waiting for the buffer ----------------------------------------

    def send_started(self) -> None:
        self.pending_sends += 1

    def send_settled(self) -> None:
        self.pending_sends -= 1

    @property
    def sends_full(self) -> bool:
        """Reading stops while this is true, and resumes once it is not."""
        return self.pending_sends >= self.max_pending_sends

    def may_subscribe(self, subscriptions: int) -> bool:
        return subscriptions < self.max_subscriptions

    # -- the one replay ---------------------------------------------------------

    def claim_replay(self, replay: object) -> bool:
        """At most one history replay per connection; False when one runs."""
        if self._replay is not None:
            return False
        self._replay = replay
        return True

    def release_replay(self, replay: object) -> None:
        if self._replay is replay:
            self._replay = None
            self.held_bytes = 0

    def hold(self, size: int, slack: int = 0) -> bool:
        """Bytes held for the replaying subscriber (live messages waiting
        for its replay to end); False once past the send-buffer bound
        (plus ``slack``)."""
        self.held_bytes += size
        return self.held_bytes <= self.max_held_bytes + slack

    def unhold(self, size: int) -> None:
        """Held bytes handed to the carrier (which bounds them from there)."""
        self.held_bytes = max(0, self.held_bytes - size)
