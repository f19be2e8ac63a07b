"""The incremental STOMP 1.0/1.1/1.2 frame parser: bytes in, frames out.

Lines are parsed as they complete and every offset scanned is remembered,
so a frame trickling in byte by byte costs linear time, and every limit is
enforced as soon as it is exceeded rather than after buffering the excess.
"""

from __future__ import annotations

import re
from typing import AbstractSet, Optional

from anonchat.stomp.frame import Frame, FrameError

#: Every command we accept: the client's and, for test clients, the server's.
COMMANDS: frozenset[str] = frozenset(
    "CONNECT STOMP SEND SUBSCRIBE UNSUBSCRIBE ACK NACK BEGIN COMMIT ABORT"
    " DISCONNECT CONNECTED MESSAGE RECEIPT ERROR".split()
)
_COMMAND_BY_BYTES: dict[bytes, str] = {c.encode("ascii"): c for c in COMMANDS}
# The longest command line that could still be valid: a command, then CR.
_MAX_COMMAND_LINE = max(len(c) for c in COMMANDS) + 1

#: Frames whose headers are never escaped (STOMP 1.2: backward compatibility).
VERBATIM_COMMANDS: frozenset[str] = frozenset({"CONNECT", "STOMP", "CONNECTED"})

_UNESCAPES: dict[str, Optional[dict[str, str]]] = {
    "1.0": None,
    "1.1": {"n": "\n", "c": ":", "\\": "\\"},
    "1.2": {"n": "\n", "c": ":", "\\": "\\", "r": "\r"},
}
_ESCAPE_SEQUENCE = re.compile(r"\\(.?)", re.DOTALL)
_EOLS = re.compile(rb"[\r\n]+")
_DIGITS = re.compile(r"[0-9]+")


def _unescape(text: str, table: dict[str, str]) -> str:
    if "\\" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        try:
            return table[match.group(1)]
        except KeyError:
            raise FrameError(
                "invalid header escape",
                "undefined escape sequence %r in a header" % (match.group(0),),
            ) from None

    return _ESCAPE_SEQUENCE.sub(replace, text)


