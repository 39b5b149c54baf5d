"""Frame payloads: JSON objects and binary frames, encoded and decoded.

A frame on the wire is a 4-byte big-endian length and a payload (the length prefix itself is
handled by the protocol's ``Int32StringReceiver``). A payload is either a UTF-8 JSON object or,
when its first byte is ``BINARY_MARK``, a binary frame whose layout the transfer engine defines.
This module knows nothing of ops or sockets; every decoding failure is a ``WireError``.
"""
import json
import struct

#: First byte of a binary payload. JSON payloads always start with ``{`` (0x7B).
BINARY_MARK = 0x00

_PREFIX = struct.Struct(">I")
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class WireError(Exception):
    """The peer sent a payload we cannot decode; the message says what was wrong."""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def decode(payload):
    """Decode one JSON payload into a dict, or raise WireError naming the problem."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(f"payload is not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise WireError(f"payload is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(obj, dict):
        raise WireError(f"payload must be a JSON object, not {type(obj).__name__}")
    return obj


def is_binary(payload):
    return len(payload) > 0 and payload[0] == BINARY_MARK


def dumps(obj):
    """The JSON payload bytes for ``obj`` (no length prefix)."""
    return _encoder.encode(obj).encode("utf-8")


def frame(payload):
    """A whole frame: length prefix plus payload, ready to write to a transport."""
    return _PREFIX.pack(len(payload)) + payload


def encode(obj):
    """A whole JSON frame for ``obj``; encode a push once and write it to many connections."""
    return frame(dumps(obj))
