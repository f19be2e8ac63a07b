"""The built web client as the server serves it: its hashed assets cached
for good, the page itself revalidated, nothing loaded from another origin,
and the SockJS iframe page running the package's own sockjs-client."""

from __future__ import annotations

import json
import os
import re

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.test.requesthelper import DummyRequest

from anonchat.service import AnonchatService
from anonchat.web.site import StaticFiles
from tests.frontend import FRONTEND_DIR, require_built_client
from tests.inprocess import start_service

ASSET_REF = re.compile(rb'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"')


class StaticClientTests(TestCase):
    timeout = 20

    async def _get(self, svc: AnonchatService, path: str) -> tuple[int, dict[str, list[str]], bytes]:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        response = await agent.request(b"GET", f"http://127.0.0.1:{svc.listening_port}{path}".encode())
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
        return response.code, headers, await readBody(response)

    async def test_page_is_revalidated_and_its_hashed_assets_are_cached_for_good(self) -> None:
        require_built_client()
        svc = await start_service(self)
        code, headers, page = await self._get(svc, "/")
        self.assertEqual((code, headers["cache-control"]), (200, ["no-cache"]))
        self.assertIn("text/html", headers["content-type"][0])
        refs = [r.decode() for r in ASSET_REF.findall(page)]
        scripts = [r for r in refs if r.endswith(".js")]
        styles = [r for r in refs if r.endswith(".css")]
        self.assertTrue(scripts and styles, refs)
        for ref in scripts + styles:
            self.assertRegex(ref, r"^/assets/[\w.-]+-[\w-]{6,}\.(js|css)$", "not a content-hashed asset")
            code, headers, body = await self._get(svc, ref)
            self.assertEqual(code, 200, ref)
            self.assertEqual(headers["cache-control"], ["public, max-age=31536000, immutable"], ref)
            self.assertIn("javascript" if ref.endswith(".js") else "text/css", headers["content-type"][0])
            self.assertTrue(body)

    async def test_page_loads_nothing_from_another_origin(self) -> None:
        static = require_built_client()
        svc = await start_service(self)
        _, _, page = await self._get(svc, "/")
        refs = [r.decode() for r in ASSET_REF.findall(page)]
        self.assertTrue(refs)
        for ref in refs:
            on_this_server = ref.startswith("/") and not ref.startswith("//")
            self.assertTrue(on_this_server or ref.startswith("data:"), f"{ref} is not on this server")
        for name in os.listdir(os.path.join(static, "assets")):
            with open(os.path.join(static, "assets", name), "rb") as f:
                self.assertNotIn(b"cdn.jsdelivr.net", f.read(), name)

    async def test_sockjs_iframe_page_runs_the_packaged_sockjs_client(self) -> None:
        require_built_client()
        svc = await start_service(self)
        _, _, iframe = await self._get(svc, "/ws-chat/iframe.html")
        found = re.search(rb'<script src="([^"]+)"></script>', iframe)
        assert found is not None, iframe
        src = found.group(1).decode()
        self.assertEqual(src, "/sockjs.min.js")
        code, headers, body = await self._get(svc, src)
        self.assertEqual((code, headers["cache-control"]), (200, ["no-cache"]))
        # the same sockjs-client version the client bundles (frontend/package-lock.json)
        with open(os.path.join(FRONTEND_DIR, "package-lock.json"), encoding="utf-8") as f:
            version = json.load(f)["packages"]["node_modules/sockjs-client"]["version"]
        self.assertIn(f"sockjs-client v{version}".encode(), body[:300])

    def test_an_unbuilt_client_is_a_404_not_a_directory_listing(self) -> None:
        empty = self.mktemp()
        os.makedirs(empty)
        request = DummyRequest([b""])
        root = StaticFiles(empty)
        child = root.getChild(b"", request)
        body = child.render(request)
        self.assertEqual(request.responseCode, 404)
        self.assertIn(b"not built", body)
