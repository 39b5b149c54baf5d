"""The payload codec: every bad input is a WireError, never anything else."""
import json
import random
import unittest

from imserver import wire


class DecodeTests(unittest.TestCase):
    def test_roundtrip(self):
        obj = {"op": "send", "id": 1, "body": "héllo ✓"}
        self.assertEqual(wire.decode(wire.dumps(obj)), obj)

    def test_int_keys_become_strings_as_with_the_stdlib(self):
        obj = {"counts": {7: 2, 12: 0}, "nested": [{1: "a"}], "plain": {"k": 1}}
        self.assertEqual(json.loads(wire.dumps(obj)), json.loads(json.dumps(obj)))
        self.assertEqual(wire.encode(obj)[4:], wire.dumps(obj))

    def test_what_json_cannot_hold_is_refused(self):
        with self.assertRaises(TypeError):
            wire.dumps({"a": object()})

    def test_frame_has_big_endian_length(self):
        data = wire.encode({"a": 1})
        self.assertEqual(int.from_bytes(data[:4], "big"), len(data) - 4)

    def test_invalid_utf8(self):
        with self.assertRaisesRegex(wire.WireError, "UTF-8"):
            wire.decode(b'{"op": "\xff"}')

    def test_invalid_json(self):
        with self.assertRaisesRegex(wire.WireError, "not valid JSON"):
            wire.decode(b'{"op": ')

    def test_non_object(self):
        for payload in (b"[1]", b"1", b'"x"', b"null"):
            with self.assertRaisesRegex(wire.WireError, "JSON object"):
                wire.decode(payload)

    def test_nan_rejected(self):
        with self.assertRaises(wire.WireError):
            wire.decode(b'{"x": NaN}')

    def test_deep_nesting_is_a_wire_error(self):
        with self.assertRaises(wire.WireError):
            wire.decode(b"[" * 100000 + b"]" * 100000)

    def test_fuzz_only_wire_errors(self):
        rng = random.Random(1234)
        valid = wire.dumps({"op": "login", "id": 7, "username": "alice", "password": "x" * 10})
        for _ in range(3000):
            choice = rng.random()
            if choice < 0.4:
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
            elif choice < 0.7:
                payload = valid[: rng.randint(0, len(valid))]
            else:
                b = bytearray(valid)
                b[rng.randrange(len(b))] = rng.getrandbits(8)
                payload = bytes(b)
            try:
                result = wire.decode(payload)
            except wire.WireError:
                continue
            self.assertIsInstance(result, dict)
            self.assertEqual(result, json.loads(payload))

    def test_binary_mark(self):
        self.assertTrue(wire.is_binary(b"\x00abc"))
        self.assertFalse(wire.is_binary(b"{}"))
        self.assertFalse(wire.is_binary(b""))


def _stream():
    """JSON and binary payloads of assorted sizes, an empty one, one bigger than a typical read."""
    payloads = [wire.dumps({"op": "ping", "id": 1}), b"\x00\x01" + bytes(range(256)) * 3, b"",
                b"\x00" * 70_000, wire.dumps({"op": "echo", "id": 2}), b"\x00\x01tail"]
    return payloads, b"".join(wire.frame(p) for p in payloads)


def _read_all(reader, pieces, limit=1 << 20):
    got = []
    for piece in pieces:
        reader.feed(piece)
        while (payload := reader.next(limit)) is not None:
            got.append(payload)
    return got


class FrameReaderTests(unittest.TestCase):
    def test_whole_stream_in_one_read(self):
        payloads, data = _stream()
        got = _read_all(wire.FrameReader(), [data])
        self.assertEqual([bytes(p) for p in got], payloads)

    def test_split_at_every_byte_boundary(self):
        payloads, data = _stream()
        for cut in range(len(data) + 1):
            reader = wire.FrameReader()
            got = _read_all(reader, [data[:cut], data[cut:]])
            self.assertEqual([bytes(p) for p in got], payloads, f"cut at {cut}")
            self.assertEqual(reader.pending(), 0)

    def test_byte_at_a_time(self):
        payloads, data = _stream()
        got = _read_all(wire.FrameReader(), [data[i:i + 1] for i in range(len(data))])
        self.assertEqual([bytes(p) for p in got], payloads)

    def test_payloads_stay_valid_after_later_reads(self):
        payloads, data = _stream()
        reader = wire.FrameReader()
        got = _read_all(reader, [data[i:i + 1000] for i in range(0, len(data), 1000)])
        _read_all(reader, [wire.frame(b"\xff" * 5000)] * 3)
        self.assertEqual([bytes(p) for p in got], payloads)

    def test_frames_left_unread_survive_the_next_feed(self):
        # What a paused protocol does: stop asking, then feed more (resumeProducing feeds b"").
        payloads, data = _stream()
        reader = wire.FrameReader()
        reader.feed(data[:50_000])
        first = reader.next(1 << 20)
        reader.feed(data[50_000:])
        reader.feed(b"")
        got = [first] + _read_all(reader, [b""])
        self.assertEqual([bytes(p) for p in got], payloads)

    def test_oversized_length_is_refused_from_the_prefix_alone(self):
        prefix = (5000).to_bytes(4, "big")
        for cut in range(4):
            reader = wire.FrameReader()
            reader.feed(prefix[:cut])
            self.assertIsNone(reader.next(4999))
            reader.feed(prefix[cut:])
            with self.assertRaises(wire.FrameTooLarge) as info:
                reader.next(4999)
            self.assertEqual(info.exception.length, 5000)
        reader = wire.FrameReader()
        reader.feed(prefix + b"x" * 100)
        self.assertIsNone(reader.next(5000))
        self.assertEqual(reader.pending(), 104)
