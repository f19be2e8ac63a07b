"""SockJS static URLs and shared HTTP rules: greeting, /info, iframe, CORS, origins, cookies, routing."""

from __future__ import annotations

import json
import re

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from anonchat.web.sockjs import SockJSOptions
from anonchat.web.sockjs.options import DEFAULT_SOCKJS_URL
from tests.sockjs_support import HTTPHarness

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"

IFRAME = re.compile(
    r"""^<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document\.domain = document\.domain;
    _sockjs_onload = function\(\)\{SockJS\.bootstrap_iframe\(\);\};
  </script>
  <script src="(?P<sockjs_url>[^"]*)"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe\. It's used for cross domain magic\.</p>
</body>
</html>$"""
)


class RawWebSocketStub(Resource):
    isLeaf = True

    def render(self, request: object) -> bytes:
        return b"raw websocket here"


class GreetingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_greeting_with_and_without_trailing_slash(self) -> None:
        for path in (b"", b"/"):
            r = self.http.get(path).response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("content-type"), "text/plain;charset=UTF-8")
            self.assertEqual(r.body, b"Welcome to SockJS!\n")
            self.assertIsNone(r.header("set-cookie"))

    def test_greeting_has_content_length_for_http10(self) -> None:
        r = self.http.get(b"", version=b"HTTP/1.0").response()
        self.assertEqual(r.header("content-length"), "19")
        self.assertIsNone(r.header("transfer-encoding"))

    def test_other_paths_are_not_found(self) -> None:
        for path in (b"/a", b"/a.html", b"//", b"///", b"/a/a", b"/a/a/", b"/a/", b"/a/b/c/d"):
            r = self.http.get(path).response()
            self.assertEqual(r.status, 404, path)

    def test_upgrade_on_base_path_renders_raw_websocket(self) -> None:
        http = HTTPHarness(raw_websocket=RawWebSocketStub())
        r = http.get(b"", headers={b"Upgrade": b"websocket", b"Connection": b"Upgrade"}).response()
        self.assertEqual(r.body, b"raw websocket here")
        self.assertEqual(http.get(b"").response().body, b"Welcome to SockJS!\n")


class InfoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_info_reports_capabilities_uncached_with_cors(self) -> None:
        r = self.http.get(b"/info").response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json;charset=UTF-8")
        self.assertEqual(r.header("cache-control"), NO_CACHE)
        self.assertIsNone(r.header("expires"))
        self.assertIsNone(r.header("set-cookie"))
        self.assertEqual(r.header("access-control-allow-origin"), "*")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        data = json.loads(r.body)
        self.assertEqual(data["websocket"], True)
        self.assertEqual(data["cookie_needed"], False)
        self.assertEqual(data["origins"], ["*:*"])
        self.assertIsInstance(data["entropy"], int)
        self.assertTrue(0 <= data["entropy"] < 2**32)

    def test_entropy_differs_between_calls(self) -> None:
        values = {json.loads(self.http.get(b"/info").response().body)["entropy"] for _ in range(5)}
        self.assertGreater(len(values), 1)

    def test_info_follows_options(self) -> None:
        http = HTTPHarness(options=SockJSOptions(websocket_enabled=False, cookie_needed=True))
        data = json.loads(http.get(b"/info").response().body)
        self.assertEqual((data["websocket"], data["cookie_needed"]), (False, True))

    def test_info_preflight_is_cacheable_for_a_year(self) -> None:
        for origin in (None, b"http://test", b"null"):
            headers = {b"Origin": origin} if origin else {}
            r = self.http.request(b"OPTIONS", b"/info", headers=headers).response()
            self.assertEqual(r.status, 204)
            self.assertEqual(r.body, b"")
            self.assertIn("public", r.header("cache-control") or "")
            self.assertRegex(r.header("cache-control") or "", "max-age=[1-9][0-9]{6}")
            self.assertTrue(r.header("expires"))
            self.assertGreater(int(r.header("access-control-max-age") or 0), 1000000)
            self.assertEqual(r.header("access-control-allow-methods"), "OPTIONS, GET")
            expected = origin.decode() if origin and origin != b"null" else "*"
            self.assertEqual(r.header("access-control-allow-origin"), expected)
            self.assertEqual(r.header("access-control-allow-credentials"), "true")

    def test_post_to_info_is_not_allowed(self) -> None:
        r = self.http.post(b"/info").response()
        self.assertEqual(r.status, 405)
        self.assertTrue(r.header("allow"))
        self.assertIsNone(r.header("content-type"))
        self.assertEqual(r.body, b"")


class IframeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_iframe_page_and_versioned_names_serve_the_template(self) -> None:
        for path in (b"/iframe.html", b"/iframe-a.html", b"/iframe-.html", b"/iframe-0.1.2.html",
                     b"/iframe-0.1.2abc-dirty.2144.html", b"/iframe-a.html?t=1234"):
            r = self.http.get(path).response()
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.header("content-type"), "text/html;charset=UTF-8")
            self.assertIn("public", r.header("cache-control") or "")
            self.assertRegex(r.header("cache-control") or "", "max-age=[1-9][0-9]{6}")
            self.assertTrue(r.header("expires"))
            self.assertTrue(r.header("etag"))
            self.assertIsNone(r.header("last-modified"))
            self.assertIsNone(r.header("set-cookie"))
            match = IFRAME.match(r.body.decode().strip())
            self.assertIsNotNone(match)
            assert match is not None
            self.assertEqual(match.group("sockjs_url"), DEFAULT_SOCKJS_URL)

    def test_iframe_url_is_configurable(self) -> None:
        http = HTTPHarness(options=SockJSOptions(sockjs_url="/static/sockjs.min.js"))
        self.assertIn(b'<script src="/static/sockjs.min.js">', http.get(b"/iframe.html").response().body)

    def test_malformed_iframe_names_are_not_found(self) -> None:
        for path in (b"/iframe.htm", b"/iframe", b"/IFRAME.HTML", b"/IFRAME", b"/iframe.HTML",
                     b"/iframe.xml", b"/iframe-/.html"):
            self.assertEqual(self.http.get(path).response().status, 404, path)

    def test_matching_etag_gets_304_without_body(self) -> None:
        etag = self.http.get(b"/iframe.html").response().header("etag") or ""
        self.assertEqual(etag, self.http.get(b"/iframe.html").response().header("etag"))
        r = self.http.get(b"/iframe.html", headers={b"If-None-Match": etag.encode()}).response()
        self.assertEqual(r.status, 304)
        self.assertIsNone(r.header("content-type"))
        self.assertEqual(r.body, b"")


class OriginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness(options=SockJSOptions(allowed_origins=frozenset({"https://chat.example"})))

    def test_disallowed_origin_is_refused_everywhere(self) -> None:
        bad = {b"Origin": b"https://evil.example"}
        for method, path in ((b"GET", b""), (b"GET", b"/info"), (b"OPTIONS", b"/info"), (b"GET", b"/iframe.html"),
                             (b"POST", b"/0/s/xhr"), (b"POST", b"/0/s/xhr_send"), (b"GET", b"/0/s/eventsource"),
                             (b"GET", b"/0/s/websocket"), (b"GET", b"/websocket")):
            headers = dict(bad)
            if path.endswith(b"websocket"):
                headers.update({b"Upgrade": b"websocket", b"Connection": b"Upgrade"})
            r = self.http.request(method, path, headers=headers).response()
            self.assertEqual(r.status, 403, (method, path))
        self.assertEqual(len(self.http.resource.registry), 0)

    def test_allowed_origin_is_echoed(self) -> None:
        r = self.http.get(b"/info", headers={b"Origin": b"https://chat.example"}).response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("access-control-allow-origin"), "https://chat.example")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")

    def test_request_without_origin_is_served_without_wildcard(self) -> None:
        r = self.http.get(b"/info").response()
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("access-control-allow-origin"))

    def test_any_origin_is_echoed_by_default(self) -> None:
        r = HTTPHarness().post(b"/0/s/xhr", headers={b"Origin": b"http://anywhere"}).response()
        self.assertEqual(r.header("access-control-allow-origin"), "http://anywhere")


class RoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_session_urls_accept_any_ids_without_dots(self) -> None:
        for part in (b"/a/a", b"/_/_", b"/1/1", b"/abcdefgh_i-j%20/abcdefg_i-j%20"):
            r = self.http.post(part + b"/xhr").response()
            self.assertEqual((r.status, r.body), (200, b"o\n"), part)

    def test_empty_or_dotted_ids_are_not_found(self) -> None:
        for part in (b"//", b"/a./a", b"/a/a.", b"/./.", b"/", b"///"):
            for method in (b"GET", b"POST"):
                self.assertEqual(self.http.request(method, part + b"/xhr").response().status, 404, part)

    def test_unknown_transport_is_not_found(self) -> None:
        self.assertEqual(self.http.post(b"/a/a/nope").response().status, 404)

    def test_wrong_method_is_405_with_allow(self) -> None:
        for method, path in ((b"GET", b"/a/a/xhr"), (b"GET", b"/a/a/xhr_send"), (b"POST", b"/a/a/eventsource"),
                             (b"POST", b"/a/a/jsonp"), (b"GET", b"/a/a/jsonp_send"), (b"POST", b"/a/a/websocket")):
            r = self.http.request(method, path).response()
            self.assertEqual(r.status, 405, (method, path))
            self.assertTrue(r.header("allow"))
            self.assertIsNone(r.header("content-type"))
            self.assertEqual(r.body, b"")

    def test_server_id_is_ignored(self) -> None:
        self.assertEqual(self.http.post(b"/000/s/xhr").response().body, b"o\n")
        self.assertEqual(self.http.post(b"/000/s/xhr_send", b'["a"]').response().status, 204)
        self.assertEqual(self.http.post(b"/999/s/xhr").response().body, b'a["a"]\n')

    def test_websocket_transports_are_not_found_when_disabled(self) -> None:
        http = HTTPHarness(options=SockJSOptions(websocket_enabled=False))
        upgrade = {b"Upgrade": b"websocket", b"Connection": b"Upgrade"}
        self.assertEqual(http.get(b"/0/0/websocket", headers=upgrade).response().status, 404)
        self.assertEqual(http.get(b"/websocket", headers=upgrade).response().status, 404)


class CookieTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness(options=SockJSOptions(cookie_needed=True))

    def test_session_urls_set_dummy_jsessionid(self) -> None:
        for method, path in ((b"POST", b"/0/c1/xhr"), (b"POST", b"/0/c2/xhr_streaming"), (b"GET", b"/0/c3/eventsource"),
                             (b"GET", b"/0/c4/htmlfile?c=cb"), (b"GET", b"/0/c5/jsonp?c=cb")):
            cookie = self.http.request(method, path).response().header("set-cookie") or ""
            self.assertEqual([p.strip() for p in cookie.split(";")][:2], ["JSESSIONID=dummy", "Path=/"], path)

    def test_existing_jsessionid_is_echoed(self) -> None:
        r = self.http.post(b"/0/c/xhr", headers={b"Cookie": b"JSESSIONID=abcdef"}).response()
        self.assertEqual((r.header("set-cookie") or "").split(";")[0], "JSESSIONID=abcdef")

    def test_info_sets_no_cookie(self) -> None:
        self.assertIsNone(self.http.get(b"/info").response().header("set-cookie"))

    def test_send_urls_set_the_cookie_too(self) -> None:
        self.http.get(b"/0/j/jsonp?c=cb")
        r = self.http.post(b"/0/j/jsonp_send", b"d=%5B%22x%22%5D",
                           headers={b"Content-Type": b"application/x-www-form-urlencoded"}).response()
        self.assertTrue((r.header("set-cookie") or "").startswith("JSESSIONID=dummy"))
