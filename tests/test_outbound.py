"""The shared outbound frame: encodings computed once, batches kept as frames."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import Outbound


class OutboundTests(SynchronousTestCase):
    def test_an_encoding_is_computed_once_per_key(self) -> None:
        calls: list[bytes] = []
        out = Outbound(b"A\x00")

        def encode(data: bytes) -> bytes:
            calls.append(data)
            return data.upper()

        self.assertEqual(out.encoded("k", encode), b"A\x00")
        self.assertEqual(out.encoded("k", encode), b"A\x00")
        self.assertEqual(calls, [b"A\x00"])

    def test_a_batch_is_the_stream_of_its_frames_and_encodes_each_frame(self) -> None:
        parts = [Outbound(b"one\x00"), Outbound(b"two\x00")]
        batch = Outbound.batch(parts)
        self.assertEqual(batch.data, b"one\x00two\x00")
        self.assertEqual(batch.frames(), tuple(parts))
        encoded: list[bytes] = []

        def encode(data: bytes) -> bytes:
            encoded.append(data)
            return b"<" + data + b">"

        self.assertEqual(batch.encoded_all("w", encode, b"|".join), b"<one\x00>|<two\x00>")
        # a batch goes to every subscriber of its group: encoded once, then cached
        self.assertEqual(batch.encoded_all("w", encode, b"|".join), b"<one\x00>|<two\x00>")
        self.assertEqual(encoded, [b"one\x00", b"two\x00"])

    def test_a_batch_of_one_is_that_frame(self) -> None:
        only = Outbound(b"x\x00")
        self.assertIs(Outbound.batch([only]), only)
        self.assertEqual(only.frames(), (only,))
