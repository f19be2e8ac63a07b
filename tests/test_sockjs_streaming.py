"""SockJS streaming transports (xhr_streaming, eventsource, htmlfile) over real twisted.web: chunks, limits, back-pressure."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from anonchat.stomp.outbound import Outbound
from anonchat.web.sockjs import SockJSOptions
from tests.sockjs_support import HTTPHarness, RecorderFactory

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"
PRELUDE = b"h" * 2048 + b"\n"

HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


class XhrStreamingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness(options=SockJSOptions(response_limit=4096))

    def test_prelude_then_open_then_messages_each_in_its_own_chunk(self) -> None:
        stream = self.http.post(b"/0/s/xhr_streaming", headers={b"Origin": b"http://t"})
        r = stream.response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.chunked)
        self.assertIsNone(r.header("content-length"))
        self.assertEqual(r.header("content-type"), "application/javascript;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertEqual(r.header("access-control-allow-origin"), "http://t")
        self.assertEqual(r.chunks, [PRELUDE, b"o\n"])
        self.assertEqual(self.http.post(b"/0/s/xhr_send", b'["x"]').response().status, 204)
        self.assertEqual(stream.frames[-1], b'a["x"]\n')
        self.assertFalse(stream.response().complete)

    def test_response_ends_after_response_limit_and_session_continues(self) -> None:
        stream = self.http.post(b"/0/s/xhr_streaming")
        msg = b'"' + b"x" * 128 + b'"'
        for _ in range(30):
            self.http.post(b"/0/s/xhr_send", b"[" + msg + b"]")
            self.assertEqual(stream.frames[-1], b"a[" + msg + b"]\n")
        self.assertFalse(stream.response().complete)
        self.http.post(b"/0/s/xhr_send", b"[" + msg + b"]")
        self.assertTrue(stream.response().complete)
        self.http.factory.last.transport.send(Outbound(b"later"))
        again = self.http.post(b"/0/s/xhr_streaming")
        self.assertEqual(again.frames, [PRELUDE, b'a["later"]\n'])
        self.assertEqual(len(self.http.factory.made), 1)
        self.assertEqual(self.http.factory.last.lost, 0)

    def test_second_stream_gets_2010_and_is_ended(self) -> None:
        first = self.http.post(b"/0/s/xhr_streaming")
        second = self.http.post(b"/0/s/xhr_streaming").response()
        self.assertEqual(second.chunks, [PRELUDE, b'c[2010,"Another connection still open"]\n'])
        self.assertTrue(second.complete)
        self.assertFalse(first.response().complete)

    def test_server_close_sends_close_frame_and_ends_every_stream(self) -> None:
        http = HTTPHarness(RecorderFactory(close_at_once=True))
        first = http.post(b"/0/s/xhr_streaming").response()
        self.assertEqual(first.chunks, [PRELUDE, b"o\n", b'c[3000,"Go away!"]\n'])
        self.assertTrue(first.complete)
        second = http.post(b"/0/s/xhr_streaming").response()
        self.assertEqual(second.chunks, [PRELUDE, b'c[3000,"Go away!"]\n'])
        self.assertTrue(second.complete)

    def test_http10_stream_is_unchunked_and_closed_at_the_end(self) -> None:
        http = HTTPHarness(RecorderFactory(close_at_once=True))
        stream = http.post(b"/0/s/xhr_streaming", headers={b"Connection": b"Keep-Alive"}, version=b"HTTP/1.0")
        r = stream.response()
        self.assertIsNone(r.header("transfer-encoding"))
        self.assertIsNone(r.header("content-length"))
        self.assertEqual(r.body, PRELUDE + b'o\nc[3000,"Go away!"]\n')
        self.assertTrue(stream.transport.disconnecting)

    def test_aborted_stream_ends_the_session(self) -> None:
        stream = self.http.post(b"/0/s/xhr_streaming")
        stream.abort()
        self.assertEqual(self.http.factory.last.lost, 1)

    def test_heartbeat_on_idle_stream(self) -> None:
        stream = self.http.post(b"/0/s/xhr_streaming")
        self.http.clock.advance(25)
        self.assertEqual(stream.frames[-1], b"h\n")
        self.http.clock.advance(25)
        self.assertEqual(stream.frames[-2:], [b"h\n", b"h\n"])

    def test_paused_stream_queues_and_resumes(self) -> None:
        stream = self.http.post(b"/0/s/xhr_streaming")
        session = self.http.factory.last.transport
        stream.pause()
        session.send(Outbound(b"1"))
        session.send(Outbound(b"2"))
        self.assertEqual(stream.frames[-1], b"o\n")
        self.assertEqual(session.queued_bytes, 6)
        stream.resume()
        self.assertEqual(stream.frames[-1], b'a["1","2"]\n')
        self.assertEqual(session.queued_bytes, 0)

    def test_slow_reader_over_send_buffer_is_disconnected(self) -> None:
        http = HTTPHarness(options=SockJSOptions(max_send_buffer=1000))
        stream = http.post(b"/0/s/xhr_streaming")
        stream.pause()
        for _ in range(20):
            http.factory.last.transport.send(Outbound(b"x" * 100))
        self.assertTrue(stream.transport.disconnecting or stream.transport.disconnected)
        http.clock.advance(0)
        self.assertEqual(http.factory.last.lost, 1)


class EventSourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness(options=SockJSOptions(response_limit=4096))

    def test_eventsource_frames(self) -> None:
        stream = self.http.get(b"/0/s/eventsource")
        r = stream.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/event-stream;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertEqual(r.chunks, [b"\r\n", b"data: o\r\n\r\n"])
        self.http.post(b"/0/s/xhr_send", b'["x"]')
        self.assertEqual(stream.frames[-1], b'data: a["x"]\r\n\r\n')
        self.http.post(b"/0/s/xhr_send", rb'["  \u0000\n\r "]')
        self.assertEqual(stream.frames[-1], b'data: a["  \\u0000\\n\\r "]\r\n\r\n')

    def test_eventsource_response_limit(self) -> None:
        stream = self.http.get(b"/0/s/eventsource")
        msg = b'"' + b"x" * 4096 + b'"'
        self.http.post(b"/0/s/xhr_send", b"[" + msg + b"]")
        self.assertEqual(stream.frames[-1], b"data: a[" + msg + b"]\r\n\r\n")
        self.assertTrue(stream.response().complete)


class HtmlFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness(options=SockJSOptions(response_limit=4096))

    def test_htmlfile_prelude_and_frames(self) -> None:
        stream = self.http.get(b"/0/s/htmlfile?c=%63allback")
        r = stream.response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/html;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        prelude, opened = r.chunks
        self.assertEqual(prelude.decode().strip(), HTMLFILE_HEAD % "callback")
        self.assertGreater(len(prelude), 1024)
        self.assertEqual(opened, b'<script>\np("o");\n</script>\r\n')
        self.http.post(b"/0/s/xhr_send", b'["x"]')
        self.assertEqual(stream.frames[-1], b'<script>\np("a[\\"x\\"]");\n</script>\r\n')

    def test_htmlfile_cannot_be_broken_out_of_by_a_script_tag(self) -> None:
        stream = self.http.get(b"/0/s/htmlfile?c=cb")
        self.http.post(b"/0/s/xhr_send", b'["</script><script>alert(1)</script>"]')
        frame = stream.frames[-1]
        self.assertNotIn(b"</script><script>", frame)
        self.assertEqual(frame.count(b"</script>"), 1)

    def test_htmlfile_requires_a_safe_callback(self) -> None:
        r = self.http.get(b"/a/a/htmlfile").response()
        self.assertEqual(r.status, 500)
        self.assertIn(b'"callback" parameter required', r.body)
        for callback in (b"%20", b"*", b"abc(", b"abc%28"):
            r = self.http.get(b"/a/a/htmlfile?c=" + callback).response()
            self.assertEqual(r.status, 500)
            self.assertIn(b'invalid "callback" parameter', r.body)

    def test_htmlfile_response_limit(self) -> None:
        stream = self.http.get(b"/0/s/htmlfile?c=callback")
        msg = "x" * 4096
        self.http.post(b"/0/s/xhr_send", ('["' + msg + '"]').encode())
        self.assertEqual(stream.frames[-1], ('<script>\np("a[\\"' + msg + '\\"]");\n</script>\r\n').encode())
        self.assertTrue(stream.response().complete)
