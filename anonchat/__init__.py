"""anonchat: an anonymous real-time chat backend (STOMP over WebSocket/SockJS)."""

__version__ = "0.1"
