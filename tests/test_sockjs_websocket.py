"""SockJS WebSocket transports: the framed ``/{server}/{session}/websocket`` and the raw ``/websocket``.

Handshake refusals are checked through twisted.web on a task.Clock; the
conversations use Autobahn's client against a real loopback listener.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from anonchat.web.sockjs import SockJSOptions, SockJSResource
from tests.hostile import RawWs, ws_messages
from tests.sockjs_support import HTTPHarness, RecorderFactory

TIMEOUT = 5.0


class HandshakeRefusalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.http = HTTPHarness()

    def test_plain_get_is_400_can_upgrade_only_to_websocket(self) -> None:
        for path in (b"/0/0/websocket", b"/websocket"):
            r = self.http.get(path).response()
            self.assertEqual(r.status, 400)
            self.assertIn(b'Can "Upgrade" only to "WebSocket".', r.body)

    def test_connection_header_without_upgrade_is_400(self) -> None:
        r = self.http.get(b"/0/0/websocket", headers={b"Upgrade": b"WebSocket", b"Connection": b"close"}).response()
        self.assertEqual(r.status, 400)
        self.assertIn(b'"Connection" must be "Upgrade".', r.body)

    def test_post_is_405(self) -> None:
        for headers in ({b"Upgrade": b"WebSocket", b"Connection": b"Upgrade"}, {}):
            r = self.http.post(b"/0/0/websocket", headers=headers).response()
            self.assertEqual(r.status, 405)
            self.assertTrue(r.header("allow"))
            self.assertIsNone(r.header("content-type"))
            self.assertEqual(r.body, b"")


class Client(WebSocketClientProtocol):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.messages: DeferredQueue[bytes] = DeferredQueue()
        self.opened: Deferred[Client] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.closed.callback((wasClean, code, reason))

    def next(self) -> Deferred[bytes]:
        return self.messages.get().addTimeout(TIMEOUT, reactor)


class ClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    protocol = Client

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.failed = reason


class WebSocketTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.echo = RecorderFactory(echo=True)
        self.closer = RecorderFactory(close_at_once=True)
        self.resources: dict[bytes, SockJSResource] = {
            b"echo": SockJSResource(self.echo, reactor, options=SockJSOptions(heartbeat_delay=0.3)),
            b"close": SockJSResource(self.closer, reactor),
            b"small": SockJSResource(RecorderFactory(echo=True), reactor, options=SockJSOptions(max_message_size=64)),
        }
        root = Resource()
        for name, resource in self.resources.items():
            root.putChild(name, resource)
        site = Site(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.clients: list[Client] = []
        self.addCleanup(self._close_clients)

    async def _close_all(self) -> None:
        for client in self.clients:
            if not client.closed.called:
                client.sendClose()
            await client.closed

    def _close_clients(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close_all())

    async def connect(self, path: str, *, offer_deflate: bool = False) -> Client:
        url = f"ws://127.0.0.1:{self.port.getHost().port}{path}"
        factory = ClientFactory(url)
        if offer_deflate:
            factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()])
        made: list[Client] = []
        original = factory.buildProtocol

        def build(addr: Any) -> Client:
            protocol = original(addr)
            made.append(protocol)
            self.clients.append(protocol)
            return protocol  # type: ignore[no-any-return]

        factory.buildProtocol = build
        reactor.connectTCP("127.0.0.1", self.port.getHost().port, factory)
        while not made:
            await deferLater(0.01)
        return await made[0].opened.addTimeout(TIMEOUT, reactor)

    async def framed(self, service: str = "echo", session: str = "s") -> Client:
        client = await self.connect(f"/{service}/000/{session}/websocket")
        self.assertEqual(await client.next(), b"o")
        return client

    @defer.inlineCallbacks
    def test_open_frame_then_echo_of_arrays_and_strings(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        client.sendMessage(b"")
        client.sendMessage(b"[]")
        client.sendMessage(b'["a"]')
        self.assertEqual((yield client.next()), b'a["a"]')
        client.sendMessage(b'"b"')
        self.assertEqual((yield client.next()), b'a["b"]')
        client.sendMessage(b'["x","y"]')
        got = (yield client.next()) + (yield client.next())
        self.assertEqual(got, b'a["x"]a["y"]')
        self.assertEqual(self.echo.last.received, [b"a", b"b", b"x", b"y"])

    @defer.inlineCallbacks
    def test_stomp_frame_with_korean_and_emoji_round_trips(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        frame = 'SEND\ndestination:/app/chat.sendMessage\n\n{"content":"안녕하세요 👋"}\x00'
        client.sendMessage(json.dumps([frame]).encode("utf-8"))
        reply = yield client.next()
        self.assertEqual(json.loads(reply[1:].decode("utf-8")), [frame])
        self.assertIn("안녕하세요 👋".encode("utf-8"), reply)
        self.assertEqual(self.echo.last.received, [frame.encode("utf-8")])

    @defer.inlineCallbacks
    def test_session_knows_transport_and_address(self) -> Any:
        yield Deferred.fromCoroutine(self.framed())
        client = self.echo.last.client
        self.assertEqual((client.transport, client.address), ("sockjs-websocket", "127.0.0.1"))
        self.assertEqual(self.echo.last.transport.kind, "sockjs-websocket")

    @defer.inlineCallbacks
    def test_broken_json_closes_the_socket_and_the_session(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        client.sendMessage(b'["a')
        yield client.closed.addTimeout(TIMEOUT, reactor)
        yield deferLater(0.05)
        self.assertEqual(self.echo.last.lost, 1)
        self.assertEqual(self.echo.last.received, [])

    @defer.inlineCallbacks
    def test_server_close_sends_go_away_then_closes(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed("close"))
        self.assertEqual((yield client.next()), b'c[3000,"Go away!"]')
        yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual(self.closer.last.lost, 1)

    @defer.inlineCallbacks
    def test_client_close_calls_connection_lost_once(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        client.sendClose()
        yield client.closed.addTimeout(TIMEOUT, reactor)
        yield deferLater(0.05)
        self.assertEqual(self.echo.last.lost, 1)
        self.assertEqual(len(self.resources[b"echo"].registry), 0)

    @defer.inlineCallbacks
    def test_two_sockets_may_share_a_session_id(self) -> Any:
        first = yield Deferred.fromCoroutine(self.framed(session="same"))
        second = yield Deferred.fromCoroutine(self.framed(session="same"))
        first.sendMessage(b'["a"]')
        second.sendMessage(b'["b"]')
        self.assertEqual((yield first.next()), b'a["a"]')
        self.assertEqual((yield second.next()), b'a["b"]')
        self.assertEqual(len(self.echo.made), 2)

    @defer.inlineCallbacks
    def test_heartbeat_on_idle_socket(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        self.assertEqual((yield client.next()), b"h")

    @defer.inlineCallbacks
    def test_permessage_deflate_is_never_accepted(self) -> Any:
        client = yield Deferred.fromCoroutine(self.connect("/echo/0/s/websocket", offer_deflate=True))
        self.assertEqual(client.websocket_extensions_in_use, [])

    @defer.inlineCallbacks
    def test_message_over_size_limit_closes_the_socket(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed("small"))
        client.sendMessage(json.dumps(["x" * 100]).encode())
        _, code, _ = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertIn(code, (1006, 1009))  # Autobahn drops (1006) rather than closing (1009) by default
        yield deferLater(0.05)
        self.assertEqual(self.resources[b"small"].registry.session_factory.last.lost, 1)  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_close_all_closes_sockets_and_tells_sessions_at_once(self) -> Any:
        client = yield Deferred.fromCoroutine(self.framed())
        raw = yield Deferred.fromCoroutine(self.connect("/echo/websocket"))
        self.resources[b"echo"].close_all()
        self.assertEqual([r.lost for r in self.echo.made], [1, 1])
        self.assertEqual((yield client.next()), b'c[3000,"Go away!"]')
        yield client.closed.addTimeout(TIMEOUT, reactor)
        _, code, _ = yield raw.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual(code, 3000)

    @defer.inlineCallbacks
    def test_raw_websocket_passes_messages_unframed(self) -> Any:
        client = yield Deferred.fromCoroutine(self.connect("/echo/websocket"))
        client.sendMessage("Hello world!\uffff".encode("utf-8"))
        self.assertEqual((yield client.next()), "Hello world!\uffff".encode("utf-8"))
        client.sendMessage(b"CONNECT\naccept-version:1.2\n\n\x00")
        self.assertEqual((yield client.next()), b"CONNECT\naccept-version:1.2\n\n\x00")
        self.assertEqual(self.echo.last.client.transport, "websocket")

    @defer.inlineCallbacks
    def test_raw_websocket_server_close(self) -> Any:
        client = yield Deferred.fromCoroutine(self.connect("/close/websocket"))
        _, code, reason = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual((code, reason), (3000, "Go away!"))
        self.assertEqual(self.closer.last.lost, 1)


class CarrierTests(TestCase):
    """What both WebSocket carriers (raw ``/websocket`` and SockJS-framed)
    offer the STOMP session: reading paused and resumed, keepalive pings
    on the injected clock, and a peer that does not answer one dropped."""

    timeout = 20

    def setUp(self) -> None:
        self.clock = Clock()
        factory = RecorderFactory(pause_on=b"pause")
        self.made = factory.made
        root = Resource()
        root.putChild(b"k", SockJSResource(factory, self.clock, options=SockJSOptions(heartbeat_delay=1000.0)))
        site = Site(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.helper = WebSocketTests()
        self.helper.port = self.port
        self.helper.clients = []
        self.addCleanup(self.helper._close_clients)
        self.raws: list[Any] = []
        self.addCleanup(lambda: [r.abort() for r in self.raws])

    async def until(self, predicate: Any, what: str) -> None:
        for _ in range(int(TIMEOUT / 0.01)):
            if predicate():
                return
            await deferLater(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    async def open(self, framed: bool) -> tuple[Client, Any]:
        """A client, and the carrier (IFrameTransport) its STOMP session sees."""
        client = await self.helper.connect("/k/0/s/websocket" if framed else "/k/websocket")
        if framed:
            self.assertEqual(await client.next(), b"o")
        await self.until(lambda: self.made, "the session")
        return client, self.made[-1].transport

    async def raw_open(self, framed: bool) -> tuple[RawWs, Any]:
        raw = RawWs(self.port.getHost().port)
        self.raws.append(raw)
        status = await raw.handshake("/k/0/s/websocket" if framed else "/k/websocket", None)
        self.assertEqual(status, 101)
        await self.until(lambda: self.made, "the session")
        return raw, self.made[-1].transport

    async def check_pause(self, framed: bool) -> None:
        client, carrier = await self.open(framed)

        def wrap(m: bytes) -> bytes:
            return json.dumps([m.decode()]).encode() if framed else m

        [socket] = [r for r in reactor.getReaders() if getattr(r, "server", None) is self.port]
        client.sendMessage(wrap(b"pause"))
        await self.until(lambda: self.made[-1].received == [b"pause"], "the first message")
        self.assertNotIn(socket, reactor.getReaders())  # the socket is no longer read
        client.sendMessage(wrap(b"x"))
        await deferLater(0.2)
        self.assertEqual(self.made[-1].received, [b"pause"])
        carrier.resume_reading()
        await self.until(lambda: self.made[-1].received == [b"pause", b"x"], "the held message")
        self.assertIn(socket, reactor.getReaders())

    async def check_keepalive(self, framed: bool) -> None:
        client, carrier = await self.open(framed)
        carrier.keepalive(30.0, 10.0)
        pings: list[bytes] = []
        client.onPing = lambda payload: (pings.append(payload), client.sendPong(payload))
        for n in (1, 2):
            self.clock.advance(30.0)
            await self.until(lambda: len(pings) == n, f"ping {n}")
            await deferLater(0.1)  # the pong travels back
            self.clock.advance(10.0)
            await deferLater(0.1)
            self.assertFalse(client.closed.called, "dropped although it answered")

    async def check_no_pong(self, framed: bool) -> None:
        raw, carrier = await self.raw_open(framed)
        carrier.keepalive(30.0, 10.0)
        self.clock.advance(29.0)
        await deferLater(0.1)
        self.assertFalse(any(op == 9 for op, _ in raw.messages()), "pinged early")
        self.clock.advance(1.0)
        await raw.read_until(lambda b: any(op == 9 for op, _ in ws_messages(b)[0]))
        self.clock.advance(9.9)
        await deferLater(0.1)
        self.assertIsNone(raw.closed)
        self.clock.advance(0.1)
        self.assertIsNotNone(await raw.wait_closed(TIMEOUT))
        await self.until(lambda: self.made[-1].lost == 1, "connection_lost")

    def test_raw_websocket_pause_and_resume_reading(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_pause(False))

    def test_sockjs_websocket_pause_and_resume_reading(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_pause(True))

    def test_raw_websocket_keepalive_pings_a_peer_that_answers(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_keepalive(False))

    def test_sockjs_websocket_keepalive_pings_a_peer_that_answers(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_keepalive(True))

    def test_raw_websocket_peer_that_does_not_answer_a_ping_is_dropped(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_no_pong(False))

    def test_sockjs_websocket_peer_that_does_not_answer_a_ping_is_dropped(self):  # type: ignore[no-untyped-def]
        return Deferred.fromCoroutine(self.check_no_pong(True))


def deferLater(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)
