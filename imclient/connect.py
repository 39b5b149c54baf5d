"""Opening a connection to a Parley server: plain TCP, or TLS with a pinned fingerprint or a CA.

``connect(reactor, host, port, ...)`` fires with a ``ClientProtocol`` that has already said
``hello`` (so a TLS handshake that fails verification fails here, as ``CertificateError``, or
``PinMismatch`` when the certificate is not the pinned one). With ``tofu=True`` and no
fingerprint, any certificate is accepted and its fingerprint is left in
``protocol.peer_fingerprint`` for the caller to pin (trust on first use).
"""
import hashlib

from OpenSSL import SSL
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from imclient.protocol import ClientProtocol


class CertificateError(Exception):
    """The server's certificate did not match the pinned fingerprint or the CA."""


class PinMismatch(CertificateError):
    """The server presented a certificate other than the one pinned for it."""

    def __init__(self, host, port, expected, seen):
        super().__init__(
            f"the TLS certificate of {host}:{port} has CHANGED: pinned {format_fingerprint(expected)}, "
            f"now {format_fingerprint(seen)}. Refusing to connect; if the server's certificate was "
            f"really replaced, forget the old pin and connect again")
        self.host, self.port, self.expected, self.seen = host, port, expected, seen


def format_fingerprint(hexdigits):
    """64 hex digits as colon-separated pairs, the form the server logs."""
    return ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2))


def normalize_fingerprint(text):
    text = text.strip()
    if text.lower().startswith(("sha256/", "sha256:")):
        text = text[7:]
    hexdigits = text.replace(":", "").replace(" ", "").upper()
    if len(hexdigits) != 64 or any(c not in "0123456789ABCDEF" for c in hexdigits):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return hexdigits


@implementer(IOpenSSLClientConnectionCreator)
class PinnedCertificate:
    """Accept exactly the server certificate whose SHA-256 fingerprint is ``fingerprint``.

    With ``fingerprint=None`` any certificate is accepted (trust on first use); either way the
    leaf's fingerprint is kept in ``seen``."""

    def __init__(self, fingerprint):
        self.expected = normalize_fingerprint(fingerprint) if fingerprint else None
        self.seen = None

    def _verify(self, connection, cert, errno, depth, ok):
        if depth != 0:
            return True  # the pin is on the leaf; the chain above it does not matter
        der = cert.to_cryptography().public_bytes(_DER)
        self.seen = hashlib.sha256(der).hexdigest().upper()
        return self.expected is None or self.seen == self.expected

    def clientConnectionForTLS(self, tlsProtocol):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        connection = SSL.Connection(context, None)
        connection.set_connect_state()
        return connection


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding
    return Encoding.DER


_DER = _der()


def tls_creator(host, fingerprint=None, ca_pem=None, tofu=False):
    if fingerprint or tofu:
        return PinnedCertificate(fingerprint)
    trust = ssl.Certificate.loadPEM(ca_pem) if ca_pem else ssl.platformTrust()
    return ssl.optionsForClientTLS(host, trustRoot=trust)


async def _connect(reactor, host, port, tls, fingerprint, ca_pem, timeout, protocol, tofu):
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    creator = None
    if tls:
        creator = tls_creator(host, fingerprint, ca_pem, tofu)
        endpoint = wrapClientTLS(creator, endpoint)
    try:
        proto = await connectProtocol(endpoint, protocol or ClientProtocol())
        proto.server_info = await proto.hello()
    except Exception as e:
        seen = getattr(creator, "seen", None)
        if seen and creator.expected and seen != creator.expected:
            raise PinMismatch(host, port, creator.expected, seen) from e
        if tls and ("SSL" in type(e).__name__ or "certificate" in str(e).lower()
                    or isinstance(getattr(e, "value", None), SSL.Error) or _ssl_failure(e)):
            raise CertificateError(f"TLS verification of {host}:{port} failed") from e
        raise
    proto.peer_fingerprint = getattr(creator, "seen", None)
    return proto


def _ssl_failure(exc):
    # connectionLost after a refused handshake carries the SSL.Error inside a Failure.
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, SSL.Error) or "SSL" in repr(arg):
            return True
    return False


def connect(reactor, host, port, tls=False, fingerprint=None, ca_pem=None, timeout=10,
            protocol=None, tofu=False):
    """Connect, say hello, and fire with the ClientProtocol."""
    return defer.ensureDeferred(_connect(reactor, host, port, tls, fingerprint, ca_pem, timeout,
                                         protocol, tofu))
