"""Parley's instant-messaging server."""

__version__ = "0.1.0"

#: Version of the wire protocol described in docs/protocol.rst.
PROTOCOL_VERSION = 1
