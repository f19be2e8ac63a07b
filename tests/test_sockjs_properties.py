"""Property tests of the SockJS framing (``anonchat.web.sockjs.framing``).

Strings are compared as UTF-16 code units: the peer is sockjs-client in
JavaScript, where a string is a sequence of UTF-16 units and a lone
surrogate is a legal string. The framing carries lone surrogates (escaped
as ``\\udXXX``) rather than dropping them; refusing such text is the STOMP
layer's job (CONTRACT: refused at ``SEND``). Python's ``json.loads`` joins an
escaped high+low pair into one code point, exactly as JavaScript sees it,
hence the comparison by units.
"""

from __future__ import annotations

import json
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import Outbound
from anonchat.web.sockjs import framing

fast = settings(max_examples=200, deadline=None)

#: What a server must never put raw into a frame: sockjs-protocol 0.3.3's
#: ``escapable_by_server`` (control characters, U+200C-U+200F,
#: U+2028-U+202F, U+2060-U+206F, U+FFF0-U+FFFF), plus what sockjs-node also
#: escapes (U+FEFF and surrogates; a raw surrogate is not even UTF-8).
MUST_ESCAPE = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufeff\ufff0-\uffff\ud800-\udfff]")

#: Characters that exercise every escaping rule, over-represented.
AWKWARD = (
    "\x00\x01\x08\t\n\r\x1f\x7f\x85\"\\/'"
    "\u00ff\u200b\u200c\u200d\u200f\u2028\u2029\u202a\u202f\u2060\u206f\ufeff\ufff0\ufffd\uffff"
    "\ud800\udbff\udc00\udfff\ud83d\udc4b"
    "가힣👋😀𠜎é"
)
any_char = st.one_of(st.sampled_from(AWKWARD), st.characters(exclude_categories=()))
any_text = st.text(any_char, max_size=20)
clean_text = st.text(st.one_of(st.sampled_from(AWKWARD), st.characters()).filter(lambda c: not "\ud800" <= c <= "\udfff"),
                     max_size=20)
messages = st.lists(any_text, max_size=6)


def units(text: str) -> bytes:
    """``text`` as the UTF-16 code units a JavaScript string holds."""
    return text.encode("utf-16-le", "surrogatepass")


def has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def frame_of(strings: list[str]) -> bytes:
    return framing.array_frame(framing.encode_literal(framing.message_bytes(s)) for s in strings)


class OutboundFrameProperties(SynchronousTestCase):
    @fast
    @given(messages)
    def test_array_frame_decodes_to_the_same_strings(self, strings: list[str]) -> None:
        """``a[...]`` of any strings is strict UTF-8 JSON giving back the same strings."""
        frame = frame_of(strings)
        self.assertTrue(frame.startswith(b"a[") and frame.endswith(b"]"), frame)
        decoded = json.loads(frame[1:].decode("utf-8"))  # strict: no raw surrogate may reach the wire
        self.assertIsInstance(decoded, list)
        self.assertEqual([units(d) for d in decoded], [units(s) for s in strings])
        if not any(has_surrogate(s) for s in strings):
            self.assertEqual(decoded, strings)

    @fast
    @given(messages)
    def test_frames_hold_no_raw_character_the_protocol_escapes(self, strings: list[str]) -> None:
        """No control character, U+2028/2029, or other sockjs-escaped character appears raw."""
        text = frame_of(strings).decode("utf-8")
        self.assertIsNone(MUST_ESCAPE.search(text), ascii(text))

    @fast
    @given(st.text(st.characters(exclude_characters='"\\').filter(lambda c: not MUST_ESCAPE.match(c)), max_size=30))
    def test_other_characters_pass_verbatim(self, text: str) -> None:
        """Korean, emoji and the rest are sent as themselves in UTF-8, not as ``\\u`` escapes."""
        self.assertEqual(framing.encode_literal(text.encode("utf-8")), ('"' + text + '"').encode("utf-8"))

    @fast
    @given(st.binary(max_size=40))
    @example(b"\xed\xa0\xbd\xed\xb2\x8b")  # CESU-8 of U+1F44B: two encoded surrogates
    @example(b"\xff\xfe\x00\n")
    def test_any_bytes_become_one_safe_json_string(self, data: bytes) -> None:
        """Whatever bytes the STOMP layer hands over, the literal is one clean JSON string."""
        literal = framing.encode_literal(data)
        text = literal.decode("utf-8")
        self.assertIsNone(MUST_ESCAPE.search(text), ascii(text))
        value = json.loads(text)
        self.assertIsInstance(value, str)
        self.assertEqual(framing.literal(Outbound(data)), literal)
        try:
            expected = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        self.assertEqual(value, expected)

    @fast
    @given(st.integers(1000, 4999), any_text)
    def test_close_frame_round_trips(self, code: int, reason: str) -> None:
        frame = framing.close_frame(code, reason)
        self.assertTrue(frame.startswith(b"c["), frame)
        text = frame[1:].decode("utf-8")
        self.assertIsNone(MUST_ESCAPE.search(text), ascii(text))
        got_code, got_reason = json.loads(text)
        self.assertEqual((got_code, units(got_reason)), (code, units(reason)))


