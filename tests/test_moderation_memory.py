"""The in-process moderation store against the contract, and the rules."""

from __future__ import annotations

from twisted.trial import unittest

from anonchat.chat.moderation import BlockedWords, client_id
from anonchat.store.memory_moderation import InMemoryModerationStore
from tests.moderation_contract import ModerationStoreContractMixin


class InMemoryModerationStoreTests(ModerationStoreContractMixin, unittest.TestCase):
    def make_store(self) -> InMemoryModerationStore:
        return InMemoryModerationStore()


class BlockedWordsTests(unittest.SynchronousTestCase):
    def test_matching_ignores_case_width_and_compatibility_forms(self) -> None:
        words = BlockedWords.parse("# a comment\nSpam\n\n  ｂａｄ word \n")
        self.assertTrue(words.blocks("buy SPAM now"))
        self.assertTrue(words.blocks("a BAD WORD"))
        self.assertTrue(words.blocks("ﬁne ｓｐａｍ"))
        self.assertFalse(words.blocks("spa m"))
        self.assertFalse(BlockedWords().blocks("anything"))

    def test_korean_phrases_match_after_normalisation(self) -> None:
        words = BlockedWords.parse("나쁜말\n")
        self.assertTrue(words.blocks("이건 나쁜말 이다"))
        self.assertFalse(words.blocks("좋은말"))


class ClientIdTests(unittest.SynchronousTestCase):
    def test_stable_per_key_and_identity_and_reveals_nothing(self) -> None:
        key = b"k" * 32
        a = client_id(key, "203.0.113.7")
        self.assertEqual(a, client_id(key, "203.0.113.7"))
        self.assertNotEqual(a, client_id(key, "203.0.113.8"))
        self.assertNotEqual(a, client_id(b"j" * 32, "203.0.113.7"))
        self.assertNotIn("203", a)
