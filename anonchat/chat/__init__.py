"""Chat rules: messages, nicknames, the room, presence and rate limits.

Takes an injected clock; never touches sockets, SQL or Redis commands.
"""
