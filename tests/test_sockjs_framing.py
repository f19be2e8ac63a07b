"""SockJS framing: frames, JSON escaping and client payload decoding (sockjs-protocol 0.3.3 rules)."""

from __future__ import annotations

import json
import re

from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import Outbound
from anonchat.web.sockjs import framing

#: The characters sockjs-protocol 0.3.3 requires a server to escape (its
#: ``escapable_by_server``), from U+00FF up, as the suite checks them.
_SERVER_ESCAPABLE = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")


class FrameTests(SynchronousTestCase):
    def test_open_and_heartbeat_are_single_letters(self) -> None:
        self.assertEqual((framing.OPEN, framing.HEARTBEAT), (b"o", b"h"))

    def test_array_frame_joins_encoded_literals(self) -> None:
        self.assertEqual(framing.array_frame([b'"a"', b'"b"']), b'a["a","b"]')

    def test_close_frame_has_code_and_json_reason(self) -> None:
        self.assertEqual(framing.close_frame(3000, "Go away!"), b'c[3000,"Go away!"]')
        self.assertEqual(framing.close_frame(2010, 'say "hi"'), b'c[2010,"say \\"hi\\""]')


class LiteralTests(SynchronousTestCase):
    def test_stomp_frame_with_newlines_and_nul_becomes_one_json_string(self) -> None:
        frame = b"MESSAGE\ndestination:/topic/chat\n\n{}\x00"
        literal = framing.encode_literal(frame)
        self.assertEqual(literal, b'"MESSAGE\\ndestination:/topic/chat\\n\\n{}\\u0000"')
        self.assertEqual(json.loads(literal).encode("utf-8"), frame)

    def test_korean_and_emoji_pass_verbatim_as_utf8(self) -> None:
        text = "안녕하세요 👋"
        self.assertEqual(framing.encode_literal(text.encode("utf-8")), ('"' + text + '"').encode("utf-8"))

    def test_line_and_paragraph_separators_are_escaped(self) -> None:
        literal = framing.encode_literal("a\u2028b\u2029c".encode("utf-8"))
        self.assertEqual(literal, b'"a\\u2028b\\u2029c"')

    def test_every_character_the_protocol_names_is_escaped(self) -> None:
        chars = "".join(chr(i) for i in range(0xFF, 0x10000) if _SERVER_ESCAPABLE.match(chr(i)))
        chars = "".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF)
        literal = framing.encode_literal(chars.encode("utf-8")).decode("utf-8")
        expected = '"' + "".join("\\u%04x" % ord(c) for c in chars) + '"'
        self.assertEqual(literal, expected)
        self.assertEqual(json.loads(literal), chars)

    def test_control_characters_are_escaped(self) -> None:
        literal = framing.encode_literal(bytes(range(0x20)))
        self.assertTrue(all(b >= 0x20 for b in literal), literal)

    def test_lone_surrogate_is_escaped_not_dropped(self) -> None:
        data = framing.message_bytes("x\ud800y")
        self.assertEqual(framing.encode_literal(data), b'"x\\ud800y"')

    def test_invalid_utf8_does_not_raise(self) -> None:
        self.assertEqual(json.loads(framing.encode_literal(b"\xff")), "\ufffd")

    def test_literal_is_computed_once_per_outbound(self) -> None:
        out = Outbound(b"MESSAGE\n\nhi\x00")
        self.assertIs(framing.literal(out), framing.literal(out))


class PayloadTests(SynchronousTestCase):
    def test_http_payload_is_an_array_of_strings(self) -> None:
        self.assertEqual(framing.decode_array(b'["a","\\u00e9",""]'), ["a", "é", ""])

    def test_http_payload_may_be_an_empty_array(self) -> None:
        self.assertEqual(framing.decode_array(b"[]"), [])

    def test_empty_http_payload_is_payload_expected(self) -> None:
        self.assertRaises(framing.EmptyPayload, framing.decode_array, b"")

    def test_truncated_json_is_broken(self) -> None:
        self.assertRaises(framing.BrokenJSON, framing.decode_array, b'["a')

    def test_http_payload_of_non_strings_is_broken(self) -> None:
        self.assertRaises(framing.BrokenJSON, framing.decode_array, b"[1]")
        self.assertRaises(framing.BrokenJSON, framing.decode_array, b'"a"')

    def test_non_utf8_payload_is_broken(self) -> None:
        self.assertRaises(framing.BrokenJSON, framing.decode_array, b'["\xff"]')

    def test_websocket_message_is_an_array_or_one_string(self) -> None:
        self.assertEqual(framing.decode_websocket(b'["a","b"]'), ["a", "b"])
        self.assertEqual(framing.decode_websocket(b'"a"'), ["a"])

    def test_empty_websocket_message_is_ignored(self) -> None:
        self.assertEqual(framing.decode_websocket(b""), [])

    def test_broken_websocket_message_raises(self) -> None:
        self.assertRaises(framing.BrokenJSON, framing.decode_websocket, b'["a')
        self.assertRaises(framing.BrokenJSON, framing.decode_websocket, b"{}")

    def test_escaped_surrogate_pair_decodes_to_one_emoji(self) -> None:
        (message,) = framing.decode_array(b'["\\ud83d\\udc4b"]')
        self.assertEqual(framing.message_bytes(message), "👋".encode("utf-8"))
