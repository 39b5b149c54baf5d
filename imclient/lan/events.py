"""The events the LAN chat core emits to its subscribers: plain frozen records."""
from dataclasses import dataclass


@dataclass(frozen=True)
class MemberJoined:
    """We heard a ``hello`` from a peer we did not have in our member list."""

    member: str  # the peer's sender id, hex
    nickname: str


@dataclass(frozen=True)
class MemberLeft:
    """A member is gone: it said ``bye`` (reason "bye") or went silent (reason "silent")."""

    member: str
    nickname: str
    reason: str


@dataclass(frozen=True)
class MemberUnreachable:
    """A member never acknowledged one of our messages in time; it is dropped from the list."""

    member: str
    nickname: str
    message_id: str


@dataclass(frozen=True)
class MessageDelivered:
    """A whole message from ``member``, delivered once and in that sender's order."""

    member: str
    nickname: str
    message_id: str
    seq: int
    text: str


@dataclass(frozen=True)
class MessageAcknowledged:
    """Every member that was in the list when we sent it (and is still there) has it."""

    message_id: str


def message_id(sender, seq):
    """The id of message ``seq`` of run ``sender`` (bytes): ``"<sender hex>:<seq>"``."""
    return f"{sender.hex()}:{seq}"
