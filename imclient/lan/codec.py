"""LAN chat datagrams: the binary header and bodies of docs/lan.rst, encoded and decoded.

This module knows no timers, members or keys. Decoding either returns a ``Datagram`` or raises
``DatagramError``; it never raises anything else, whatever bytes it is given.
"""
import struct
from dataclasses import dataclass, field

MAGIC = b"PL"
VERSION = 1

HELLO, BYE, DATA, ACK = 1, 2, 3, 4
#: The kind byte of a passphrase-sealed envelope (see ``crypto``); never inside one.
SEALED = 0x53
KIND_NAMES = {HELLO: "hello", BYE: "bye", DATA: "data", ACK: "ack"}

#: HELLO flag: "I am new or have heard someone I do not know: everybody, announce yourselves".
ANSWER_ME = 0x01

#: magic, version, kind, flags, sender id, seq, fragment index, fragment count, body length.
HEADER = struct.Struct("!2sBBB8sIHHH")
#: sender id, cumulative seq, top seq, number of missing entries.
_ACK_ENTRY = struct.Struct("!8sIIH")
#: seq, fragment index (ALL_FRAGMENTS: the whole message).
_MISSING = struct.Struct("!IH")

ALL_FRAGMENTS = 0xFFFF
#: Largest DATA body: keeps a sealed datagram under ~1,200 bytes, safe on any LAN path.
FRAGMENT_SIZE = 1100
#: Largest number of fragments in one message (about 280 KB of text).
MAX_FRAGMENTS = 256
MAX_NICKNAME = 64
MAX_SEQ = 0xFFFFFFFF


class DatagramError(Exception):
    """The bytes are not a datagram we accept; the message says why. The datagram is dropped."""


@dataclass(frozen=True)
class AckEntry:
    """What one receiver holds of one sender's stream (see docs/lan.rst, "ack")."""

    sender: bytes
    cumulative: int
    top: int
    missing: tuple = ()  # ((seq, fragment index or ALL_FRAGMENTS), ...)


@dataclass(frozen=True)
class Datagram:
    kind: int
    sender: bytes
    seq: int = 0
    frag_index: int = 0
    frag_count: int = 1
    flags: int = 0
    body: bytes = b""
    acks: tuple = field(default=(), compare=False)  # AckEntry, decoded from an ACK body


def encode(d):
    """The bytes of datagram ``d``; ACK datagrams take their body from ``d.acks``."""
    body = encode_acks(d.acks) if d.kind == ACK else d.body
    header = HEADER.pack(MAGIC, VERSION, d.kind, d.flags, d.sender, d.seq,
                         d.frag_index, d.frag_count, len(body))
    return header + body


def encode_acks(entries):
    out = []
    for e in entries:
        out.append(_ACK_ENTRY.pack(e.sender, e.cumulative, e.top, len(e.missing)))
        out.extend(_MISSING.pack(seq, frag) for seq, frag in e.missing)
    return b"".join(out)


def ack_entry_size(n_missing):
    return _ACK_ENTRY.size + n_missing * _MISSING.size


def decode(data):
    """Parse one plain (unsealed) datagram, or raise DatagramError."""
    if len(data) < HEADER.size:
        raise DatagramError(f"truncated: {len(data)} bytes, header needs {HEADER.size}")
    magic, version, kind, flags, sender, seq, index, count, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DatagramError("bad magic")
    if version != VERSION:
        raise DatagramError(f"unknown version {version}")
    body = bytes(data[HEADER.size:])
    if len(body) != length:
        raise DatagramError(f"body is {len(body)} bytes, header says {length}")
    check = _CHECKS.get(kind)
    if check is None:
        raise DatagramError(f"unknown kind {kind}")
    acks = check(seq, index, count, body)
    if acks:
        body = b""  # an ack's content is its entries
    return Datagram(kind, sender, seq, index, count, flags, body, acks)


def _single(index, count):
    if (index, count) != (0, 1):
        raise DatagramError("control datagrams have fragment 0 of 1")


def _check_hello(seq, index, count, body):
    _single(index, count)
    if not 0 < len(body) <= MAX_NICKNAME:
        raise DatagramError("nickname must be 1 to 64 bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise DatagramError("nickname is not UTF-8") from None
    return ()


def _check_bye(seq, index, count, body):
    _single(index, count)
    if body:
        raise DatagramError("bye has no body")
    return ()


def _check_data(seq, index, count, body):
    if seq == 0:
        raise DatagramError("data seq starts at 1")
    if not 0 < count <= MAX_FRAGMENTS or index >= count:
        raise DatagramError(f"bad fragment {index} of {count}")
    if len(body) > FRAGMENT_SIZE:
        raise DatagramError(f"fragment body of {len(body)} bytes is too large")
    return ()


def _check_ack(seq, index, count, body):
    _single(index, count)
    entries, offset = [], 0
    while offset < len(body):
        entry, offset = _decode_ack_entry(body, offset)
        entries.append(entry)
    if not entries:
        raise DatagramError("ack without entries")
    return tuple(entries)


def _decode_ack_entry(body, offset):
    if len(body) - offset < _ACK_ENTRY.size:
        raise DatagramError("truncated ack entry")
    sender, cumulative, top, n = _ACK_ENTRY.unpack_from(body, offset)
    offset += _ACK_ENTRY.size
    if len(body) - offset < n * _MISSING.size:
        raise DatagramError("truncated missing list")
    missing = tuple(_MISSING.unpack_from(body, offset + i * _MISSING.size) for i in range(n))
    if top < cumulative or any(not cumulative < seq <= top for seq, _ in missing):
        raise DatagramError("ack ranges out of order")
    return AckEntry(sender, cumulative, top, missing), offset + n * _MISSING.size


_CHECKS = {HELLO: _check_hello, BYE: _check_bye, DATA: _check_data, ACK: _check_ack}
