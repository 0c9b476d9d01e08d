"""The session's wire format: JSON text messages for control, binary messages for media.

Every binary message, in both directions, starts with a 16-byte little-endian header:

    offset size field
    0      1    version      (1)
    1      1    flags        (per stream kind; 0 when unused)
    2      2    channel      (uint16, given by the server in the stream's "opened" message)
    4      4    sequence     (uint32, the sender's counter for that stream)
    8      8    timestamp_ms (float64; client capture time in messages from the client,
                              server wall-clock time in messages from the server)

A fixed header rather than JSON-in-binary keeps a 30 fps camera stream free of parsing
work and is one `DataView` in the browser.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from xrserve.core.errors import BadRequest

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHId")
HEADER_SIZE = HEADER.size  # 16
MAX_CHANNEL = 0xFFFF


@dataclass(frozen=True, slots=True)
class FrameHeader:
    channel: int
    sequence: int
    timestamp_ms: float
    flags: int = 0


def pack(header: FrameHeader, payload: bytes | bytearray | memoryview = b"") -> bytes:
    return HEADER.pack(
        PROTOCOL_VERSION, header.flags, header.channel, header.sequence & 0xFFFFFFFF, header.timestamp_ms
    ) + bytes(payload)


def unpack(message: bytes) -> tuple[FrameHeader, memoryview]:
    """Split a binary message into header and payload, or say what is wrong with it."""
    if len(message) < HEADER_SIZE:
        raise BadRequest(
            f"binary message of {len(message)} bytes is shorter than the {HEADER_SIZE}-byte header "
            f"(version u8, flags u8, channel u16, sequence u32, timestamp_ms f64, little-endian)"
        )
    version, flags, channel, sequence, timestamp_ms = HEADER.unpack_from(message)
    if version != PROTOCOL_VERSION:
        raise BadRequest(
            f"binary header version {version} is not supported; this server speaks version {PROTOCOL_VERSION}"
        )
    return FrameHeader(channel, sequence, timestamp_ms, flags), memoryview(message)[HEADER_SIZE:]


def check_timestamp(header: FrameHeader) -> None:
    """A client's timestamp_ms must be a time: finite and not negative (NaN, ±inf, -5 are refused).

    Checked once the message's stream is known, so the error names the stream; stream kinds
    that read the time check more (the camera stream: how far it is from the server's clock).
    """
    stamp = header.timestamp_ms
    if not math.isfinite(stamp) or stamp < 0:
        raise BadRequest(
            f"frame {header.sequence}: timestamp_ms is {stamp!r}, which is not a time; send the capture time "
            "in milliseconds since the Unix epoch (a finite number, not negative)"
        )
