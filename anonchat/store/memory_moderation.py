"""The in-process twin of the moderation store (tests and embedding);
a running node keeps moderation in Redis or in its SQL database, so that
it survives a restart."""

from __future__ import annotations

import secrets
from itertools import count
from typing import Sequence

import attrs
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from anonchat.chat.moderation import Report, ReportSummary, Sanction
from anonchat.chat.ports import IModerationStore


@implementer(IModerationStore)
class InMemoryModerationStore:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ids = count(1)
        self._sanctions: dict[str, dict[str, Sanction]] = {"ban": {}, "mute": {}}
        self._slow_mode = 0
        self._reports: dict[str, dict[str, Report]] = {}
        self._deleted: set[str] = set()
        self._names: dict[str, str] = {}

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def client_key(self) -> Deferred[bytes]:
        return succeed(self._key)

    def add_sanction(self, sanction: Sanction) -> Deferred[Sanction]:
        stored = attrs.evolve(sanction, id=str(next(self._ids)))
        self._sanctions[sanction.kind][stored.id] = stored
        return succeed(stored)

    def sanctions(self, kind: str, now_ms: int) -> Deferred[list[Sanction]]:
        table = self._sanctions[kind]
        for sanction_id in [i for i, s in table.items() if not s.in_force(now_ms)]:
            del table[sanction_id]
        return succeed(sorted(table.values(), key=lambda s: (s.created_ms, int(s.id)), reverse=True))

    def lift_sanction(self, kind: str, sanction_id: str) -> Deferred[Sanction | None]:
        return succeed(self._sanctions[kind].pop(sanction_id, None))

    def set_slow_mode(self, seconds: int) -> Deferred[None]:
        self._slow_mode = seconds
        return succeed(None)

    def slow_mode(self) -> Deferred[int]:
        return succeed(self._slow_mode)

    def add_report(self, report: Report) -> Deferred[bool]:
        by_reporter = self._reports.setdefault(report.message_id, {})
        if report.reporter in by_reporter:
            return succeed(False)
        by_reporter[report.reporter] = report
        return succeed(True)

    def reports(self) -> Deferred[list[ReportSummary]]:
        summaries = [
            ReportSummary(message_id, len(by_reporter), tuple(r.reason for r in by_reporter.values()),
                          max(r.created_ms for r in by_reporter.values()))
            for message_id, by_reporter in self._reports.items()
        ]
        return succeed(sorted(summaries, key=lambda s: s.last_ms, reverse=True))

    def dismiss_report(self, message_id: str) -> Deferred[bool]:
        return succeed(self._reports.pop(message_id, None) is not None)

    def set_name_client(self, name: str, client: str | None) -> Deferred[None]:
        if client is None:
            self._names.pop(name, None)
        else:
            self._names[name] = client
        return succeed(None)

    def name_clients(self, names: Sequence[str]) -> Deferred[dict[str, str]]:
        return succeed({n: self._names[n] for n in names if n in self._names})

    def mark_deleted(self, message_id: str) -> Deferred[bool]:
        if message_id in self._deleted:
            return succeed(False)
        self._deleted.add(message_id)
        return succeed(True)

    def deleted_among(self, message_ids: Sequence[str]) -> Deferred[set[str]]:
        return succeed({i for i in message_ids if i in self._deleted})
