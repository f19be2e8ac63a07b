"""The behaviour every IModerationStore must have (in-process, SQL, Redis).

Mixed into one trial TestCase per backend; the concrete case supplies
``make_store`` (a started store on empty state, stopped in its cleanup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from anonchat.chat.moderation import BAN, MUTE, Report, Sanction
from anonchat.chat.ports import IModerationStore

if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object

NOW = 1_764_000_000_000


class ModerationStoreContractMixin(_TestCase):
    def make_store(self) -> IModerationStore | Deferred[IModerationStore]:
        raise NotImplementedError

    async def store(self) -> IModerationStore:
        store = self.make_store()
        if isinstance(store, Deferred):
            store = await store
        return store

    async def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IModerationStore, await self.store()))

    async def test_the_client_key_is_made_once_and_kept(self) -> None:
        store = await self.store()
        key = await store.client_key()
        self.assertGreaterEqual(len(key), 16)
        self.assertEqual(await store.client_key(), key)

    async def test_a_sanction_gets_an_id_and_is_listed_newest_first(self) -> None:
        store = await self.store()
        first = await store.add_sanction(Sanction(BAN, "c1", NOW, NOW + 60_000, "spam", "익명-10000"))
        second = await store.add_sanction(Sanction(BAN, "c2", NOW + 1, None, "abuse 👎"))
        self.assertTrue(first.id and second.id and first.id != second.id)
        listed = await store.sanctions(BAN, NOW + 2)
        self.assertEqual([s.id for s in listed], [second.id, first.id])
        self.assertEqual(listed[1], first)
        self.assertEqual(listed[0].reason, "abuse 👎")
        self.assertEqual(await store.sanctions(MUTE, NOW + 2), [])

    async def test_an_expired_sanction_is_no_longer_in_force(self) -> None:
        store = await self.store()
        await store.add_sanction(Sanction(MUTE, "c1", NOW, NOW + 60_000))
        self.assertEqual(len(await store.sanctions(MUTE, NOW + 59_999)), 1)
        self.assertEqual(await store.sanctions(MUTE, NOW + 60_000), [])

    async def test_a_lifted_sanction_is_gone(self) -> None:
        store = await self.store()
        mute = await store.add_sanction(Sanction(MUTE, "c1", NOW, None))
        self.assertEqual(await store.lift_sanction(MUTE, mute.id), mute)
        self.assertIsNone(await store.lift_sanction(MUTE, mute.id))
        self.assertIsNone(await store.lift_sanction(BAN, "999999"))
        self.assertEqual(await store.sanctions(MUTE, NOW), [])

    async def test_slow_mode_is_kept(self) -> None:
        store = await self.store()
        self.assertEqual(await store.slow_mode(), 0)
        await store.set_slow_mode(30)
        self.assertEqual(await store.slow_mode(), 30)
        await store.set_slow_mode(0)
        self.assertEqual(await store.slow_mode(), 0)

    async def test_one_report_per_reporter_per_message_counted(self) -> None:
        store = await self.store()
        self.assertTrue(await store.add_report(Report("5-0", "c1", "rude", NOW)))
        self.assertFalse(await store.add_report(Report("5-0", "c1", "again", NOW + 1)))
        self.assertTrue(await store.add_report(Report("5-0", "c2", "spam", NOW + 2)))
        self.assertTrue(await store.add_report(Report("3-0", "c1", "", NOW + 1)))
        summaries = await store.reports()
        self.assertEqual([(s.message_id, s.count) for s in summaries], [("5-0", 2), ("3-0", 1)])
        self.assertEqual(sorted(summaries[0].reasons), ["rude", "spam"])
        self.assertEqual(summaries[0].last_ms, NOW + 2)
        self.assertTrue(await store.dismiss_report("5-0"))
        self.assertFalse(await store.dismiss_report("5-0"))
        self.assertEqual([s.message_id for s in await store.reports()], ["3-0"])

    async def test_deleted_ids_are_remembered(self) -> None:
        store = await self.store()
        self.assertTrue(await store.mark_deleted("7-1"))
        self.assertFalse(await store.mark_deleted("7-1"))
        self.assertEqual(await store.deleted_among(["7-0", "7-1", "8-0"]), {"7-1"})
        self.assertEqual(await store.deleted_among([]), set())

    async def test_names_map_to_clients_until_forgotten(self) -> None:
        store = await self.store()
        await store.set_name_client("익명-10000", "c1")
        await store.set_name_client("익명-20000", "c2")
        self.assertEqual(await store.name_clients(["익명-10000", "익명-30000"]), {"익명-10000": "c1"})
        await store.set_name_client("익명-10000", None)
        self.assertEqual(await store.name_clients(["익명-10000", "익명-20000"]), {"익명-20000": "c2"})
