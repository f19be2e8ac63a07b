"""The behaviour every IModerationLog must have (SQLite, MySQL).

Mixed into one trial TestCase per backend; the concrete case supplies
``make_log`` (a Deferred of a started log on an empty table, stopped in its
cleanup).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from anonchat.chat.moderation import LogEntry
from anonchat.chat.ports import IModerationLog
from tests.moderation_contract import NOW, _TestCase


class ModerationLogContractMixin(_TestCase):
    def make_log(self) -> Deferred[IModerationLog]:
        raise NotImplementedError

    async def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IModerationLog, await self.make_log()))

    async def test_a_recorded_entry_gets_an_id_and_comes_back_as_it_was(self) -> None:
        log = await self.make_log()
        entry = LogEntry("ban", "익명-10000", "spam 👎 'quoted'; --", NOW + 7)
        recorded = await log.record(entry)
        self.assertTrue(recorded.id)
        self.assertEqual(recorded, LogEntry(entry.action, entry.target, entry.reason, entry.created_ms, recorded.id))
        self.assertEqual(await log.newest(10), [recorded])

    async def test_newest_first_and_limited(self) -> None:
        log = await self.make_log()
        recorded = [await log.record(LogEntry("mute", f"c{i}", "", NOW + i)) for i in range(5)]
        self.assertEqual(len({r.id for r in recorded}), 5)
        self.assertEqual(await log.newest(3), recorded[:1:-1])
        self.assertEqual(await log.newest(100), recorded[::-1])
        self.assertEqual(await log.newest(0), [])

    async def test_an_empty_log_has_nothing(self) -> None:
        log = await self.make_log()
        self.assertEqual(await log.newest(10), [])
