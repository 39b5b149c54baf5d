"""Binary frame codec for file bytes (sans-I/O): a fixed 18-byte header, then raw data.

Layout of a binary payload (after the frame's 4-byte length prefix)::

    byte 0      0x00         wire.BINARY_MARK
    byte 1      kind         0x01 upload chunk (client to server), 0x02 download data (server to client)
    bytes 2-9   stream id    uint64 big-endian: the upload id, or the download id
    bytes 10-17 offset       uint64 big-endian: where in the file the data starts
    bytes 18-   data         raw bytes (at least one)
"""
import struct

from imserver import wire

UPLOAD_CHUNK = 0x01
DOWNLOAD_DATA = 0x02
HEADER = struct.Struct(">BBQQ")
HEADER_SIZE = HEADER.size
#: Largest payload we send and recommend: 64 KiB, header included.
MAX_PAYLOAD = 64 * 1024
MAX_DATA = MAX_PAYLOAD - HEADER_SIZE
_PREFIXED = struct.Struct(">IBBQQ")


class FrameError(Exception):
    """The binary payload is not a well-formed chunk frame."""


def header(kind, stream_id, offset):
    return HEADER.pack(wire.BINARY_MARK, kind, stream_id, offset)


def framed_header(kind, stream_id, offset, length):
    """Length prefix plus header for ``length`` bytes of data: write it, then the data itself."""
    return _PREFIXED.pack(HEADER_SIZE + length, wire.BINARY_MARK, kind, stream_id, offset)


def decode(payload):
    """(kind, stream_id, offset, data memoryview) of a binary payload, or FrameError."""
    if len(payload) <= HEADER_SIZE:
        raise FrameError(f"binary frame of {len(payload)} bytes is shorter than its "
                         f"{HEADER_SIZE}-byte header plus data")
    mark, kind, stream_id, offset = HEADER.unpack_from(payload)
    if mark != wire.BINARY_MARK:
        raise FrameError("not a binary frame")
    return kind, stream_id, offset, memoryview(payload)[HEADER_SIZE:]


def chunk_size(max_frame):
    """Data bytes per frame for a peer that accepts ``max_frame``-byte payloads."""
    return min(MAX_PAYLOAD, max_frame) - HEADER_SIZE
