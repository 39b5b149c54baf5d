"""The payload codec: every bad input is a WireError, never anything else."""
import json
import random
import unittest

from imserver import wire


class DecodeTests(unittest.TestCase):
    def test_roundtrip(self):
        obj = {"op": "send", "id": 1, "body": "héllo ✓"}
        self.assertEqual(wire.decode(wire.dumps(obj)), obj)

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
