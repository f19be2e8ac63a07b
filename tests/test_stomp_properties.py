"""Property tests of the STOMP codec: round trips, split invariance, robustness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.frame import Frame, FrameError
from anonchat.stomp.parser import COMMANDS, VERBATIM_COMMANDS, FrameParser
from anonchat.stomp.serializer import serialize

fast = settings(max_examples=200, deadline=None)
versions = st.sampled_from(["1.0", "1.1", "1.2"])
any_command = st.sampled_from(sorted(COMMANDS))
escaped_command = st.sampled_from(sorted(COMMANDS - VERBATIM_COMMANDS))
# Awkward characters are over-represented so every escape is exercised.
header_text = st.text(
    st.one_of(st.sampled_from("\\:\n\r\x00 c"), st.characters(codec="utf-8", exclude_characters="\x00")),
    max_size=12,
)
clean_header_text = header_text.map(lambda text: text.replace("\x00", ""))


@st.composite
def frames(
    draw: st.DrawFn,
    commands: st.SearchStrategy[str] = any_command,
    text: st.SearchStrategy[str] = header_text,
) -> Frame:
    headers = draw(st.lists(st.tuples(text.filter(bool), text), max_size=5))
    body = draw(st.binary(max_size=64))
    headers.insert(0, ("content-length", str(len(body))))
    return Frame(draw(commands), tuple(headers), body)


# Pieces of STOMP syntax, so that random streams reach deep parser states.
command_tokens = st.sampled_from([c.encode() for c in sorted(COMMANDS)] + [b"BOGUS", b""])
eol_tokens = st.sampled_from([b"\n", b"\r\n"])
header_tokens = st.sampled_from(
    [
        b"x", b":", b" ", b"\\", b"\\n", b"\\c", b"\\r", b"\\t", b"content-length:",
        b"0", b"3", b"-1", b"99999", b"\xff", "가".encode(), b"\r", b"\x00",
    ]
)  # fmt: skip
body_tokens = st.sampled_from([b"a", b"\x00", b"\n", b"\xff"])


@st.composite
def framish(draw: st.DrawFn) -> bytes:
    """A few frames that are mostly well formed, each in one of many ways not."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        parts += [draw(st.sampled_from([b"", b"\n", b"\r\n"])), draw(command_tokens), draw(eol_tokens)]
        for tokens in draw(st.lists(st.lists(header_tokens, max_size=6), max_size=4)):
            parts += [*tokens, draw(eol_tokens)]
        parts += [draw(eol_tokens), *draw(st.lists(body_tokens, max_size=6)), b"\x00"]
    return b"".join(parts)


stomp_ish = st.one_of(st.binary(max_size=200), framish())


def feed_pieces(parser: FrameParser, data: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    for begin, end in zip(bounds, bounds[1:]):
        frames += parser.feed(data[begin:end])
    return frames


def parser_for(version: str, **limits: int) -> FrameParser:
    parser = FrameParser(**limits)
    parser.version = version
    return parser


class RoundTripProperties(SynchronousTestCase):
    @fast
    @given(frames(escaped_command, clean_header_text))
    def test_v12_round_trips_any_header_text_and_body(self, frame: Frame) -> None:
        self.assertEqual(parser_for("1.2").feed(serialize(frame, "1.2")), [frame])

    @fast
    @given(frames(), versions)
    def test_serialize_round_trips_or_refuses(self, frame: Frame, version: str) -> None:
        try:
            data = serialize(frame, version)
        except ValueError:
            return
        self.assertEqual(parser_for(version).feed(data), [frame])

    @fast
    @given(stomp_ish, versions)
    def test_parsed_frames_serialize_back_to_themselves(self, data: bytes, version: str) -> None:
        try:
            parsed = parser_for(version).feed(data)
        except FrameError:
            return
        for frame in parsed:
            again = parser_for(version, max_frame=1 << 20).feed(serialize(frame, version))
            self.assertEqual(again, [frame])


class SplitProperties(SynchronousTestCase):
    @fast
    @given(
        st.lists(frames(escaped_command, clean_header_text), min_size=1, max_size=4),
        st.lists(st.sampled_from([b"", b"\n", b"\r\n", b"\n\n"]), min_size=5, max_size=5),
        st.data(),
    )
    def test_any_split_gives_the_same_frames(
        self, sent: list[Frame], heartbeats: list[bytes], data: st.DataObject
    ) -> None:
        stream = heartbeats[0] + b"".join(
            serialize(frame) + beat for frame, beat in zip(sent, heartbeats[1:] + heartbeats)
        )
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
        self.assertEqual(feed_pieces(FrameParser(), stream, cuts), sent)


class RobustnessProperties(SynchronousTestCase):
    @fast
    @given(stomp_ish, versions, st.lists(st.integers(0, 200), max_size=10))
    def test_arbitrary_bytes_raise_nothing_but_frame_error(
        self, data: bytes, version: str, cuts: list[int]
    ) -> None:
        parser = parser_for(version, max_frame=64, max_headers=3, max_header_length=16)
        try:
            frames = feed_pieces(parser, data, [cut for cut in cuts if cut < len(data)])
        except FrameError as error:
            self.assertTrue(error.message)
            self.assertNotIn("\n", error.message)
            self.assertIs(self.assertRaises(FrameError, parser.feed, b"\n"), error)
        else:
            for frame in frames:
                self.assertIsInstance(frame.body, bytes)
