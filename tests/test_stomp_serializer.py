"""serialize(): frame layout, header escaping per version, round trips."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.frame import Frame
from anonchat.stomp.parser import FrameParser
from anonchat.stomp.serializer import serialize

AWKWARD = Frame("MESSAGE", (("a:b", "1\n2:3\\4\r5"),), b"")


def round_trip(frame: Frame, version: str) -> Frame:
    parser = FrameParser()
    parser.version = version
    [parsed] = parser.feed(serialize(frame, version))
    return parsed


class LayoutTests(SynchronousTestCase):
    def test_command_headers_blank_line_body_nul(self) -> None:
        frame = Frame("MESSAGE", (("destination", "/topic/chat"), ("subscription", "sub-0")), b"{}")
        self.assertEqual(
            serialize(frame), b"MESSAGE\ndestination:/topic/chat\nsubscription:sub-0\n\n{}\x00"
        )

    def test_frame_without_headers(self) -> None:
        self.assertEqual(serialize(Frame("RECEIPT")), b"RECEIPT\n\n\x00")

    def test_content_length_is_not_added(self) -> None:
        self.assertEqual(serialize(Frame("ERROR", (), b"oops")), b"ERROR\n\noops\x00")

    def test_repeated_headers_are_kept_in_order(self) -> None:
        frame = Frame("SEND", (("x", "1"), ("y", "2"), ("x", "3")))
        self.assertEqual(serialize(frame), b"SEND\nx:1\ny:2\nx:3\n\n\x00")

    def test_headers_are_utf8(self) -> None:
        frame = Frame("CONNECTED", (("user-name", "익명-12345"),))
        self.assertEqual(serialize(frame), "CONNECTED\nuser-name:익명-12345\n\n\x00".encode())

    def test_body_is_copied_verbatim(self) -> None:
        frame = Frame("MESSAGE", (("content-length", "3"),), b"\x00\xff\n")
        self.assertEqual(serialize(frame), b"MESSAGE\ncontent-length:3\n\n\x00\xff\n\x00")

    def test_unknown_version_is_refused(self) -> None:
        self.assertRaises(ValueError, serialize, Frame("RECEIPT"), "2.0")


class EscapingTests(SynchronousTestCase):
    def test_v12_escapes_backslash_newline_colon_and_cr(self) -> None:
        self.assertEqual(serialize(AWKWARD, "1.2"), b"MESSAGE\na\\cb:1\\n2\\c3\\\\4\\r5\n\n\x00")

    def test_v12_is_the_default(self) -> None:
        self.assertEqual(serialize(AWKWARD), serialize(AWKWARD, "1.2"))

    def test_v11_escapes_backslash_newline_and_colon(self) -> None:
        frame = Frame("MESSAGE", (("a:b", "1\n2:3\\4"),))
        self.assertEqual(serialize(frame, "1.1"), b"MESSAGE\na\\cb:1\\n2\\c3\\\\4\n\n\x00")

    def test_v11_refuses_cr(self) -> None:
        self.assertRaises(ValueError, serialize, AWKWARD, "1.1")

    def test_v10_does_not_escape(self) -> None:
        frame = Frame("MESSAGE", (("path", "C:\\tmp:x"),))
        self.assertEqual(serialize(frame, "1.0"), b"MESSAGE\npath:C:\\tmp:x\n\n\x00")

    def test_v10_refuses_newline_instead_of_injecting_a_header(self) -> None:
        frame = Frame("ERROR", (("message", "bad\nreceipt-id:evil"),))
        self.assertRaises(ValueError, serialize, frame, "1.0")

    def test_v10_refuses_colon_in_header_name(self) -> None:
        self.assertRaises(ValueError, serialize, Frame("MESSAGE", (("a:b", "c"),)), "1.0")

    def test_connected_is_never_escaped(self) -> None:
        frame = Frame("CONNECTED", (("server", "anonchat/1.0"), ("x", "a\\b")))
        self.assertEqual(serialize(frame, "1.2"), b"CONNECTED\nserver:anonchat/1.0\nx:a\\b\n\n\x00")

    def test_connect_is_never_escaped(self) -> None:
        frame = Frame("CONNECT", (("passcode", "a:b\\c"),))
        self.assertEqual(serialize(frame, "1.1"), b"CONNECT\npasscode:a:b\\c\n\n\x00")

    def test_connected_refuses_newline(self) -> None:
        frame = Frame("CONNECTED", (("user-name", "x\nsession:evil"),))
        self.assertRaises(ValueError, serialize, frame, "1.2")

    def test_nul_in_header_is_refused_in_every_version(self) -> None:
        for version in ("1.0", "1.1", "1.2"):
            self.assertRaises(ValueError, serialize, Frame("SEND", (("x", "a\x00b"),)), version)

    def test_empty_header_name_is_refused(self) -> None:
        self.assertRaises(ValueError, serialize, Frame("SEND", (("", "x"),)))


class RoundTripTests(SynchronousTestCase):
    def test_v12_round_trips_every_escapable_character(self) -> None:
        self.assertEqual(round_trip(AWKWARD, "1.2"), AWKWARD)

    def test_v11_round_trips_escapable_characters(self) -> None:
        frame = Frame("SEND", (("a:b", "1\n2:3\\4"), ("a:b", "second")), b"body")
        self.assertEqual(round_trip(frame, "1.1"), frame)

    def test_v10_round_trips_backslashes_and_colons_in_values(self) -> None:
        frame = Frame("SEND", (("x", "C:\\n\\c"),), b"body")
        self.assertEqual(round_trip(frame, "1.0"), frame)

    def test_connected_round_trips_backslashes(self) -> None:
        frame = Frame("CONNECTED", (("version", "1.2"), ("x", "a\\b:c")))
        self.assertEqual(round_trip(frame, "1.2"), frame)

    def test_body_with_nul_round_trips_with_content_length(self) -> None:
        frame = Frame("MESSAGE", (("content-length", "5"),), b"\x00a\x00b\x00")
        self.assertEqual(round_trip(frame, "1.2"), frame)


class MessageFramePartsTests(SynchronousTestCase):
    """A broadcast serialized once, spliced per subscription id: byte for
    byte the frame message_frame builds, whatever the id holds."""

    def test_halves_around_any_subscription_line_make_the_whole_frame(self) -> None:
        from anonchat.stomp.serializer import header_line
        from anonchat.stomp.server_frames import message_frame, message_frame_parts

        body = "{\"content\":\"subscription:\\u0001sub\\u0001\\n 안녕\"}".encode()
        for version in ("1.0", "1.1", "1.2"):
            head, tail = message_frame_parts("/topic/chat", "17-3", body, version)
            for subscription in ("sub-0", "r1-7", "a:b", "x\\y", "줄\n바꿈" if version != "1.0" else "plain"):
                self.assertEqual(head + header_line("subscription", subscription, version) + tail,
                                 message_frame("/topic/chat", subscription, "17-3", body, version),
                                 (version, subscription))
