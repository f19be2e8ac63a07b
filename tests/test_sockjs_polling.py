"""SockJS polling transports (xhr, jsonp) and the send URLs (xhr_send, jsonp_send), over real twisted.web."""

from __future__ import annotations

import json

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from anonchat.stomp.outbound import Outbound
from anonchat.web.sockjs import SockJSOptions
from tests.hostile import http
from tests.inprocess import start_service, ws_url
from tests.sockjs_support import HTTPHarness, RecorderFactory
from tests.stompfakes import frame
from tests.wsclient import WsClient

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"
FORM = {b"Content-Type": b"application/x-www-form-urlencoded"}


class XhrPollingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_new_session_answers_open_frame(self) -> None:
        r = self.http.post(b"/000/s/xhr").response()
        self.assertEqual((r.status, r.body), (200, b"o\n"))
        self.assertEqual(r.header("content-type"), "application/javascript;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertEqual(r.header("access-control-allow-origin"), "*")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertEqual(r.header("content-length"), "2")

    def test_sent_message_comes_back_on_next_poll(self) -> None:
        self.http.post(b"/0/s/xhr")
        r = self.http.post(b"/0/s/xhr_send", b'["x"]').response()
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(r.header("content-type"), "text/plain;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertEqual(r.header("access-control-allow-origin"), "*")
        self.assertEqual(self.http.post(b"/0/s/xhr").response().body, b'a["x"]\n')

    def test_stomp_session_gets_client_address_and_transport_name(self) -> None:
        self.http.post(b"/0/s/xhr")
        client = self.http.factory.last.client
        self.assertEqual((client.address, client.transport), ("10.1.2.3", "xhr"))

    def test_each_message_reaches_the_receiver_as_utf8(self) -> None:
        self.http.post(b"/0/s/xhr")
        payload = '["SEND\\ndestination:/app/chat.sendMessage\\n\\n{\\"content\\":\\"안녕 👋\\"}\\u0000","b"]'
        self.http.post(b"/0/s/xhr_send", payload.encode("utf-8"))
        self.assertEqual(
            self.http.factory.last.received,
            ['SEND\ndestination:/app/chat.sendMessage\n\n{"content":"안녕 👋"}\x00'.encode("utf-8"), b"b"],
        )

    def test_queued_messages_are_batched_into_one_array(self) -> None:
        self.http.post(b"/0/s/xhr")
        for ct in (b"text/plain", b"T", b"application/json", b"application/xml", b"", b"text/xml; charset=utf-8"):
            r = self.http.post(b"/0/s/xhr_send", b'["a"]', headers={b"Content-Type": ct}).response()
            self.assertEqual(r.status, 204)
        self.assertEqual(self.http.post(b"/0/s/xhr").response().body, b"a[" + b",".join([b'"a"'] * 6) + b"]\n")

    def test_empty_array_is_accepted(self) -> None:
        self.http.post(b"/0/s/xhr")
        self.assertEqual(self.http.post(b"/0/s/xhr_send", b"[]").response().status, 204)

    def test_send_to_unknown_session_is_404(self) -> None:
        self.assertEqual(self.http.post(b"/0/nobody/xhr_send", b'["x"]').response().status, 404)

    def test_empty_payload_is_500_payload_expected(self) -> None:
        self.http.post(b"/0/s/xhr")
        r = self.http.post(b"/0/s/xhr_send", b"").response()
        self.assertEqual(r.status, 500)
        self.assertIn(b"Payload expected.", r.body)

    def test_send_errors_carry_cors_headers(self) -> None:
        self.http.post(b"/0/s/xhr")
        r = self.http.post(b"/0/s/xhr_send", b"", headers={b"Origin": b"http://t"}).response()
        self.assertEqual(r.status, 500)
        self.assertEqual(r.header("access-control-allow-origin"), "http://t")

    def test_broken_json_is_500_and_session_goes_on(self) -> None:
        self.http.post(b"/0/s/xhr")
        r = self.http.post(b"/0/s/xhr_send", b'["x').response()
        self.assertEqual(r.status, 500)
        self.assertIn(b"Broken JSON encoding.", r.body)
        self.assertEqual(self.http.post(b"/0/s/xhr_send", b'["a"]').response().status, 204)
        self.assertEqual(self.http.post(b"/0/s/xhr").response().body, b'a["a"]\n')

    def test_oversized_payload_is_refused(self) -> None:
        http = HTTPHarness(options=SockJSOptions(max_message_size=10))
        http.post(b"/0/s/xhr")
        self.assertEqual(http.post(b"/0/s/xhr_send", b'["0123456789"]').response().status, 413)
        self.assertEqual(http.factory.last.received, [])

    def test_parked_poll_is_answered_when_a_message_arrives(self) -> None:
        self.http.post(b"/0/s/xhr")
        poll = self.http.post(b"/0/s/xhr")
        self.assertEqual(self.http.factory.last.transport.queued_bytes, 0)
        self.assertEqual(poll.transport.value(), b"")
        self.http.factory.last.transport.send(Outbound(b"MESSAGE\n\nhi\x00"))
        r = poll.response()
        self.assertTrue(r.complete)
        self.assertEqual(r.body, b'a["MESSAGE\\n\\nhi\\u0000"]\n')

    def test_parked_poll_gets_heartbeat(self) -> None:
        self.http.post(b"/0/s/xhr")
        poll = self.http.post(b"/0/s/xhr")
        self.http.clock.advance(25)
        self.assertEqual(poll.response().body, b"h\n")

    def test_second_poll_gets_another_connection_still_open(self) -> None:
        self.http.post(b"/0/s/xhr")
        first = self.http.post(b"/0/s/xhr")
        r = self.http.post(b"/0/s/xhr").response()
        self.assertEqual((r.status, r.body), (200, b'c[2010,"Another connection still open"]\n'))
        self.assertEqual(first.transport.value(), b"")

    def test_aborted_poll_ends_the_session(self) -> None:
        self.http.post(b"/0/s/xhr")
        self.http.post(b"/0/s/xhr").abort()
        self.assertEqual(self.http.factory.last.lost, 1)
        body = self.http.post(b"/0/s/xhr").response().body
        self.assertIn(body, (b"o\n", b'c[1002,"Connection interrupted"]\n'))

    def test_session_times_out_without_polls(self) -> None:
        self.http.post(b"/0/s/xhr")
        self.http.clock.advance(5.1)
        self.assertEqual(self.http.factory.last.lost, 1)
        self.assertEqual(self.http.post(b"/0/s/xhr_send", b'["x"]').response().status, 404)
        self.assertEqual(self.http.post(b"/0/s/xhr").response().body, b"o\n")
        self.assertEqual(len(self.http.factory.made), 2)

    def test_closed_session_answers_go_away_until_it_expires(self) -> None:
        http = HTTPHarness(RecorderFactory(close_at_once=True))
        self.assertEqual(http.post(b"/0/s/xhr").response().body, b"o\n")
        http.clock.advance(0)
        self.assertEqual(http.factory.last.lost, 1)
        for _ in range(2):
            self.assertEqual(http.post(b"/0/s/xhr").response().body, b'c[3000,"Go away!"]\n')
        http.clock.advance(5)
        self.assertEqual(http.post(b"/0/s/xhr").response().body, b"o\n")

    def test_request_headers_are_echoed_for_cors(self) -> None:
        r = self.http.post(b"/0/a/xhr", headers={b"Access-Control-Request-Headers": b"a, b, c"}).response()
        self.assertEqual(r.header("access-control-allow-headers"), "a, b, c")
        r = self.http.post(b"/0/b/xhr", headers={b"Access-Control-Request-Headers": b""}).response()
        self.assertIsNone(r.header("access-control-allow-headers"))

    def test_preflight_on_xhr_urls(self) -> None:
        for suffix in (b"/xhr", b"/xhr_send", b"/xhr_streaming"):
            r = self.http.request(b"OPTIONS", b"/abc/abc" + suffix, headers={b"Origin": b"http://t"}).response()
            self.assertEqual(r.status, 204)
            self.assertEqual(r.header("access-control-allow-methods"), "OPTIONS, POST")
            self.assertEqual(r.header("access-control-allow-origin"), "http://t")
            self.assertRegex(r.header("cache-control") or "", "public, max-age=[1-9][0-9]{6}")
        self.assertEqual(len(self.http.resource.registry), 0)


class JsonpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_jsonp_wraps_frames_in_the_callback(self) -> None:
        r = self.http.get(b"/0/s/jsonp?c=%63allback").response()
        self.assertEqual((r.status, r.body), (200, b'callback("o");\r\n'))
        self.assertEqual(r.header("content-type"), "application/javascript;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        r = self.http.post(b"/0/s/jsonp_send", b"d=%5B%22x%22%5D", headers=FORM).response()
        self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(r.header("content-type"), "text/plain;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertEqual(self.http.get(b"/0/s/jsonp?c=callback").response().body, b'callback("a[\\"x\\"]");\r\n')

    def test_jsonp_escapes_separators_inside_the_callback_string(self) -> None:
        self.http.get(b"/0/s/jsonp?c=cb")
        self.http.factory.last.transport.send(Outbound("x\u2028y".encode("utf-8")))
        self.assertEqual(self.http.get(b"/0/s/jsonp?c=cb").response().body, b'cb("a[\\"x\\\\u2028y\\"]");\r\n')

    def test_missing_callback_is_500(self) -> None:
        r = self.http.get(b"/a/a/jsonp").response()
        self.assertEqual(r.status, 500)
        self.assertIn(b'"callback" parameter required', r.body)

    def test_unsafe_callback_is_500(self) -> None:
        for callback in (b"%20", b"*", b"abc(", b"abc%28", b"a%3Cscript%3E"):
            r = self.http.get(b"/a/a/jsonp?c=" + callback).response()
            self.assertEqual(r.status, 500, callback)
            self.assertIn(b'invalid "callback" parameter', r.body)
        self.assertEqual(len(self.http.resource.registry), 0)

    def test_jsonp_send_accepts_form_and_raw_bodies(self) -> None:
        self.http.get(b"/0/s/jsonp?c=x")
        self.assertEqual(self.http.post(b"/0/s/jsonp_send", b"d=%5B%22abc%22%5D", headers=FORM).response().body, b"ok")
        raw = self.http.post(b"/0/s/jsonp_send", b'["%61bc"]', headers={b"Content-Type": b"text/plain"})
        self.assertEqual(raw.response().body, b"ok")
        self.assertEqual(self.http.get(b"/0/s/jsonp?c=x").response().body, b'x("a[\\"abc\\",\\"%61bc\\"]");\r\n')

    def test_jsonp_send_rejects_missing_or_broken_payload(self) -> None:
        self.http.get(b"/0/s/jsonp?c=x")
        r = self.http.post(b"/0/s/jsonp_send", b"d=%5B%22x", headers=FORM).response()
        self.assertEqual(r.status, 500)
        self.assertIn(b"Broken JSON encoding.", r.body)
        for data in (b"", b"d=", b"p=p"):
            r = self.http.post(b"/0/s/jsonp_send", data, headers=FORM).response()
            self.assertEqual(r.status, 500, data)
            self.assertIn(b"Payload expected.", r.body)
        self.assertEqual(self.http.post(b"/0/s/jsonp_send", b"d=%5B%22b%22%5D", headers=FORM).response().body, b"ok")
        self.assertEqual(self.http.get(b"/0/s/jsonp?c=x").response().body, b'x("a[\\"b\\"]");\r\n')

    def test_jsonp_send_form_carries_utf8(self) -> None:
        self.http.get(b"/0/s/jsonp?c=x")
        self.http.post(b"/0/s/jsonp_send", b"d=%5B%22%EC%95%88%EB%85%95%22%5D", headers=FORM)
        self.assertEqual(self.http.factory.last.received, ["안녕".encode("utf-8")])

    def test_closed_session_answers_go_away(self) -> None:
        http = HTTPHarness(RecorderFactory(close_at_once=True))
        self.assertEqual(http.get(b"/0/s/jsonp?c=x").response().body, b'x("o");\r\n')
        for _ in range(2):
            self.assertEqual(http.get(b"/0/s/jsonp?c=x").response().body, b'x("c[3000,\\"Go away!\\"]");\r\n')


class PollingResumeTests(TestCase):
    """A resume replay over xhr polling goes at the speed of the polls,
    a send buffer's worth per round trip, not one message per poll."""

    timeout = 60

    def test_resume_of_200_messages_arrives_in_a_few_polls(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            svc = await start_service(self, rate_limit=0.0, frame_rate=0.0, api_rate=0.0)
            writer = WsClient(ws_url(svc))
            self.addCleanup(writer.close)
            await writer.opened
            writer.send(frame("CONNECT", accept_version="1.2", heart_beat="0,0"))
            await writer.wait_for_command("CONNECTED")
            for n in range(199):
                writer.send(frame("SEND", json.dumps({"content": f"message {n}"}).encode(),
                                  destination="/app/chat.sendMessage", receipt=f"r{n}"))
            await writer.wait_for_command("RECEIPT", 199, timeout=30)
            first = (await svc.buffer.recent(200))[0].id  # the writer's JOIN
            server = f"http://127.0.0.1:{svc.listening_port}"

            sid = "/ws-chat/000/resumer"
            status, _, body = await http(server, "POST", sid + "/xhr", {}, b"")
            self.assertEqual((status, body), (200, b"o\n"))
            frames = [frame("CONNECT", accept_version="1.2", heart_beat="0,0"),
                      frame("SUBSCRIBE", id="sub-0", destination="/topic/chat", x_since_id=first)]
            status, _, _ = await http(server, "POST", sid + "/xhr_send", {},
                                      json.dumps([f.decode() for f in frames]).encode())
            self.assertEqual(status, 204)
            chats = polls = 0
            while chats < 199 and polls < 50:
                status, _, body = await http(server, "POST", sid + "/xhr", {}, b"")
                self.assertEqual(status, 200)
                polls += 1
                if body.startswith(b"a["):
                    chats += sum(m.startswith("MESSAGE") and '"type":"CHAT"' in m for m in json.loads(body[1:]))
            self.assertEqual(chats, 199)
            self.assertLessEqual(polls, 5, f"{polls} polls for 199 replayed messages")
        return ensureDeferred(go())


class SendWhilePausedTests(SynchronousTestCase):
    """A send that arrives while the STOMP session has paused reading is
    answered once its messages are read; sockjs-client waits for it."""

    def setUp(self) -> None:
        factory = RecorderFactory(pause_on=b"pause")
        self.made = factory.made
        self.http = HTTPHarness(factory)
        self.http.post(b"/0/s/xhr")

    def test_xhr_send_is_answered_when_reading_resumes(self) -> None:
        held = self.http.post(b"/0/s/xhr_send", b'["pause","b"]')
        self.assertEqual(held.transport.value(), b"")  # no answer yet
        self.assertEqual(self.made[0].received, [b"pause"])
        second = self.http.post(b"/0/s/xhr_send", b'["c"]').response()
        self.assertEqual(second.status, 429)
        self.made[0].transport.resume_reading()
        self.assertEqual(held.response().status, 204)
        self.assertEqual(self.made[0].received, [b"pause", b"b"])
        self.assertEqual(self.http.post(b"/0/s/xhr_send", b'["c"]').response().status, 204)
        self.assertEqual(self.made[0].received, [b"pause", b"b", b"c"])

    def test_jsonp_send_is_answered_ok_when_reading_resumes(self) -> None:
        held = self.http.post(b"/0/s/jsonp_send", b"d=%5B%22pause%22%2C%22b%22%5D", headers=FORM)
        self.assertEqual(held.transport.value(), b"")
        self.made[0].transport.resume_reading()
        self.assertEqual((held.response().status, held.response().body), (200, b"ok"))

    def test_a_client_gone_while_held_is_no_trouble(self) -> None:
        held = self.http.post(b"/0/s/xhr_send", b'["pause","b"]')
        held.abort()
        self.made[0].transport.resume_reading()
        self.assertEqual(self.made[0].received, [b"pause", b"b"])
