"""The demo page at ``GET /`` in a real headless Chromium, two pages chatting.

A real ``twistd -n anonchat`` (``ServerProcess``) serves the page; the
Node driver ``tests/e2e/browser_demo.js`` opens it in Debian's Chromium
through ``playwright-core`` and checks what a user would see: nicknames,
the online list, the typing indicator, a message with HTML and emoji shown
exactly as text with its local time, pending until the RECEIPT, history on
scroll-up after a reload, and resuming without duplicates after the
network drops (``setOffline``) and after the socket is closed from page JS.

Page A uses the page's default (SockJS, WebSocket transport), page B SockJS
``xhr_streaming`` and a third page the raw STOMP WebSocket; each page must
show that it is connected over that transport (the page would quietly fall
back to the raw WebSocket when SockJS is unusable, and the test must not).
``/ws-chat/info`` not answering SockJS's JSON fails the test.

Screenshots go to the test's directory under ``_trial_temp`` (the paths
are printed) and to ``ANONCHAT_TEST_SCREENSHOT`` (default
``/tmp/anonchat-demo.png``). Skipped without Chromium
(``ANONCHAT_TEST_CHROMIUM``, default ``/usr/bin/chromium``), ``node`` or
``tests/e2e/node_modules`` (``npm ci`` in ``tests/e2e``), unless
``ANONCHAT_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.serverprocess import ServerProcess
from tests.services import E2E_DIR, require_node, unavailable

DRIVER = os.path.join(E2E_DIR, "browser_demo.js")
CHROMIUM_VAR = "ANONCHAT_TEST_CHROMIUM"
SCREENSHOT_VAR = "ANONCHAT_TEST_SCREENSHOT"
DRIVER_TIMEOUT = 75.0
#: messages a second per connection (burst twice that): low enough that the
#: driver's burst of 100 is refused in part however slowly a loaded machine
#: types it, high enough for the few messages the other steps send
RATE_LIMIT = "5"

log = Logger()


def browser_tools() -> tuple[str, str]:
    """(node, chromium), or skip (fail under ``ANONCHAT_TEST_REQUIRE_SERVICES=1``)."""
    node = require_node("playwright-core")
    chromium = os.environ.get(CHROMIUM_VAR) or "/usr/bin/chromium"
    if not os.access(chromium, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM_VAR}={chromium} (Debian: apt-get install chromium)")
    return node, chromium


class _Driver(ProcessProtocol):
    """Collects the driver's JSON lines (echoed to the test log) and its exit code."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            print("  browser:", text)
            try:
                self.events.append(json.loads(text))
            except ValueError:
                pass

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code = value.exitCode if value.exitCode is not None else -1
        else:
            code = -1
        self.ended.callback(code)


class BrowserDemoTests(TestCase):
    timeout = 120

    async def assert_sockjs_offered(self, server: ServerProcess) -> None:
        status, body = await server.get("/ws-chat/info")
        self.assertEqual(status, 200, f"/ws-chat/info answered {status}")
        info = json.loads(body)
        self.assertIsInstance(info, dict)
        self.assertIn("websocket", info, f"/ws-chat/info is not SockJS info: {body[:200]!r}")

    async def test_two_pages_chat_in_chromium(self) -> None:
        node, chromium = browser_tools()
        server = ServerProcess(self, "--rate-limit", RATE_LIMIT)
        await server.start()
        out_dir = os.path.abspath(self.mktemp())
        os.makedirs(out_dir)
        config: dict[str, Any] = {
            "url": server.url,
            "outDir": out_dir,
            "chromium": chromium,
            "screenshot": os.environ.get(SCREENSHOT_VAR, "/tmp/anonchat-demo.png"),
        }
        await self.assert_sockjs_offered(server)
        # each page: its query, and the transport its status line must name
        config.update(
            pageA=["", "SockJS websocket"],
            pageB=["?transport=xhr_streaming", "SockJS xhr_streaming"],
            pageC=["?transport=websocket", "WebSocket"],
        )

        driver = _Driver()
        process: Any = reactor.spawnProcess(  # type: ignore[attr-defined]
            driver, node, [node, DRIVER, json.dumps(config, ensure_ascii=False)], env=dict(os.environ), path=E2E_DIR
        )

        def overdue() -> None:
            if not driver.ended.called:
                process.signalProcess("KILL")

        watchdog = reactor.callLater(DRIVER_TIMEOUT, overdue)  # type: ignore[attr-defined]
        code = await driver.ended
        if watchdog.active():
            watchdog.cancel()

        for event in driver.events:
            if event.get("ev") == "screenshot":
                print(f"  screenshot of page {event['page']}: {event['path']}")
                log.info("demo page screenshot of page {page}: {path}", page=event["page"], path=event["path"])
        failures = [e for e in driver.events if e.get("ev") == "fail"]
        if code != 0 or failures or not any(e.get("ev") == "done" for e in driver.events):
            detail = "; ".join(f"{f.get('step')}: {f.get('error')}" for f in failures) or "no result"
            self.fail(
                f"browser driver exited {code}: {detail}\n"
                f"stderr: {driver.stderr.decode('utf-8', 'replace')[-2000:]}\n"
                f"server log {server.log_path}:\n{server.read_log()[-2000:]}"
            )
        steps = [e["name"] for e in driver.events if e.get("ev") == "step"]
        self.assertGreaterEqual(len(steps), 12, steps)
