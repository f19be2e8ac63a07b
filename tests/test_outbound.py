"""The shared outbound frame: encodings computed once, batches kept as
frames, and a group's spliced batch byte for byte what its frames make."""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import PLAIN, BatchTemplate, Outbound
from anonchat.stomp.serializer import header_line
from anonchat.stomp.server_frames import message_frame, message_frame_parts
from anonchat.web.sockjs.framing import LITERALS
from anonchat.web.websocket import TEXT_MESSAGES


class Angles:
    """A made-up encoding that counts its calls."""

    separator = b"|"

    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def encode(self, data: bytes) -> bytes:
        self.encoded.append(data)
        return b"<" + data + b">"

    def around(self, head: bytes, tail: bytes, line_length: int) -> tuple[bytes, bytes]:
        self.encoded.append(head + b"~" + tail)
        return b"<" + head, tail + b">"

    def inner(self, line: bytes) -> bytes:
        return line


class OutboundTests(SynchronousTestCase):
    def test_an_encoding_is_computed_once(self) -> None:
        angles = Angles()
        out = Outbound(b"A\x00")
        self.assertEqual(out.encoded(angles), b"<A\x00>")
        self.assertEqual(out.encoded(angles), b"<A\x00>")
        self.assertEqual(angles.encoded, [b"A\x00"])

    def test_a_batch_is_the_stream_of_its_frames_and_encodes_each_frame(self) -> None:
        parts = [Outbound(b"one\x00"), Outbound(b"two\x00")]
        batch = Outbound.batch(parts)
        self.assertEqual(batch.data, b"one\x00two\x00")
        self.assertEqual(batch.frames(), tuple(parts))
        angles = Angles()
        self.assertEqual(batch.encoded(angles), b"<one\x00>|<two\x00>")
        # a batch goes to every subscriber of its group: encoded once, then cached
        self.assertEqual(batch.encoded(angles), b"<one\x00>|<two\x00>")
        self.assertEqual(angles.encoded, [b"one\x00", b"two\x00"])

    def test_a_batch_of_one_is_that_frame(self) -> None:
        only = Outbound(b"x\x00")
        self.assertIs(Outbound.batch([only]), only)
        self.assertEqual(only.frames(), (only,))

    def test_a_spliced_batch_puts_its_line_between_each_head_and_tail(self) -> None:
        template = BatchTemplate([(b"H1:", b":T1\x00"), (b"H2:", b":T2\x00")])
        out = template.for_line(b"sub-7")
        self.assertEqual(out.data, b"H1:sub-7:T1\x00H2:sub-7:T2\x00")
        self.assertEqual([f.data for f in out.frames()], [b"H1:sub-7:T1\x00", b"H2:sub-7:T2\x00"])
        self.assertEqual(out.encoded(Angles()), b"<H1:sub-7:T1\x00>|<H2:sub-7:T2\x00>")

    def test_groups_whose_lines_have_one_length_share_the_encoded_pieces(self) -> None:
        angles = Angles()
        template = BatchTemplate([(b"H1:", b":T1"), (b"H2:", b":T2")])
        self.assertEqual(template.for_line(b"a-1").encoded(angles), b"<H1:a-1:T1>|<H2:a-1:T2>")
        self.assertEqual(template.for_line(b"b-2").encoded(angles), b"<H1:b-2:T1>|<H2:b-2:T2>")
        self.assertEqual(len(angles.encoded), 2)  # once per frame, not per group
        template.for_line(b"longer").encoded(angles)
        self.assertEqual(len(angles.encoded), 4)

    def test_a_template_needs_a_frame(self) -> None:
        self.assertRaises(ValueError, BatchTemplate, [])


_ids = st.text(min_size=1, max_size=40)
_bodies = st.lists(st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")), min_size=1, max_size=5)


class SplicedEncodingProperties(SynchronousTestCase):
    """Whatever the subscription id and bodies, every transport's encoding
    of a spliced batch is the encoding of the frames built whole."""

    @settings(max_examples=200, deadline=None)
    @given(subscription=_ids, bodies=_bodies, version=st.sampled_from(["1.0", "1.1", "1.2"]))
    @example(subscription='"\\\u2028\n:', bodies=[b"x" * 70], version="1.2")
    @example(subscription="s" * 40, bodies=[b"y" * 65380, b"z" * 200], version="1.2")  # 126 / 64 KiB edges
    def test_spliced_equals_whole(self, subscription: str, bodies: list[bytes], version: str) -> None:
        messages = [(f"{1700000000000 + i}-{i}", body) for i, body in enumerate(bodies)]
        template = BatchTemplate([message_frame_parts("/topic/chat", mid, body, version) for mid, body in messages])
        try:
            line = header_line("subscription", subscription, version)
        except ValueError:  # NUL, or what STOMP 1.0 cannot escape: the parser refuses such ids
            assume(False)
        spliced = template.for_line(line)
        whole = Outbound.batch([Outbound(message_frame("/topic/chat", subscription, mid, body, version))
                                for mid, body in messages])
        for encoding in (PLAIN, TEXT_MESSAGES, LITERALS):
            self.assertEqual(spliced.encoded(encoding), whole.encoded(encoding))
        self.assertEqual(spliced.data, whole.data)
