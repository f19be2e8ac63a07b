"""What a real ``twistd -n anonchat`` logs about its clients at the default
level: no client address, no request header, no message content, whatever
the transport (raw WebSocket, SockJS websocket, SockJS xhr)."""

from __future__ import annotations

import json

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from tests.hostile import RawWs, connect_frame, chat_body, http, sleep, ws_frame
from tests.serverprocess import ServerProcess
from tests.stompfakes import frame

#: Marks that must never reach the log.
AGENT = "Canary-Agent/7.7 (logcheck)"
FORWARDED = "198.51.100.77"
COOKIE = "canary-cookie-4242"
CONTENT = "canary content 9191"


class DefaultLogTests(TestCase):
    timeout = 60

    async def conversation(self, server: ServerProcess, path: str, framed: bool) -> int:
        """CONNECT, SUBSCRIBE, SEND, DISCONNECT over one WebSocket; the client's port."""
        ws = RawWs(server.port)
        headers = {"User-Agent": AGENT, "X-Forwarded-For": FORWARDED, "Cookie": f"JSESSIONID={COOKIE}",
                   "Origin": "http://canary-origin.example"}
        status = await ws.handshake(path, None if framed else "v12.stomp", headers)
        self.assertEqual(status, 101)
        client_port = ws.sock.getsockname()[1]

        def wrap(data: bytes) -> bytes:
            return json.dumps([data.decode()]).encode() if framed else data

        frames = [connect_frame(), frame("SUBSCRIBE", id="s", destination="/topic/chat"),
                  frame("SEND", chat_body(CONTENT), destination="/app/chat.sendMessage", receipt="r"),
                  frame("DISCONNECT", receipt="bye")]
        for f in frames:
            await ws.send(ws_frame(wrap(f)))
        await ws.read_until(lambda b: b"bye" in b)
        await ws.wait_closed(5)
        ws.abort()
        return int(client_port)

    def test_no_address_header_or_content_in_the_default_log(self):  # type: ignore[no-untyped-def]
        async def go() -> None:
            server = ServerProcess(self, name="logs")
            await server.start()
            ports = [await self.conversation(server, "/ws-chat/000/logcheck/websocket", framed=True),
                     await self.conversation(server, "/ws-chat", framed=False)]
            sid = "/ws-chat/000/logxhr"
            await http(server, "POST", sid + "/xhr", {"User-Agent": AGENT, "X-Forwarded-For": FORWARDED}, b"")
            await http(server, "POST", sid + "/xhr_send", {"User-Agent": AGENT},
                       json.dumps([connect_frame().decode()]).encode())
            await sleep(0.5)
            text = server.read_log()
            leaks = [mark for mark in (AGENT, "Canary-Agent", FORWARDED, COOKIE, CONTENT, "canary-origin",
                                       *(f":{port}" for port in ports), "User-Agent", "user-agent")
                     if mark in text]
            self.assertEqual(leaks, [], f"in the log ({len(text.splitlines())} lines):\n{text[-3000:]}")

        return ensureDeferred(go())
