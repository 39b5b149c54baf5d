"""LAN group chat over UDP multicast, reliable without a server (protocol: docs/lan.rst).

``LanChat`` (in ``transport``) is the public entry point; ``core.LanCore`` is the sans-I/O
reliability layer it drives, and ``events`` holds the records subscribers receive.
"""
from imclient.lan.events import (
    MemberJoined, MemberLeft, MemberUnreachable, MessageAcknowledged, MessageDelivered,
)
from imclient.lan.transport import DEFAULT_GROUP, DEFAULT_PORT, LanChat

__all__ = [
    "DEFAULT_GROUP", "DEFAULT_PORT", "LanChat", "MemberJoined", "MemberLeft",
    "MemberUnreachable", "MessageAcknowledged", "MessageDelivered",
]
