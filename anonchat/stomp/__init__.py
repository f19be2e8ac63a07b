"""Sans-IO STOMP 1.0/1.1/1.2: frames, parser, serializer and session.

Knows bytes and STOMP rules; never Twisted transports, Autobahn or chat.
"""
