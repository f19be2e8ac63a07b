"""twistd plugin: ``twistd -n anonchat``. Nothing else lives here."""

from twisted.application.service import ServiceMaker

anonchat = ServiceMaker(
    "anonchat",
    "anonchat.tap",
    "Anonymous real-time chat: STOMP over WebSocket and SockJS",
    "anonchat",
)
