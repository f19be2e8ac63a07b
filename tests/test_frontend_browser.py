"""The React client at ``GET /`` in a real headless Chromium, against a real server.

A real ``twistd -n anonchat`` (``ServerProcess``) serves the built client;
the Node driver ``tests/e2e/frontend_browser.js`` opens it in Debian's
Chromium through ``playwright-core`` and checks what a user sees: two
pages (desktop on SockJS, mobile on the raw WebSocket) chat, type, read
history, drop and resume, fold comings and goings, hit the rate limit,
get a "new messages" pill and an unread count; keyboard-only use and
axe-core (no serious violation); no console errors. Another run restarts
the server under the pages and checks they resume without gaps or
duplicates.

Screenshots go to the test's directory under ``_trial_temp`` (paths are
printed). Skipped without Chromium (``ANONCHAT_TEST_CHROMIUM``, default
``/usr/bin/chromium``), ``node``, ``tests/e2e/node_modules`` (``npm ci``
in ``tests/e2e``) or the built client, unless
``ANONCHAT_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.frontend import require_built_client
from tests.serverprocess import ServerProcess
from tests.services import E2E_DIR, require_node, unavailable

DRIVER = os.path.join(E2E_DIR, "frontend_browser.js")
CHROMIUM_VAR = "ANONCHAT_TEST_CHROMIUM"

log = Logger()


def browser_tools() -> tuple[str, str]:
    """(node, chromium), or skip (fail under ``ANONCHAT_TEST_REQUIRE_SERVICES=1``)."""
    node = require_node("playwright-core", "axe-core")
    chromium = os.environ.get(CHROMIUM_VAR) or "/usr/bin/chromium"
    if not os.access(chromium, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM_VAR}={chromium} (Debian: apt-get install chromium)")
    require_built_client()
    return node, chromium


class _Driver(ProcessProtocol):
    """The driver's JSON lines (echoed to the test log), its requests, its exit code."""

    def __init__(self, on_request: Callable[[str], Awaitable[str]]) -> None:
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self.ended: Deferred[int] = Deferred()
        self.on_request = on_request

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            print("  browser:", text)
            try:
                event = json.loads(text)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("ev") == "request":
                ensureDeferred(self._answer(event["what"]))

    async def _answer(self, what: str) -> None:
        try:
            answer = await self.on_request(what)
        except Exception as e:  # the driver then fails its step with this text
            answer = f"error: {e!r}"
        if self.transport is not None:
            self.transport.write(answer.encode("utf-8") + b"\n")

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


class FrontendBrowserTests(TestCase):
    timeout = 180

    async def _drive(self, scenario: str, server: ServerProcess, deadline: float,
                     on_request: Callable[[str], Awaitable[str]] | None = None,
                     **extra: Any) -> list[dict[str, Any]]:
        node, chromium = browser_tools()
        out_dir = os.path.abspath(self.mktemp())
        os.makedirs(out_dir)
        status, _ = await server.get("/api/settings")
        config = {"scenario": scenario, "url": server.url, "outDir": out_dir, "chromium": chromium,
                  "settingsMissing": status == 404, **extra}

        async def refuse(what: str) -> str:
            return f"unknown request {what}"

        driver = _Driver(on_request or refuse)
        process: Any = reactor.spawnProcess(  # type: ignore[attr-defined]
            driver, node, [node, DRIVER, json.dumps(config, ensure_ascii=False)], env=dict(os.environ), path=E2E_DIR
        )

        def overdue() -> None:
            if not driver.ended.called:
                process.signalProcess("KILL")

        watchdog = reactor.callLater(deadline, overdue)  # type: ignore[attr-defined]
        code = await driver.ended
        if watchdog.active():
            watchdog.cancel()
        for event in driver.events:
            if event.get("ev") == "screenshot":
                log.info("frontend screenshot of page {page}: {path}", page=event["page"], path=event["path"])
        failures = [e for e in driver.events if e.get("ev") == "fail"]
        if code != 0 or failures or not any(e.get("ev") == "done" for e in driver.events):
            detail = "; ".join(f"{f.get('step')}: {f.get('error')}" for f in failures) or "no result"
            self.fail(
                f"browser driver exited {code}: {detail}\n"
                f"stderr: {driver.stderr.decode('utf-8', 'replace')[-2000:]}\n"
                f"server log {server.log_path}:\n{server.read_log()[-2000:]}"
            )
        return driver.events

    async def test_two_pages_chat_over_sockjs_and_raw_websocket(self) -> None:
        # visitors that close their page are gone after a one-second grace
        server = ServerProcess(self, "--rejoin-grace", "1")
        await server.start()
        events = await self._drive("chat", server, deadline=150.0)
        steps = [e["name"] for e in events if e.get("ev") == "step"]
        self.assertGreaterEqual(len(steps), 20, steps)
        shots = {os.path.basename(e["path"]) for e in events if e.get("ev") == "screenshot"}
        self.assertLessEqual({"desktop.png", "mobile.png", "desktop-final.png", "mobile-final.png"}, shots)

    async def test_a_rejoin_keeps_the_nickname_and_a_moderator_deletes_a_message(self) -> None:
        token = "e2e-admin-token-0123456789"
        server = ServerProcess(self, "--admin-token", token)
        await server.start()
        events = await self._drive("moderation", server, deadline=90.0, adminToken=token)
        steps = [e["name"] for e in events if e.get("ev") == "step"]
        self.assertIn("A, a moderator, deletes a message of B; both pages drop it", steps)

    async def test_page_survives_a_server_restart_and_resumes_without_gaps(self) -> None:
        server = ServerProcess(self)
        await server.start()

        async def restart(what: str) -> str:
            if what != "restart":
                return f"unknown request {what}"
            code = await server.stop()
            if code != 0:
                return f"server stopped with {code}"
            await server.start()
            return "restarted"

        events = await self._drive("restart", server, deadline=90.0, on_request=restart)
        self.assertIn("restart", [e.get("what") for e in events if e.get("ev") == "request"])
