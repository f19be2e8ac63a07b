"""The subscribers of one destination, grouped so a broadcast is built once.

Almost every client subscribes with id ``sub-0``, so grouping by
(subscription id, STOMP version) means one serialized MESSAGE frame per
broadcast in practice; the loop over sessions then only hands out the
shared ``Outbound``. Ids are the client's choice, though, so a group
costs one join per batch (``BatchTemplate``), not a pass over its frames.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from anonchat.stomp.outbound import BatchTemplate
from anonchat.stomp.serializer import header_line
from anonchat.stomp.server_frames import message_frame, message_frame_parts
from anonchat.chat.subscriber import Subscriber


class Topic:
    __slots__ = ("destination", "_groups", "_lines", "_count")

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self._groups: dict[tuple[str, str], dict[Subscriber, None]] = {}
        #: Each group's serialized ``subscription`` header line.
        self._lines: dict[tuple[str, str], bytes] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, session: Subscriber, subscription: str) -> None:
        key = (subscription, session.version)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = {}
            self._lines[key] = header_line("subscription", subscription, session.version)
        if session not in group:
            group[session] = None
            self._count += 1

    def remove(self, session: Subscriber, subscription: str) -> None:
        key = (subscription, session.version)
        group = self._groups.get(key)
        if group is not None and group.pop(session, 0) is None:
            self._count -= 1
            if not group:
                del self._groups[key]
                del self._lines[key]

    def sessions(self) -> Iterator[Subscriber]:
        for group in self._groups.values():
            yield from group

    def publish(self, message_id: str, body: bytes) -> int:
        """Deliver one message to every subscriber; returns how many."""
        return self.publish_batch(((message_id, body),))

    def publish_batch(self, messages: Sequence[tuple[str, bytes]]) -> int:
        """Deliver messages (id, body) in order to every subscriber, as one
        batch per subscriber (one socket write); returns deliveries."""
        destination = self.destination
        templates: dict[str, BatchTemplate] = {}  # serialized once per version
        lines = self._lines
        for key, group in list(self._groups.items()):
            version = key[1]
            template = templates.get(version)
            if template is None:
                template = templates[version] = BatchTemplate(
                    [message_frame_parts(destination, message_id, body, version) for message_id, body in messages])
            out = template.for_line(lines[key])
            for session in list(group):
                session.deliver(out)
        return self._count * len(messages)

    def send_to(self, session: Subscriber, subscription: str, message_id: str, body: bytes) -> None:
        """One message to one subscription only (replays, the list on subscribe)."""
        send_one(session, self.destination, subscription, message_id, body)


def send_one(session: Subscriber, destination: str, subscription: str, message_id: str, body: bytes,
             extra: tuple[tuple[str, str], ...] = ()) -> None:
    """One MESSAGE built for one session (replays, private replies)."""
    session.send_frame(message_frame(destination, subscription, message_id, body, session.version, extra))
