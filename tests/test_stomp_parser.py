"""FrameParser: one test per framing rule, escaping rule, limit and error."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.frame import Frame, FrameError
from anonchat.stomp.parser import COMMANDS, FrameParser

SEND = b"SEND\ndestination:/app/chat.sendMessage\n\nhello\x00"
SEND_FRAME = Frame("SEND", (("destination", "/app/chat.sendMessage"),), b"hello")


def parse(data: bytes, version: str = "1.2", **limits: int) -> list[Frame]:
    parser = FrameParser(**limits)
    parser.version = version
    return parser.feed(data)


def parse_one(data: bytes, version: str = "1.2", **limits: int) -> Frame:
    [frame] = parse(data, version, **limits)
    return frame


class FramingTests(SynchronousTestCase):
    def test_one_frame_in_one_feed(self) -> None:
        self.assertEqual(parse(SEND), [SEND_FRAME])

    def test_several_frames_in_one_feed(self) -> None:
        self.assertEqual(parse(SEND * 3), [SEND_FRAME] * 3)

    def test_split_frame_yields_one_frame(self) -> None:
        for cut in range(1, len(SEND)):
            parser = FrameParser()
            self.assertEqual(parser.feed(SEND[:cut]), [])
            self.assertEqual(parser.feed(SEND[cut:]), [SEND_FRAME], cut)

    def test_byte_by_byte_feed_yields_each_frame_once(self) -> None:
        parser = FrameParser()
        frames: list[Frame] = []
        for byte in SEND * 2:
            frames += parser.feed(bytes([byte]))
        self.assertEqual(frames, [SEND_FRAME] * 2)

    def test_frame_completed_with_start_of_next_keeps_the_rest(self) -> None:
        parser = FrameParser()
        self.assertEqual(parser.feed(SEND + SEND[:7]), [SEND_FRAME])
        self.assertEqual(parser.feed(SEND[7:]), [SEND_FRAME])

    def test_empty_feed_yields_nothing(self) -> None:
        self.assertEqual(FrameParser().feed(b""), [])

    def test_heartbeats_between_frames_are_skipped(self) -> None:
        data = b"\n\r\n" + SEND + b"\n" + SEND + b"\r\n\r\n"
        self.assertEqual(parse(data), [SEND_FRAME] * 2)

    def test_heartbeats_alone_yield_nothing(self) -> None:
        parser = FrameParser()
        for _ in range(3):
            self.assertEqual(parser.feed(b"\n\r\n"), [])
        self.assertEqual(parser.feed(SEND), [SEND_FRAME])

    def test_heartbeats_are_not_buffered(self) -> None:
        parser = FrameParser(max_frame=100)
        for _ in range(100):
            self.assertEqual(parser.feed(b"\n" * 1000), [])
        self.assertEqual(parser.feed(SEND), [SEND_FRAME])

    def test_crlf_line_endings_are_accepted_in_every_version(self) -> None:
        data = b"SEND\r\ndestination:/app/chat.sendMessage\r\n\r\nhello\x00"
        for version in ("1.0", "1.1", "1.2"):
            self.assertEqual(parse(data, version), [SEND_FRAME], version)

    def test_frame_without_headers(self) -> None:
        self.assertEqual(parse_one(b"DISCONNECT\n\n\x00"), Frame("DISCONNECT"))

    def test_header_value_keeps_colons_after_the_first(self) -> None:
        frame = parse_one(b"SEND\nx-when:12:30:00\n\n\x00", "1.0")
        self.assertEqual(frame.headers, (("x-when", "12:30:00"),))

    def test_header_whitespace_is_kept(self) -> None:
        frame = parse_one(b"SEND\n a : b \n\n\x00")
        self.assertEqual(frame.headers, ((" a ", " b "),))

    def test_empty_header_value_is_allowed(self) -> None:
        self.assertEqual(parse_one(b"SEND\nreceipt:\n\n\x00").get("receipt"), "")

    def test_repeated_headers_are_kept_in_order(self) -> None:
        frame = parse_one(b"SEND\nfoo:1\nbar:x\nfoo:2\n\n\x00")
        self.assertEqual(frame.headers, (("foo", "1"), ("bar", "x"), ("foo", "2")))
        self.assertEqual(frame.get("foo"), "1")

    def test_every_known_command_is_accepted(self) -> None:
        for command in sorted(COMMANDS):
            frame = parse_one(command.encode() + b"\n\n\x00")
            self.assertEqual(frame.command, command)

    def test_utf8_headers_are_decoded(self) -> None:
        frame = parse_one("SEND\nx-name:익명-12345 👋\n\n\x00".encode())
        self.assertEqual(frame.get("x-name"), "익명-12345 👋")

    def test_body_stays_bytes(self) -> None:
        self.assertEqual(parse_one(b"SEND\n\n\xff\xfe\x80\x00").body, b"\xff\xfe\x80")


class BodyTests(SynchronousTestCase):
    def test_body_without_content_length_runs_to_first_nul(self) -> None:
        parser = FrameParser()
        self.assertEqual(parser.feed(b"SEND\n\nab\x00cd"), [Frame("SEND", (), b"ab")])

    def test_content_length_body_may_contain_nul(self) -> None:
        frame = parse_one(b"SEND\ncontent-length:5\n\na\x00b\x00c\x00")
        self.assertEqual(frame.body, b"a\x00b\x00c")

    def test_content_length_zero_gives_empty_body(self) -> None:
        self.assertEqual(parse_one(b"SEND\ncontent-length:0\n\n\x00").body, b"")

    def test_content_length_body_split_across_feeds(self) -> None:
        data = b"SEND\ncontent-length:4\n\n\x00\x00\x00\x00\x00"
        parser = FrameParser()
        self.assertEqual(parser.feed(data[:-3]), [])
        self.assertEqual(parser.feed(data[-3:-1]), [])
        self.assertEqual(parser.feed(data[-1:]), [Frame("SEND", (("content-length", "4"),), b"\0" * 4)])

    def test_first_content_length_wins(self) -> None:
        frame = parse_one(b"SEND\ncontent-length:2\ncontent-length:9\n\nab\x00")
        self.assertEqual(frame.body, b"ab")

    def test_later_invalid_content_length_is_ignored(self) -> None:
        self.assertEqual(parse_one(b"SEND\ncontent-length:1\ncontent-length:x\n\na\x00").body, b"a")

    def test_content_length_with_leading_zeros_is_decimal(self) -> None:
        self.assertEqual(parse_one(b"SEND\ncontent-length:0002\n\nab\x00").body, b"ab")

    def test_body_longer_than_content_length_is_refused(self) -> None:
        self.assertFrameError(b"SEND\ncontent-length:2\n\nabc\x00", "missing NUL after body")

    def test_non_numeric_content_length_is_refused(self) -> None:
        for value in (b"abc", b"", b"1.5", b"+3", b" 3", b"3 ", b"0x10", "٣".encode()):
            self.assertFrameError(b"SEND\ncontent-length:" + value + b"\n\n\x00", "invalid content-length")

    def test_negative_content_length_is_refused(self) -> None:
        self.assertFrameError(b"SEND\ncontent-length:-1\n\n\x00", "invalid content-length")

    def assertFrameError(self, data: bytes, message: str) -> None:
        error = self.assertRaises(FrameError, parse, data)
        self.assertEqual(error.message, message, data)


class EscapingTests(SynchronousTestCase):
    ESCAPED = b"SEND\na\\cb:1\\n2\\c3\\\\4\n\n\x00"

    def test_v12_unescapes_newline_colon_backslash_and_cr(self) -> None:
        frame = parse_one(b"SEND\nx:\\r\\n\\c\\\\\n\n\x00", "1.2")
        self.assertEqual(frame.get("x"), "\r\n:\\")

    def test_v11_unescapes_newline_colon_and_backslash(self) -> None:
        self.assertEqual(parse_one(self.ESCAPED, "1.1").headers, (("a:b", "1\n2:3\\4"),))

    def test_header_names_are_unescaped(self) -> None:
        self.assertEqual(parse_one(self.ESCAPED, "1.2").headers[0][0], "a:b")

    def test_v10_does_not_unescape(self) -> None:
        self.assertEqual(parse_one(self.ESCAPED, "1.0").headers, (("a\\cb", "1\\n2\\c3\\\\4"),))

    def test_v10_accepts_any_backslash(self) -> None:
        self.assertEqual(parse_one(b"SEND\nx:C:\\tmp\\\n\n\x00", "1.0").get("x"), "C:\\tmp\\")

    def test_v11_refuses_cr_escape(self) -> None:
        self.assertEscapeRefused(b"\\r", "1.1")

    def test_undefined_escape_is_refused(self) -> None:
        for version in ("1.1", "1.2"):
            self.assertEscapeRefused(b"\\t", version)

    def test_trailing_backslash_is_refused(self) -> None:
        for version in ("1.1", "1.2"):
            self.assertEscapeRefused(b"abc\\", version)

    def test_escape_in_header_name_is_checked(self) -> None:
        error = self.assertRaises(FrameError, parse, b"SEND\na\\tb:1\n\n\x00")
        self.assertEqual(error.message, "invalid header escape")

    def test_connect_headers_are_never_unescaped(self) -> None:
        for version in ("1.1", "1.2"):
            frame = parse_one(b"CONNECT\npasscode:a\\tb\\c\n\n\x00", version)
            self.assertEqual(frame.get("passcode"), "a\\tb\\c")

    def test_connected_headers_are_never_unescaped(self) -> None:
        frame = parse_one(b"CONNECTED\nserver:x\\n\n\n\x00")
        self.assertEqual(frame.get("server"), "x\\n")

    def test_version_change_applies_to_later_frames(self) -> None:
        parser = FrameParser()
        data = b"SEND\nx:\\c\n\n\x00"
        self.assertEqual(parser.feed(data)[0].get("x"), ":")
        parser.version = "1.0"
        self.assertEqual(parser.feed(data)[0].get("x"), "\\c")

    def test_default_version_is_1_2(self) -> None:
        self.assertEqual(FrameParser().version, "1.2")

    def test_unknown_version_is_refused(self) -> None:
        parser = FrameParser()
        with self.assertRaises(ValueError):
            parser.version = "2.0"
        self.assertEqual(parser.version, "1.2")

    def assertEscapeRefused(self, escaped: bytes, version: str) -> None:
        error = self.assertRaises(FrameError, parse, b"SEND\nx:" + escaped + b"\n\n\x00", version)
        self.assertEqual(error.message, "invalid header escape")


class LimitTests(SynchronousTestCase):
    def test_frame_at_max_frame_is_accepted(self) -> None:
        head = b"SEND\n\n"
        data = head + b"x" * (100 - len(head)) + b"\x00"
        self.assertEqual(len(parse_one(data, max_frame=100).body), 100 - len(head))

    def test_frame_over_max_frame_is_refused(self) -> None:
        head = b"SEND\n\n"
        data = head + b"x" * (101 - len(head)) + b"\x00"
        self.assertLimit(data, "frame too large", max_frame=100)

    def test_content_length_frame_over_max_frame_is_refused(self) -> None:
        head = b"SEND\ncontent-length:100\n\n"
        self.assertLimit(head + b"x" * 100 + b"\x00", "frame too large", max_frame=100)

    def test_unterminated_stream_is_refused_once_over_max_frame(self) -> None:
        parser = FrameParser(max_frame=65536)
        parser.feed(b"SEND\n\n")
        chunk = b"x" * 1024
        fed = 0
        with self.assertRaises(FrameError) as caught:
            for fed in range(1, 1025):
                parser.feed(chunk)
        self.assertEqual(caught.exception.message, "frame too large")
        self.assertEqual(fed, 64)

    def test_endless_header_line_is_refused_once_over_max_frame(self) -> None:
        parser = FrameParser(max_frame=1000, max_header_length=100000)
        parser.feed(b"SEND\nx:")
        with self.assertRaises(FrameError) as caught:
            for _ in range(100):
                parser.feed(b"y" * 100)
        self.assertEqual(caught.exception.message, "frame too large")

    def test_big_content_length_is_refused_before_the_body(self) -> None:
        parser = FrameParser(max_frame=65536)
        error = self.assertRaises(FrameError, parser.feed, b"SEND\ncontent-length:65537\n\n")
        self.assertEqual(error.message, "frame too large")

    def test_absurd_content_length_is_refused_as_too_large(self) -> None:
        self.assertLimit(b"SEND\ncontent-length:" + b"9" * 5000 + b"\n\n", "frame too large")

    def test_max_headers_is_accepted(self) -> None:
        data = b"SEND\n" + b"x:1\n" * 5 + b"\n\x00"
        self.assertEqual(len(parse_one(data, max_headers=5).headers), 5)

    def test_more_than_max_headers_is_refused(self) -> None:
        self.assertLimit(b"SEND\n" + b"x:1\n" * 6 + b"\n\x00", "too many headers", max_headers=5)

    def test_header_at_max_length_is_accepted(self) -> None:
        frame = parse_one(b"SEND\nx:" + b"y" * 8 + b"\r\n\r\n\x00", max_header_length=10)
        self.assertEqual(frame.get("x"), "y" * 8)

    def test_header_over_max_length_is_refused(self) -> None:
        self.assertLimit(b"SEND\nx:" + b"y" * 9 + b"\n\n\x00", "header too long", max_header_length=10)

    def test_partial_header_over_max_length_is_refused_before_its_end(self) -> None:
        parser = FrameParser(max_header_length=10)
        parser.feed(b"SEND\nx:" + b"y" * 9)
        self.assertRaises(FrameError, parser.feed, b"y")

    def test_header_length_counts_bytes_not_characters(self) -> None:
        data = "SEND\nx:{}\n\n\x00".format("가" * 3).encode()  # 11 bytes, 5 characters
        self.assertLimit(data, "header too long", max_header_length=10)

    def assertLimit(self, data: bytes, message: str, **limits: int) -> None:
        error = self.assertRaises(FrameError, parse, data, "1.2", **limits)
        self.assertEqual(error.message, message)


class ErrorTests(SynchronousTestCase):
    def test_header_without_colon_is_refused(self) -> None:
        self.assertRefused(b"SEND\ndestination\n\n\x00", "malformed header")

    def test_header_with_empty_name_is_refused(self) -> None:
        self.assertRefused(b"SEND\n:value\n\n\x00", "malformed header")

    def test_empty_command_is_refused(self) -> None:
        self.assertRefused(b"\x00", "empty command")

    def test_whitespace_command_is_refused(self) -> None:
        self.assertRefused(b" \n\n\x00", "unknown command")

    def test_unknown_command_is_refused(self) -> None:
        self.assertRefused(b"PUBLISH\n\n\x00", "unknown command")

    def test_commands_are_case_sensitive(self) -> None:
        self.assertRefused(b"send\n\n\x00", "unknown command")

    def test_long_garbage_is_refused_before_any_newline(self) -> None:
        self.assertRefused(b"GET / HTTP/1.1", "unknown command")

    def test_non_utf8_header_is_refused(self) -> None:
        self.assertRefused(b"SEND\nx:\xff\n\n\x00", "header is not UTF-8")

    def test_nul_in_headers_is_refused(self) -> None:
        self.assertRefused(b"SEND\nx:a\x00b\n\n\x00", "NUL in frame headers")

    def test_nul_before_blank_line_is_refused_without_waiting(self) -> None:
        self.assertRefused(b"DISCONNECT\x00", "NUL in frame headers")

    def test_bare_cr_in_header_is_refused(self) -> None:
        self.assertRefused(b"SEND\nx:a\rb\n\n\x00", "bare CR in header")

    def test_parser_is_poisoned_after_an_error(self) -> None:
        parser = FrameParser()
        first = self.assertRaises(FrameError, parser.feed, b"BOGUS\n\n\x00")
        second = self.assertRaises(FrameError, parser.feed, SEND)
        self.assertIs(second, first)

    def test_error_in_a_feed_drops_that_feeds_frames(self) -> None:
        self.assertRefused(SEND + b"BOGUS\n\n\x00", "unknown command")

    def test_error_messages_are_one_short_line(self) -> None:
        bad = [
            b"\x00", b"BOGUS\n\n\x00", b"SEND\nx\n\n\x00", b"SEND\nx:\\t\n\n\x00",
            b"SEND\nx:\xff\n\n\x00", b"SEND\ncontent-length:-1\n\n\x00",
            b"SEND\ncontent-length:1\n\nab\x00", b"SEND\nx:\x00", b"SEND\nx:\r\r\n\n\x00",
            b"SEND\n" + b"x:1\n" * 101 + b"\n\x00", b"SEND\nx:" + b"y" * 9000,
            b"SEND\n\n" + b"y" * 70000,
        ]  # fmt: skip
        for data in bad:
            error = self.assertRaises(FrameError, parse, data)
            self.assertLessEqual(len(error.message), 40)
            self.assertNotIn("\n", error.message + error.detail)
            self.assertNotIn("\r", error.message + error.detail)

    def assertRefused(self, data: bytes, message: str) -> None:
        error = self.assertRaises(FrameError, parse, data)
        self.assertEqual(error.message, message)
