"""Tools for the hostile-client suites: raw sockets that send exactly the
bytes an attacker would, a bystander that proves the server still chats,
the server's RSS, and a summary table of what each attack got back.

Raw sockets are non-blocking and polled from the reactor, so the
bystander's Autobahn client keeps running while an attack is under way.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import socket
import struct
import time
import uuid
from typing import Any, Awaitable, Callable

import attrs
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.serverprocess import ServerProcess
from tests.stompfakes import frame
from tests.wsclient import WsClient

CHAT = "/topic/chat"
ERRORS = "/user/queue/errors"
SEND_TO = "/app/chat.sendMessage"


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def server_rss(server: ServerProcess) -> int:
    return rss_kib(server._process.pid)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


# -- plain HTTP ----------------------------------------------------------------


async def http(server: ServerProcess | str, method: str, path: str, headers: dict[str, str] | None = None,
               body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, no connection reuse: (status, lower-cased headers, body).
    ``server`` is a ServerProcess or a base URL."""
    from twisted.web.client import FileBodyProducer
    from io import BytesIO

    pool = HTTPConnectionPool(reactor, persistent=False)
    h = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    base = server if isinstance(server, str) else server.url
    response = await Agent(reactor, pool=pool).request(method.encode(), (base + path).encode(), h, producer)
    data = await readBody(response)
    flat = {k.decode().lower(): b",".join(v).decode() for k, v in response.headers.getAllRawHeaders()}
    return response.code, flat, data


async def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The sum of one Prometheus series matching ``labels`` (0 if absent)."""
    status, text = await server.get("/metrics")
    assert status == 200, status
    total = 0.0
    for line in text.decode().splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})?\s+(\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


async def online(server: ServerProcess) -> int:
    status, body = await server.get("/api/users")
    assert status == 200, status
    return int(json.loads(body)["count"])


# -- raw sockets -----------------------------------------------------------------


class RawSocket:
    """A non-blocking TCP client: ``send`` what you like, ``read`` when you like (or never)."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays tiny.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.closed: str | None = None  # "eof" or "reset" once the server hung up
        self.closed_at: float | None = None
        self.opened_at = time.monotonic()

    async def connect(self, timeout: float = 5.0) -> RawSocket:
        err = self.sock.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        deadline = time.monotonic() + timeout
        while True:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            try:
                self.sock.getpeername()
                self.opened_at = time.monotonic()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("connect timed out")
            await sleep(0.005)

    async def send(self, data: bytes, timeout: float = 10.0) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                sent = self.sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("send blocked")
                await sleep(0.005)

    def pump(self) -> None:
        """Read whatever is there without waiting."""
        while self.closed is None:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except (ConnectionResetError, BrokenPipeError):
                self._hung_up("reset")
                return
            if not data:
                self._hung_up("eof")
                return
            self.buffer += data

    def _hung_up(self, how: str) -> None:
        self.closed = how
        self.closed_at = time.monotonic()

    async def read_until(self, predicate: Callable[[bytearray], bool], timeout: float = 5.0) -> bytearray:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if predicate(self.buffer):
                return self.buffer
            if self.closed is not None:
                raise AssertionError(f"server hung up ({self.closed}); got {bytes(self.buffer[:300])!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {bytes(self.buffer[:300])!r}")
            await sleep(0.005)

    async def wait_closed(self, timeout: float) -> str | None:
        """Read (and keep) everything until the server hangs up; None if it has not by ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            self.pump()
            await sleep(0.02)
        self.pump()
        return self.closed

    def abort(self) -> None:
        """Close with RST, unread data and all."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