# Pieces of JSON (and of not-JSON), so that random payloads reach deep decoder states.
json_tokens = st.sampled_from([
    b"[", b"]", b"{", b"}", b'"', b",", b":", b" ", b"\n", b"\\", b"\\u", b"d800", b"dc00", b"\\ud83d\\udc4b",
    b"\\n", b"\\x", b"0", b"-1", b"1e999", b"null", b"true", b"NaN", b"Infinity", b"a", "가".encode(), b"\x00",
    b"\xff", b"\xc3", b"\xed\xa0\x80", '"👋"'.encode(),
])  # fmt: skip
jsonish = st.lists(json_tokens, max_size=30).map(b"".join)
deeply_nested = st.builds(lambda n, inner, close: b"[" * n + inner + b"]" * close,
                          st.integers(100, 20000), jsonish, st.integers(0, 20000))
payloads = st.one_of(st.binary(max_size=60), jsonish, deeply_nested)


class PayloadProperties(SynchronousTestCase):
    def assertDecodesOrRefuses(self, decode: object, payload: bytes | str) -> None:
        try:
            result = decode(payload)  # type: ignore[operator]
        except framing.PayloadError:
            return
        # Anything else raised propagates and fails the test: the transports
        # catch only PayloadError.
        self.assertIsInstance(result, list)
        for message in result:
            self.assertIsInstance(message, str)
            framing.message_bytes(message)  # handing it to STOMP never raises either

    @fast
    @given(payloads)
    @example(b"[" * 5000)
    @example(b'["' + b"[" * 5000 + b'"]')
    @example(b"")
    def test_any_payload_gives_strings_or_a_payload_error(self, payload: bytes) -> None:
        """xhr_send / WebSocket payloads, as bytes and as text: a list of strings or PayloadError."""
        for decode in (framing.decode_array, framing.decode_websocket):
            self.assertDecodesOrRefuses(decode, payload)
            self.assertDecodesOrRefuses(decode, payload.decode("utf-8", "surrogateescape"))
            self.assertDecodesOrRefuses(decode, payload.decode("latin-1"))

    @fast
    @given(st.lists(any_text, max_size=6), st.booleans())
    def test_what_sockjs_client_sends_decodes_to_the_same_strings(self, strings: list[str], ascii_only: bool) -> None:
        """``JSON.stringify`` of an array (escaped or not) decodes to the same strings on both paths."""
        if any(has_surrogate(s) for s in strings):
            ascii_only = True  # raw lone surrogates cannot be sent as UTF-8
        payload = json.dumps(strings, ensure_ascii=ascii_only).encode("utf-8")
        for decode in (framing.decode_array, framing.decode_websocket):
            decoded = decode(payload)
            self.assertEqual([units(d) for d in decoded], [units(s) for s in strings])
            for message in decoded:
                framing.message_bytes(message)  # never raises, lone surrogates included

    @fast
    @given(clean_text)
    def test_one_string_is_one_websocket_message(self, text: str) -> None:
        self.assertEqual(framing.decode_websocket(json.dumps(text, ensure_ascii=False).encode("utf-8")), [text])
        self.assertRaises(framing.BrokenJSON, framing.decode_array, json.dumps(text).encode("utf-8"))

    @fast
    @given(st.lists(clean_text, max_size=6))
    def test_server_frame_payload_is_a_valid_client_payload(self, strings: list[str]) -> None:
        """What the server frames as ``a[...]``, read back as a client payload, is the same list."""
        self.assertEqual(framing.decode_array(frame_of(strings)[1:]), strings)
