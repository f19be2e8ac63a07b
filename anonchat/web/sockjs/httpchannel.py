"""An HTTP response as a SockJS receiving channel, shared by the polling and streaming transports.

The channel registers itself as the response's push producer, so a client
that stops reading pauses it and the session queues (and counts) instead of
Twisted's buffers growing. A connection lost before we finished is the
client going away, and ends the session.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from anonchat.stomp.transport import ClientInfo
from anonchat.web.sockjs import responses
from anonchat.web.sockjs.endpoint import Endpoint
from anonchat.web.sockjs.session import SockJSSession


@implementer(IPushProducer)
class HTTPChannel:
    """Base: subclasses say how a frame is wrapped and whether the response goes on."""

    def __init__(self, request: Request, session: SockJSSession) -> None:
        self.request = request
        self.session = session
        self._done = False
        self._paused = False
        request.notifyFinish().addErrback(self._lost)
        request.registerProducer(self, True)

    # -- Channel

    @property
    def writable(self) -> bool:
        return not self._done and not self._paused

    def write_frame(self, frame: bytes) -> None:
        if self._done:
            return
        self.deliver(self.wrap(frame))

    def end(self) -> None:
        if self._done:
            return
        self._done = True
        self.request.unregisterProducer()
        self.request.finish()
        self.session.release(self)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self.request.unregisterProducer()
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if transport is not None:
            transport.abortConnection()
        self.session.release(self)

    def pause_reading(self) -> None:
        """Nothing to read on a receiving response (sends are held by the session)."""

    def resume_reading(self) -> None:
        pass

    def keepalive(self, interval: float, timeout: float) -> None:
        """Nothing to do: a client that stops polling is gone after the disconnect delay."""

    # -- for subclasses

    def start(self) -> None:
        """Write what precedes the first frame (a streaming prelude)."""

    def wrap(self, frame: bytes) -> bytes:
        raise NotImplementedError

    def deliver(self, data: bytes) -> None:
        raise NotImplementedError

    # -- IPushProducer

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self.session.channel_writable(self)

    def stopProducing(self) -> None:
        pass

    def _lost(self, reason: Failure) -> None:
        if self._done:
            return
        self._done = True
        self.session.channel_lost(self)


def serve(
    endpoint: Endpoint,
    request: Request,
    session_id: str,
    kind: str,
    content_type: bytes,
    make_channel: Callable[[Request, SockJSSession], HTTPChannel],
) -> object:
    """Attach a receiving request to its session, creating the session if it is new."""
    session = endpoint.registry.get(session_id)
    if session is None:
        client = ClientInfo(endpoint.client_address(request), kind)
        session = endpoint.registry.create(session_id, kind, client)
    responses.session_headers(request, endpoint.options, content_type)
    channel = make_channel(request, session)
    channel.start()
    session.attach(channel)
    return NOT_DONE_YET
