"""The real sockjs-client (in Node) against our SockJS echo service, over websocket, xhr-streaming and xhr-polling.

Skipped when ``node`` or ``tests/e2e/node_modules`` is missing, unless
``ANONCHAT_TEST_REQUIRE_SERVICES=1``, which makes that a failure.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from anonchat.web.sockjs import SockJSOptions, SockJSResource
from tests.services import E2E_DIR, require_node
from tests.sockjs_support import RecorderFactory

SCRIPT = Path(E2E_DIR) / "sockjs_echo_client.js"

MESSAGES = [
    "hello",
    "안녕하세요 👋",
    "SEND\ndestination:/app/chat.sendMessage\ncontent-type:application/json\n\n"
    '{"content":"줄바꿈\\n과 \\"따옴표\\" 그리고 \u2028"}',
    "x" * 5000,
]


def _node() -> str:
    return require_node("sockjs-client")


class SockJSClientTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.node = _node()
        self.factory = RecorderFactory(echo=True)
        self.resource = SockJSResource(self.factory, reactor, options=SockJSOptions(response_limit=4096, disconnect_delay=1.0))
        root = Resource()
        root.putChild(b"echo", self.resource)
        site = Site(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.resource.close_all)

    @defer.inlineCallbacks
    def run_client(self, transport: str) -> Any:
        url = f"http://127.0.0.1:{self.port.getHost().port}/echo"
        out, err, code = yield getProcessOutputAndValue(
            self.node,
            [str(SCRIPT), url, transport, json.dumps(MESSAGES)],
            env=dict(os.environ),
            path=str(E2E_DIR),
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out, err))
        # split("\n"), not splitlines(): the output holds a raw U+2028.
        result = json.loads(out.decode("utf-8").strip().split("\n")[-1])
        self.assertEqual(result["transport"], transport)
        self.assertEqual(result["received"], MESSAGES)
        self.assertEqual(result["close"]["code"], 1000)
        self.assertEqual([m.decode("utf-8") for m in self.factory.last.received], MESSAGES)
        return result

    @defer.inlineCallbacks
    def test_websocket_echo(self) -> Any:
        yield self.run_client("websocket")
        self.assertEqual(self.factory.last.client.transport, "sockjs-websocket")
        yield _until(lambda: self.factory.last.lost == 1)

    @defer.inlineCallbacks
    def test_xhr_streaming_echo(self) -> Any:
        yield self.run_client("xhr-streaming")
        self.assertEqual(self.factory.last.client.transport, "xhr_streaming")
        yield _until(lambda: self.factory.last.lost == 1)

    @defer.inlineCallbacks
    def test_xhr_polling_echo(self) -> Any:
        yield self.run_client("xhr-polling")
        self.assertEqual(self.factory.last.client.transport, "xhr")
        yield _until(lambda: self.factory.last.lost == 1)


@defer.inlineCallbacks
def _until(condition: Any, timeout: float = 6.0) -> Any:
    from twisted.internet.task import deferLater

    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError("condition not met in time")
        yield deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


if sys.platform == "win32":  # pragma: no cover
    SockJSClientTests.skip = "Node e2e is POSIX only"  # type: ignore[attr-defined]
