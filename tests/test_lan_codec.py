"""The LAN datagram codec and sealing: round trips, and the promise that bad bytes only ever
raise DatagramError in the codec and are counted and dropped by the core."""
import random

from twisted.internet import task
from twisted.trial import unittest

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


BAD = [
    (b"XX" + bytes(21), "bad magic"),
    (codec.encode(Datagram(BYE, SENDER)).replace(b"PL\x01", b"PL\x02", 1), "unknown version 2"),
    (codec.encode(Datagram(9, SENDER)), "unknown kind 9"),
    (codec.encode(Datagram(DATA, SENDER, 1, 4, 4)), "bad fragment 4 of 4"),
    (codec.encode(Datagram(DATA, SENDER, 0, 0, 1)), "data seq starts at 1"),
    (codec.encode(Datagram(HELLO, SENDER, body=b"\xff")), "nickname is not UTF-8"),
    (codec.encode(Datagram(BYE, SENDER)) + b"junk", "body is 4 bytes, header says 0"),
    (codec.encode(Datagram(ACK, SENDER, acks=(AckEntry(SENDER, 5, 3),))), "out of order"),
]


def _core(box=None, clock=None):
    clock = clock if clock is not None else task.Clock()
    core = LanCore("fuzzed", clock, lambda data: None, random.Random(1), box)
    core.start()
    return core


def _flip(data, rng):
    data = bytearray(data)
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


class CodecTests(unittest.SynchronousTestCase):
    def test_round_trip(self):
        for datagram in VALID:
            decoded = codec.decode(codec.encode(datagram))
            self.assertEqual((decoded, decoded.acks), (datagram, datagram.acks))

    def test_every_truncation_is_a_datagram_error(self):
        for datagram in VALID:
            data = codec.encode(datagram)
            for end in range(len(data)):
                self.assertRaises(DatagramError, codec.decode, data[:end])

    def test_bad_datagrams_say_why(self):
        for data, reason in BAD:
            error = self.assertRaises(DatagramError, codec.decode, data)
            self.assertIn(reason, str(error))

    def test_random_bytes_and_truncations_are_counted_never_raised(self):
        rng = random.Random(1234)
        samples = [rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
        samples += [b"PL\x01" + rng.randbytes(rng.randrange(0, 80)) for _ in range(3000)]
        for d in VALID:
            data = codec.encode(d)
            samples += [data[:end] for end in range(len(data))]
            samples += [_flip(data, rng) for _ in range(200)]
        clock = task.Clock()
        core = _core(clock=clock)
        for data in samples:
            try:
                codec.decode(data)
            except DatagramError:
                pass
            core.receive(data)
        clock.pump([1] * 60)  # timers started by whatever got through must not fail
        self.assertGreater(core.stats["bad_datagram"], 6000)
        self.assertEqual(core.stats["bad_datagram"] + core.stats["received"], len(samples))


class SealingTests(unittest.SynchronousTestCase):
    def test_sealed_round_trip_and_tampering(self):
        box = Box(KEY, random.Random(2))
        plain = codec.encode(VALID[0])
        sealed = box.seal(plain)
        self.assertNotIn(plain, sealed)
        self.assertEqual(box.open(sealed), plain)
        self.assertNotEqual(box.seal(plain), sealed)  # a fresh nonce every time
        rng = random.Random(3)
        tampered = [sealed[:end] for end in range(len(sealed))]
        tampered += [_flip(sealed, rng) for _ in range(300)]
        for bad in tampered:
            self.assertRaises(AuthenticationFailed, box.open, bad)
        other = Box(derive_key("other"), random.Random(2))
        self.assertRaises(AuthenticationFailed, other.open, sealed)

    def test_a_sealed_core_counts_unsealed_or_forged_datagrams_as_auth_failures(self):
        core = _core(Box(KEY, random.Random(4)))
        rng = random.Random(5)
        forged = [rng.randbytes(rng.randrange(0, 100)) for _ in range(500)]
        forged += [codec.encode(d) for d in VALID]
        for data in forged:
            core.receive(data)
        self.assertEqual((core.stats["auth_failed"], core.members), (len(forged), {}))

    def test_the_key_comes_from_scrypt_with_the_fixed_salt(self):
        self.assertEqual((derive_key("fuzz"), len(KEY)), (KEY, 32))
        self.assertNotEqual(derive_key("fuzz "), KEY)