class FrameParser:
    """Turns a byte stream into :class:`Frame` values; see :meth:`feed`.

    ``version`` picks the header escaping rules; the session sets it once
    it has negotiated. Frame size counts the command, the header lines and
    the body with their EOLs, not the trailing NUL.
    """

    def __init__(
        self,
        *,
        max_frame: int = 65536,
        max_headers: int = 100,
        max_header_length: int = 8192,
    ) -> None:
        self.max_frame = max_frame
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self._buffer = bytearray()
        self._error: Optional[FrameError] = None
        self._version = "1.2"
        self._unescapes = _UNESCAPES["1.2"]
        self._start_frame()

    @property
    def version(self) -> str:
        """The STOMP version whose header rules apply from now on."""
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        if value not in _UNESCAPES:
            raise ValueError("unknown STOMP version %r" % (value,))
        self._version = value
        self._unescapes = _UNESCAPES[value]

    def _start_frame(self) -> None:
        # Offsets below are relative to the start of the current frame,
        # which is always the start of the buffer between feed() calls.
        self._command: Optional[str] = None
        self._headers: list[tuple[str, str]] = []
        self._length: Optional[int] = None
        self._line = 0  # where the current head line starts
        self._scan = 0  # how far we have searched for LF (head) or NUL (body)
        self._body = -1  # where the body starts, once the head is complete

    def feed(self, data: bytes, stop_after: AbstractSet[str] = frozenset()) -> list[Frame]:
        """Add ``data``; return the frames it completed, in order.

        Heart-beat EOLs between frames are dropped. A :class:`FrameError`
        is raised as soon as the stream breaks a rule or a limit (frames
        completed earlier in the same call are then dropped with it), and
        again on every later call: the connection is beyond repair.

        Parsing stops after a frame whose command is in ``stop_after``: the
        rest stays unparsed until the next call (``feed(b"")`` resumes), so
        a session can change ``version`` between a CONNECT and the frames
        pipelined behind it.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        start = 0
        try:
            while True:
                if self._command is None:
                    # Between frames: skip heart-beats (CR tolerated anywhere).
                    eols = _EOLS.match(buffer, start)
                    if eols is not None:
                        start = eols.end()
                    if start == len(buffer):
                        break
                parsed = self._parse(buffer, start)
                if parsed is None:
                    break
                frames.append(parsed[0])
                start = parsed[1]
                self._start_frame()
                if parsed[0].command in stop_after:
                    break
        except FrameError as error:
            self._error = error
            buffer.clear()
            raise
        del buffer[:start]
        return frames

    def _parse(self, buffer: bytearray, start: int) -> Optional[tuple[Frame, int]]:
        """Advance the frame at ``start``: once complete, it and its end."""
        if self._body < 0 and not self._parse_head(buffer, start):
            return None
        body = start + self._body
        if self._length is not None:
            end = body + self._length
            if len(buffer) <= end:
                return None
            if buffer[end] != 0:
                raise FrameError(
                    "missing NUL after body",
                    "the frame body is longer than its content-length header says",
                )
        else:
            end = buffer.find(b"\0", start + self._scan)
            if end < 0:
                self._scan = len(buffer) - start
                self._check_size(self._scan)
                return None
            self._check_size(end - start)
        assert self._command is not None
        frame = Frame(self._command, tuple(self._headers), bytes(buffer[body:end]))
        return frame, end + 1

    def _parse_head(self, buffer: bytearray, start: int) -> bool:
        """Consume complete head lines; True once the blank line is in."""
        line = start + self._line
        scan = start + self._scan
        while True:
            newline = buffer.find(b"\n", scan)
            if buffer.find(b"\0", scan, len(buffer) if newline < 0 else newline) >= 0:
                if self._command is None and buffer[line] == 0:
                    raise FrameError("empty command", "a NUL where a frame should start")
                raise FrameError(
                    "NUL in frame headers",
                    "the frame ended before the blank line that ends its headers",
                )
            if newline < 0:
                # Keep the partial line; refuse it now if it is too long already.
                self._line = line - start
                self._scan = len(buffer) - start
                pending = len(buffer) - line
                if self._command is None:
                    if pending > _MAX_COMMAND_LINE:
                        raise FrameError("unknown command", "the command line is too long")
                elif pending > self.max_header_length + 1:
                    self._header_too_long()
                self._check_size(len(buffer) - start)
                return False
            end = newline - 1 if newline > line and buffer[newline - 1] == 13 else newline
            if self._command is None:
                self._command = self._parse_command(bytes(buffer[line:end]))
            elif end == line:
                self._line = self._scan = self._body = newline + 1 - start
                self._check_size(self._body if self._length is None else self._body + self._length)
                return True
            else:
                self._parse_header(buffer[line:end])
            line = scan = newline + 1
            if line - start > self.max_frame:
                self._check_size(line - start)

    def _parse_command(self, line: bytes) -> str:
        command = _COMMAND_BY_BYTES.get(line)
        if command is None:
            # Never empty: EOLs between frames are skipped, NUL is caught earlier.
            raise FrameError("unknown command", "unknown STOMP command %r" % (line[:16],))
        return command

    def _parse_header(self, line: bytearray) -> None:
        if len(line) > self.max_header_length:
            self._header_too_long()
        if len(self._headers) >= self.max_headers:
            raise FrameError("too many headers", "more than %d headers" % (self.max_headers,))
        if b"\r" in line:
            raise FrameError("bare CR in header", "a CR that does not end a line")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("header is not UTF-8", "header lines must be UTF-8 text") from None
        name, colon, value = text.partition(":")
        if not colon:
            raise FrameError("malformed header", "a header line without ':'")
        if not name:
            raise FrameError("malformed header", "a header line with an empty name")
        table = self._unescapes
        if table is not None and "\\" in text and self._command not in VERBATIM_COMMANDS:
            name = _unescape(name, table)
            value = _unescape(value, table)
        self._headers.append((name, value))
        if name == "content-length" and self._length is None:
            if _DIGITS.fullmatch(value) is None:
                raise FrameError(
                    "invalid content-length",
                    "content-length must be a non-negative decimal byte count",
                )
            digits = value.lstrip("0")
            # Refuse absurd lengths before int() (which caps digit counts).
            self._length = int(digits or "0") if len(digits) <= 12 else self.max_frame + 1

    def _check_size(self, size: int) -> None:
        if size > self.max_frame:
            raise FrameError("frame too large", "frames are limited to %d bytes" % (self.max_frame,))

    def _header_too_long(self) -> None:
        raise FrameError(
            "header too long", "header lines are limited to %d bytes" % (self.max_header_length,)
        )
