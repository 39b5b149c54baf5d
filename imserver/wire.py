"""Frame payloads: JSON objects and binary frames, encoded and decoded.

A frame on the wire is a 4-byte big-endian length and a payload (the length prefix itself is
handled by the protocol's ``Int32StringReceiver``). A payload is either a UTF-8 JSON object or,
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
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS  # int keys become strings, as with the stdlib


class WireError(Exception):
    """The peer sent a payload we cannot decode; the message says what was wrong."""


def decode(payload):
    """Decode one JSON payload into a dict, or raise WireError naming the problem.

    Like the stdlib with constants refused: NaN and Infinity are not JSON. Unlike it, an integer
    beyond 64 bits decodes as a float (so an ``Int`` field refuses it as not an integer)."""
    try:
        obj = _loads(payload)
    except orjson.JSONDecodeError as e:
        try:
            payload.decode("utf-8")
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
    return _dumps(obj, option=_DUMPS_OPTIONS)


def frame(payload):
    """A whole frame: length prefix plus payload, ready to write to a transport."""
    return _pack(len(payload)) + payload


def encode(obj):
    """A whole JSON frame for ``obj``; encode a push once and write it to many connections."""
    payload = _dumps(obj, option=_DUMPS_OPTIONS)
    return _pack(len(payload)) + payload
