"""The multiplexed log format (``format=multiplexed``): Docker's attach
framing, an 8-byte header (stream 1 or 2, three zero bytes, big-endian
uint32 length) before each piece of output. The API writes it, the client
reads it.

Imports only ``states``.
"""

from __future__ import annotations

import struct

from jobdock.models.states import STREAM_NUMBERS, STREAMS_BY_NUMBER, Stream

HEADER = struct.Struct(">BxxxI")


def frame(stream: Stream, data: bytes) -> bytes:
    """One piece of output with its header."""
    return HEADER.pack(STREAM_NUMBERS[stream], len(data)) + data


class Unframer:
    """Pieces of output back from frames, however the bytes were cut."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Stream, bytes]]:
        """The pieces whose frames ``data`` completes."""
        buffer = self._buffer
        buffer += data
        pieces = []
        while len(buffer) >= HEADER.size:
            number, size = HEADER.unpack_from(buffer)
            if len(buffer) < HEADER.size + size:
                break
            pieces.append(
                (STREAMS_BY_NUMBER[number], bytes(buffer[HEADER.size : HEADER.size + size]))
            )
            del buffer[: HEADER.size + size]
        return pieces
