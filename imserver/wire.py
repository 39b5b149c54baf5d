"""Frame payloads: JSON objects and binary frames, encoded and decoded.

A frame on the wire is a 4-byte big-endian length and a payload; ``FrameReader`` splits a
received byte stream into payloads. A payload is either a UTF-8 JSON object or,
when its first byte is ``BINARY_MARK``, a binary frame whose layout the transfer engine defines.
This module knows nothing of ops or sockets; every decoding failure is a ``WireError``.
JSON goes through orjson: at tens of thousands of messages a second, the stdlib codec was a
quarter of the server's reactor time (``bench/README.md``).
"""
import struct

import orjson

#: First byte of a binary payload. JSON payloads always start with ``{`` (0x7B).
BINARY_MARK = 0x00

_PREFIX = struct.Struct(">I")
_pack = _PREFIX.pack
_loads = orjson.loads
_dumps = orjson.dumps
_EncodeError = orjson.JSONEncodeError
#: Dict keys that are not strings (ints, as in some replies) become strings, as with the stdlib.
#: orjson's option for that costs about a third more on every payload, so it is used only for
#: the payloads that need it: the plain call refuses them.
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


class WireError(Exception):
    """The peer sent a payload we cannot decode; the message says what was wrong."""


class FrameTooLarge(Exception):
    """A frame's length prefix declares more than the limit (``length`` is what it declared)."""

    def __init__(self, length):
        super().__init__(length)
        self.length = length


class FrameReader:
    """Splits received bytes into frame payloads (sans-I/O), copying as little as it can.

    A frame that lies whole inside one received chunk is returned as a ``memoryview`` slice of
    that chunk, with no copy; only a frame cut by a read boundary is copied, once, into a buffer
    of its own. (``Int32StringReceiver`` joins its buffer with every read and slices each
    payload out: two copies of every byte, which was most of the reactor's cost of an upload.)
    A payload stays valid after later reads: nothing returned is ever written to again.
    """

    def __init__(self):
        self._data = b""
        self._view = memoryview(b"")
        self._pos = 0
        self._head = bytearray()  # the start of a frame cut by a read boundary

    def feed(self, data):
        if self._pos < len(self._data):  # left unread (the reader was paused): rare, so copy
            data = bytes(self._view[self._pos:]) + data
        self._data, self._view, self._pos = data, memoryview(data), 0

    def pending(self):
        """Bytes received but not yet returned as payloads."""
        return len(self._head) + len(self._data) - self._pos

    def next(self, limit):
        """The next whole payload, or None until more bytes are fed; FrameTooLarge when a length
        prefix declares more than ``limit`` (decided from the prefix alone)."""
        if self._head:
            return self._complete_head(limit)
        data, pos = self._data, self._pos
        left = len(data) - pos
        if left >= 4:
            (length,) = _PREFIX.unpack_from(data, pos)
            if length > limit:
                raise FrameTooLarge(length)
            if left >= 4 + length:
                self._pos = pos + 4 + length
                return self._view[pos + 4:self._pos]
        if left:
            self._head = bytearray(self._view[pos:])
            self._pos = len(data)
        return None

    def _complete_head(self, limit):
        head = self._head
        if len(head) < 4:
            self._take(4 - len(head))
            if len(head) < 4:
                return None
        (length,) = _PREFIX.unpack_from(head)
        if length > limit:
            raise FrameTooLarge(length)
        self._take(4 + length - len(head))
        if len(head) < 4 + length:
            return None
        self._head = bytearray()
        return memoryview(head)[4:]

    def _take(self, n):
        n = min(n, len(self._data) - self._pos)
        self._head += self._view[self._pos:self._pos + n]
        self._pos += n


def decode(payload):
    """Decode one JSON payload (bytes or a memoryview) into a dict, or raise WireError naming
    the problem.

    Like the stdlib with constants refused: NaN and Infinity are not JSON. Unlike it, an integer
    beyond 64 bits decodes as a float (so an ``Int`` field refuses it as not an integer)."""
    try:
        obj = _loads(payload)
    except orjson.JSONDecodeError as e:
        try:
            bytes(payload).decode("utf-8")
        except UnicodeDecodeError as u:
            raise WireError(f"payload is not valid UTF-8 (byte {u.start})") from None
        raise WireError(f"payload is not valid JSON: {str(e)[:120]}") from None
    if type(obj) is not dict:
        raise WireError(f"payload must be a JSON object, not {type(obj).__name__}")
    return obj


def is_binary(payload):
    return len(payload) > 0 and payload[0] == BINARY_MARK


def dumps(obj):
    """The JSON payload bytes for ``obj`` (no length prefix)."""
    try:
        return _dumps(obj)
    except _EncodeError:
        return _dumps(obj, option=_NON_STR_KEYS)


def frame(payload):
    """A whole frame: length prefix plus payload, ready to write to a transport."""
    return _pack(len(payload)) + payload


def encode(obj):
    """A whole JSON frame for ``obj``; encode a push once and write it to many connections."""
    payload = dumps(obj)
    return _pack(len(payload)) + payload
