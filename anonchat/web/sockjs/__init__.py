"""A SockJS 0.3.3 server: framing, session registry and one module per transport family.

``SockJSResource`` is the endpoint; each SockJS session feeds one
``IFrameReceiver`` from ``session_factory`` and is its ``IFrameTransport``.
"""

from anonchat.web.sockjs.options import SockJSOptions
from anonchat.web.sockjs.resource import SockJSResource

__all__ = ["SockJSOptions", "SockJSResource"]
