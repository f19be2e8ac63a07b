# Usage: pip install atheris && python tests/fuzz_stomp_parser.py -max_total_time=60
"""Coverage-guided fuzz target for FrameParser (atheris; not run by trial).

The first input byte picks the STOMP version, the split size and whether
the rest is the raw stream or indexes into STOMP tokens (so the fuzzer gets
past the command line quickly). Only FrameError may escape the parser, and
every frame it yields must serialize back to itself.
"""

from __future__ import annotations

import sys

from anonchat.stomp.frame import FrameError
from anonchat.stomp.parser import FrameParser
from anonchat.stomp.serializer import serialize

VERSIONS = ("1.0", "1.1", "1.2")
TOKENS = (
    b"SEND", b"CONNECT", b"CONNECTED", b"MESSAGE", b"DISCONNECT", b"\n", b"\r\n",
    b"\n\n", b"\r", b":", b"\\", b"\\n", b"\\c", b"\\r", b"\x00", b"content-length:",
    b"0", b"1", b"5", b"-", b"x", b"\xff", "\uac00".encode(),
)  # fmt: skip


def fuzz_one_input(data: bytes) -> None:
    if not data:
        return
    control, stream = data[0], data[1:]
    version = VERSIONS[control % 4 % 3]
    if control & 4:
        stream = b"".join([TOKENS[byte % len(TOKENS)] for byte in stream])
    step = 1 + (control >> 3)  # feeds of 1 to 32 bytes
    parser = FrameParser(max_frame=512, max_headers=8, max_header_length=64)
    parser.version = version
    try:
        for begin in range(0, len(stream), step):
            for frame in parser.feed(stream[begin : begin + step]):
                checker = FrameParser(max_frame=1 << 20)
                checker.version = version
                assert checker.feed(serialize(frame, version)) == [frame], frame
    except FrameError as error:
        assert error.message and "\n" not in error.message, error.message


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()  # the codec modules are already imported
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
