"""Proof of possession for instant uploads: knowing a file's SHA-256 is not enough to get it.

The server picks a byte range at random (from an injected source) and a fresh nonce; the client
answers ``sha256(nonce || content[offset:offset + length])`` in hex. A challenge is good for one
answer and for ``ttl`` seconds.
"""
import hashlib
import hmac
from dataclasses import dataclass

PROOF_LENGTH = 64 * 1024


@dataclass
class Challenge:
    id: str
    user_id: int
    sha256: str
    size: int
    name: str
    mime: str
    offset: int
    length: int
    nonce: bytes
    expires: float

    def to_wire(self):
        return {"id": self.id, "offset": self.offset, "length": self.length,
                "nonce": self.nonce.hex()}


def answer(nonce, data):
    """The proof for ``data`` (the challenged range) under ``nonce``."""
    return hashlib.sha256(nonce + data).hexdigest()


class Challenges:
    def __init__(self, clock, random, ttl=300.0):
        self.clock = clock
        self.random = random
        self.ttl = ttl
        self._open = {}

    def issue(self, user_id, sha256, size, name, mime):
        length = min(size, PROOF_LENGTH)
        offset = self.random.randrange(size - length + 1)
        c = Challenge(self.random.randbytes(16).hex(), user_id, sha256, size, name, mime, offset,
                      length, self.random.randbytes(16), self.clock.seconds() + self.ttl)
        self._open[c.id] = c
        return c

    def take(self, challenge_id, user_id):
        """The user's open challenge with this id, removed (one answer each); None if unknown."""
        c = self._open.get(challenge_id)
        if c is None or c.user_id != user_id:
            return None
        del self._open[challenge_id]
        return c if c.expires > self.clock.seconds() else None

    def check(self, challenge, data, proof):
        return hmac.compare_digest(answer(challenge.nonce, data).encode(), proof.lower().encode())

    def expire(self):
        now = self.clock.seconds()
        for cid in [cid for cid, c in self._open.items() if c.expires <= now]:
            del self._open[cid]
