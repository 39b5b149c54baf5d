"""The LAN datagram codec and sealing: round trips, and the promise that bad bytes only ever
raise DatagramError in the codec and are counted and dropped by the core."""
import random

import pytest
from twisted.internet import task

from imclient.lan import codec
from imclient.lan.codec import ACK, BYE, DATA, HELLO, AckEntry, Datagram, DatagramError
from imclient.lan.core import LanCore
from imclient.lan.crypto import AuthenticationFailed, Box, derive_key

SENDER = bytes(range(8))
KEY = derive_key("fuzz")

VALID = [
    Datagram(HELLO, SENDER, 7, flags=codec.ANSWER_ME, body="zoë".encode()),
    Datagram(BYE, SENDER),
    Datagram(DATA, SENDER, 3, 1, 4, body=b"x" * codec.FRAGMENT_SIZE),
    Datagram(DATA, SENDER, 1, 0, 1, body=b""),
    Datagram(ACK, SENDER, acks=(
        AckEntry(b"A" * 8, 4, 9, ((5, codec.ALL_FRAGMENTS), (7, 2))),
        AckEntry(b"B" * 8, 0, 0),
    )),
]


@pytest.mark.parametrize("datagram", VALID, ids=lambda d: codec.KIND_NAMES[d.kind])
def test_round_trip(datagram):
    decoded = codec.decode(codec.encode(datagram))
    assert decoded == datagram and decoded.acks == datagram.acks


@pytest.mark.parametrize("datagram", VALID, ids=lambda d: codec.KIND_NAMES[d.kind])
def test_every_truncation_is_a_datagram_error(datagram):
    data = codec.encode(datagram)
    for end in range(len(data)):
        with pytest.raises(DatagramError):
            codec.decode(data[:end])


@pytest.mark.parametrize("data, reason", [
    (b"XX" + bytes(21), "bad magic"),
    (codec.encode(Datagram(BYE, SENDER)).replace(b"PL\x01", b"PL\x02", 1), "unknown version 2"),
    (codec.encode(Datagram(9, SENDER)), "unknown kind 9"),
    (codec.encode(Datagram(DATA, SENDER, 1, 4, 4)), "bad fragment 4 of 4"),
    (codec.encode(Datagram(DATA, SENDER, 0, 0, 1)), "data seq starts at 1"),
    (codec.encode(Datagram(HELLO, SENDER, body=b"\xff")), "nickname is not UTF-8"),
    (codec.encode(Datagram(BYE, SENDER)) + b"junk", "body is 4 bytes, header says 0"),
    (codec.encode(Datagram(ACK, SENDER, acks=(AckEntry(SENDER, 5, 3),))), "out of order"),
])
def test_bad_datagrams_say_why(data, reason):
    with pytest.raises(DatagramError, match=reason):
        codec.decode(data)


def _core(box=None):
    core = LanCore("fuzzed", task.Clock(), lambda data: None, random.Random(1), box)
    core.start()
    return core


def test_random_bytes_and_truncations_are_counted_never_raised():
    rng = random.Random(1234)
    samples = [rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
    samples += [b"PL\x01" + rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
    for d in VALID:
        data = codec.encode(d)
        samples += [data[:end] for end in range(len(data))]
        samples += [_flip(data, rng) for _ in range(200)]
    core = _core()
    for data in samples:
        try:
            codec.decode(data)
        except DatagramError:
            pass
        core.receive(data)
    assert core.stats["bad_datagram"] > 6000
    assert core.stats["bad_datagram"] + core.stats["received"] == len(samples)


def test_sealed_round_trip_and_tampering():
    box = Box(KEY, random.Random(2))
    plain = codec.encode(VALID[0])
    sealed = box.seal(plain)
    assert plain not in sealed and box.open(sealed) == plain
    assert box.seal(plain) != sealed  # a fresh nonce every time
    rng = random.Random(3)
    for bad in [sealed[:end] for end in range(len(sealed))] + [_flip(sealed, rng) for _ in range(300)]:
        with pytest.raises(AuthenticationFailed):
            box.open(bad)
    with pytest.raises(AuthenticationFailed):
        Box(derive_key("other"), random.Random(2)).open(sealed)


def test_a_sealed_core_counts_everything_unsealed_or_forged_as_auth_failures():
    core = _core(Box(KEY, random.Random(4)))
    rng = random.Random(5)
    forged = [rng.randbytes(rng.randrange(0, 100)) for _ in range(500)]
    forged += [codec.encode(d) for d in VALID]
    for data in forged:
        core.receive(data)
    assert core.stats["auth_failed"] == len(forged) and core.members == {}


def test_the_key_comes_from_scrypt_with_the_fixed_salt():
    assert derive_key("fuzz") == KEY and len(KEY) == 32 and derive_key("fuzz ") != KEY


def _flip(data, rng):
    data = bytearray(data)
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)
