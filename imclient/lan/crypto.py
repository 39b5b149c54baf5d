"""Group passphrase sealing: every datagram encrypted and authenticated with ChaCha20-Poly1305.

The key is scrypt of the passphrase with a fixed per-protocol salt, so every peer that knows the
passphrase derives the same key. A sealed envelope is ``MAGIC, VERSION, SEALED, nonce, ciphertext``;
the plain datagram of ``codec`` is the plaintext and the 4-byte prefix is authenticated too.
"""
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from imclient.lan.codec import MAGIC, SEALED, VERSION, DatagramError

SALT = b"parley-lan-v1/scrypt/group-key"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
PREFIX = MAGIC + bytes([VERSION, SEALED])
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = len(PREFIX) + NONCE_SIZE + TAG_SIZE
_COUNTER = struct.Struct("!I")


class AuthenticationFailed(DatagramError):
    """A datagram was not sealed with our group key (or not sealed at all)."""


def derive_key(passphrase):
    """The 32-byte group key for ``passphrase`` (takes some tens of milliseconds, on purpose)."""
    kdf = Scrypt(salt=SALT, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


class Box:
    """Seals our datagrams and opens the group's, with one key.

    Nonces are an 8-byte prefix drawn once from ``rng`` and a 4-byte counter, so a run never
    repeats one; two runs repeat a prefix with probability about 2**-64 per pair.
    """

    def __init__(self, key, rng):
        self._aead = ChaCha20Poly1305(key)
        self._prefix = rng.randbytes(8)
        self._counter = 0

    def seal(self, datagram):
        if self._counter > 0xFFFFFFFF:
            raise RuntimeError("nonce space exhausted; start a new run")
        nonce = self._prefix + _COUNTER.pack(self._counter)
        self._counter += 1
        return PREFIX + nonce + self._aead.encrypt(nonce, datagram, PREFIX)

    def open(self, sealed):
        """The plain datagram inside ``sealed``, or raise AuthenticationFailed."""
        if len(sealed) < OVERHEAD or sealed[:len(PREFIX)] != PREFIX:
            raise AuthenticationFailed("not a sealed datagram")
        nonce = sealed[len(PREFIX):len(PREFIX) + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, sealed[len(PREFIX) + NONCE_SIZE:], PREFIX)
        except InvalidTag:
            raise AuthenticationFailed("authentication failed") from None