def upgrade_request(port: int, path: str = "/ws-chat", protocol: str | None = "v12.stomp",
                    headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_frame(payload: bytes, opcode: int = 1, mask: bool = True) -> bytes:
    """One complete client WebSocket frame."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, key)
    return head + key + masked


def _mask(payload: bytes, key: bytes) -> bytes:
    width = len(payload)
    k = int.from_bytes((key * (width // 4 + 1))[:width], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(width, "big")


def ws_messages(data: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete unmasked server frames in ``data``: ([(opcode, payload)], bytes used)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while len(data) - i >= 2:
        opcode = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            if len(data) - j < 2:
                break
            n = struct.unpack("!H", data[j:j + 2])[0]
            j += 2
        elif n == 127:
            if len(data) - j < 8:
                break
            n = struct.unpack("!Q", data[j:j + 8])[0]
            j += 8
        if len(data) - j < n:
            break
        out.append((opcode, bytes(data[j:j + n])))
        i = j + n
    return out, i


class RawWs(RawSocket):
    """A hand-driven WebSocket client on a RawSocket."""

    status: int = 0
    response_head = b""

    async def handshake(self, path: str = "/ws-chat", protocol: str | None = "v12.stomp",
                        headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
        await self.connect()
        await self.send(upgrade_request(self.port, path, protocol, headers))
        await self.read_until(lambda b: b"\r\n\r\n" in b, timeout)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.response_head = head
        self.status = int(head.split(b" ", 2)[1])
        self.buffer = bytearray(rest)
        return self.status

    async def send_text(self, payload: bytes) -> None:
        await self.send(ws_frame(payload))

    def messages(self) -> list[tuple[int, bytes]]:
        self.pump()
        return ws_messages(self.buffer)[0]

    async def wait_message(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        found: list[bytes] = []

        def check(buf: bytearray) -> bool:
            found[:] = [p for op, p in ws_messages(buf)[0] if op == 1 and predicate(p)]
            return bool(found)

        await self.read_until(check, timeout)
        return found[0]

    def close_frame(self) -> tuple[int, str] | None:
        for opcode, payload in self.messages():
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode("utf-8", "replace")
        return None


# -- STOMP helpers ---------------------------------------------------------------


def connect_frame(heart_beat: str = "0,0") -> bytes:
    return frame("CONNECT", accept_version="1.2", host="anonchat", heart_beat=heart_beat)


def chat_body(content: str) -> bytes:
    return json.dumps({"content": content}, ensure_ascii=False).encode()


async def stomp_client(server: ServerProcess, heart_beat: str = "0,0", subscribe_errors: bool = True,
                       **kwargs: Any) -> tuple[WsClient, str]:
    """A connected WsClient and its user name."""
    c = WsClient(server.ws_url, **kwargs)
    await c.opened
    c.send(connect_frame(heart_beat))
    connected = (await c.wait_for_command("CONNECTED"))[0]
    if subscribe_errors:
        c.send(frame("SUBSCRIBE", id="err", destination=ERRORS, receipt="err-ok"))
        await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == "err-ok" for f in fs))
    return c, connected.get("user-name") or ""


async def closed_within(c: WsClient, timeout: float) -> int | None:
    try:
        return await c.closed.addTimeout(timeout, reactor)  # type: ignore[no-any-return]
    except Exception:
        raise AssertionError(f"server did not close within {timeout}s; frames {c.frames!r}") from None


def describe_error(c: WsClient) -> str:
    errors = [f for f in c.frames if f.command == "ERROR"]
    parts = [f"ERROR {e.get('message')!r}" for e in errors] or ["no ERROR"]
    return ", ".join(parts) + f", close {c.close_code}"


def chat_contents(c: WsClient, sender: str | None = None) -> list[str]:
    out = []
    for f in c.frames:
        if f.command == "MESSAGE" and f.get("destination") == CHAT:
            m = json.loads(f.body)
            if m["type"] == "CHAT" and (sender is None or m["sender"] == sender):
                out.append(m["content"])
    return out


def app_errors(c: WsClient) -> list[dict[str, str]]:
    return [json.loads(f.body) for f in c.frames if f.command == "MESSAGE" and f.get("destination") == ERRORS]


class Bystander:
    """A client connected before the attack; ``check`` proves it still chats."""

    def __init__(self, client: WsClient, name: str) -> None:
        self.client = client
        self.name = name
        self._n = 0

    @classmethod
    async def join(cls, server: ServerProcess, **kwargs: Any) -> Bystander:
        c, name = await stomp_client(server, **kwargs)
        c.send(frame("SUBSCRIBE", id="sub-0", destination=CHAT, receipt="chat-ok"))
        await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == "chat-ok" for f in fs))
        return cls(c, name)

    async def check(self, timeout: float = 10.0) -> None:
        c = self.client
        if c.closed.called:
            raise AssertionError(f"bystander was disconnected ({c.close_code})")
        self._n += 1
        receipt = f"check-{self._n}"
        content = f"still here {self._n} {uuid.uuid4().hex[:8]} 👋"
        c.send(frame("SEND", chat_body(content), destination=SEND_TO, receipt=receipt))
        await c.wait_for(lambda fs: any(f.command == "RECEIPT" and f.get("receipt-id") == receipt for f in fs), timeout)
        await c.wait_for(lambda fs: content in chat_contents(c, self.name), timeout)
        # Drop what we have read so far: floods would make every later check slower.
        c.frames.clear()


# -- the table -------------------------------------------------------------------


@attrs.define
class Row:
    attack: str
    response: str
    rss_before: int
    rss_after: int
    bystander: str
    seconds: float


class SummaryTable:
    """What each attack of one test got back; the test prints it when it ends."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[Row] = []
        self.printed = False

    def render(self) -> str:
        head = ("attack", "server response", "RSS before MiB", "RSS after MiB", "bystander", "s")
        rows = [(r.attack, r.response, mib(r.rss_before), mib(r.rss_after), r.bystander, f"{r.seconds:.1f}")
                for r in self.rows]
        lines = [f"\n== {self.title} ==", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"

    def print(self) -> None:
        if self.rows and not self.printed:
            self.printed = True
            print(self.render(), flush=True)
            path = os.environ.get("HOSTILE_SUMMARY")
            if path:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(self.render())


class HostileTestCase(TestCase):
    """One real server per test method, a bystander on it, and attacks in a row.

    Every attack runs even if an earlier one failed; :meth:`finish` prints the
    test's table, then fails listing every attack that did not go as it
    should, and fails if the server's RSS grew by more than
    ``rss_growth_mib`` from before the first attack to after the last.
    """

    timeout = 150
    title = "hostile clients"
    #: what the attacks of one test may leave behind in the server's RSS
    rss_growth_mib = 16

    async def start_server(self, *args: str, bystander_headers: dict[str, str] | None = None) -> None:
        # a client the server cut (or that vanished) is gone after a short
        # rejoin grace, so the attacks can check its LEAVE
        self.server = ServerProcess(self, "--rejoin-grace", "1", *args)
        await self.server.start()
        self.bystander = await Bystander.join(self.server, headers=bystander_headers)
        self.table = SummaryTable(f"{self.title}: {self.id().rpartition('.')[2]}")
        self.failures: list[str] = []
        self.notes: list[str] = []

    async def attack(self, name: str, run: Callable[[], Awaitable[str]]) -> None:
        before = server_rss(self.server)
        started = time.monotonic()
        try:
            response = await run()
        except Exception as e:  # noqa: BLE001 - an attack that failed is a row and a failure, not the end
            response = f"FAILED: {type(e).__name__}: {str(e)[:300]}"
            self.failures.append(f"{name}: {response}")
        seconds = time.monotonic() - started
        after = server_rss(self.server)
        try:
            await self.bystander.check()
            status, _ = await self.server.get("/healthz")
            if status != 200:
                raise AssertionError(f"/healthz {status}")
            bystander = "ok"
        except Exception as e:  # noqa: BLE001
            bystander = f"FAILED: {str(e)[:200]}"
            self.failures.append(f"{name}: bystander {bystander}")
        self.table.rows.append(Row(name, response, before, after, bystander, seconds))

    def finish(self) -> None:
        self.table.print()
        if self.server.running is False:
            self.failures.append("the server process died")
        rows = self.table.rows
        if rows and rows[-1].rss_after - rows[0].rss_before > self.rss_growth_mib * 1024:
            self.failures.append(f"RSS grew from {mib(rows[0].rss_before)} to {mib(rows[-1].rss_after)} MiB"
                                 f" over the attacks (limit {self.rss_growth_mib} MiB)")
        self.assertEqual(self.failures, [], "\n".join(self.failures))
