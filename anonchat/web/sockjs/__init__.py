"""A SockJS 0.3.3 server: framing, session registry and one module per transport family."""
