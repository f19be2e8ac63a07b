"""Frame to bytes, with the header escaping of the negotiated STOMP version.

A header that the version cannot carry (a newline without escaping, a NUL,
an empty name, a lone surrogate) raises ValueError instead of emitting a
frame that a peer would read differently: that would be header injection.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Optional

from anonchat.stomp.frame import Frame
from anonchat.stomp.parser import VERBATIM_COMMANDS

_ESCAPES: dict[str, Optional[dict[int, str]]] = {
    "1.0": None,
    "1.1": str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"}),
    "1.2": str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}),
}
# Anything that needs escaping or may be refused; absent in most frames.
_SPECIAL = re.compile(r"[\\\n\r:\x00]")


def serialize(frame: Frame, version: str = "1.2") -> bytes:
    """The wire bytes of ``frame``: command, headers, blank line, body, NUL.

    No ``content-length`` is added; put one in the headers when the body
    may contain NUL.
    """
    try:
        table = _ESCAPES[version]
    except KeyError:
        raise ValueError("unknown STOMP version %r" % (version,)) from None
    if frame.command in VERBATIM_COMMANDS:
        table = None
    lines = [frame.command]
    headers = frame.headers
    if headers:
        if _SPECIAL.search("".join(chain.from_iterable(headers))) is None:
            lines.extend([name + ":" + value for name, value in headers])
        else:
            lines.extend([_header_line(name, value, table) for name, value in headers])
        if not all([name for name, _ in headers]):
            raise ValueError("a STOMP header needs a name")
    lines.append("\n")
    return "\n".join(lines).encode("utf-8") + frame.body + b"\0"


def header_line(name: str, value: str, version: str = "1.2") -> bytes:
    """One header line (``name:value`` and LF), escaped as ``serialize``
    escapes it in a non-CONNECT frame."""
    if _SPECIAL.search(name + value) is None and name:
        return (name + ":" + value + "\n").encode("utf-8")
    if not name:
        raise ValueError("a STOMP header needs a name")
    return (_header_line(name, value, _ESCAPES[version]) + "\n").encode("utf-8")


def _header_line(name: str, value: str, table: Optional[dict[int, str]]) -> str:
    if "\0" in name or "\0" in value:
        raise ValueError("a STOMP header cannot contain NUL")
    if table is not None:
        if 13 not in table and ("\r" in name or "\r" in value):
            raise ValueError("STOMP 1.1 cannot carry CR in a header")
        return name.translate(table) + ":" + value.translate(table)
    if "\n" in name or "\n" in value or "\r" in name or "\r" in value:
        raise ValueError("this frame cannot carry CR or LF in a header")
    if ":" in name:
        raise ValueError("this frame cannot carry ':' in a header name")
    return name + ":" + value
