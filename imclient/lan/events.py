"""The events the LAN chat core emits to its subscribers: small frozen records in the style of
``imclient.events`` (one call signature, ``fn(event)``; subscribe by class, ``name`` or ``"*"``)."""
from dataclasses import dataclass

from imclient.events import Event


@dataclass(frozen=True)
class MemberJoined(Event):
    """We heard a ``hello`` from a peer we did not have in our member list."""

    name = "member_joined"

    member: str  # the peer's sender id, hex
    nickname: str


@dataclass(frozen=True)
class MemberLeft(Event):
    """A member is gone: it said ``bye`` (reason "bye") or went silent (reason "silent")."""

    name = "member_left"

    member: str
    nickname: str
    reason: str


@dataclass(frozen=True)
class MemberUnreachable(Event):
    """A member never acknowledged one of our messages in time; it is dropped from the list."""

    name = "member_unreachable"

    member: str
    nickname: str
    message_id: str


@dataclass(frozen=True)
class MessageDelivered(Event):
    """A whole message from ``member``, delivered once and in that sender's order."""

    name = "message_delivered"

    member: str
    nickname: str
    message_id: str
    seq: int
    text: str


@dataclass(frozen=True)
class MessageAcknowledged(Event):
    """Every member that was in the list when we sent it (and is still there) has it."""

    name = "message_acknowledged"

    message_id: str


def message_id(sender, seq):
    """The id of message ``seq`` of run ``sender`` (bytes): ``"<sender hex>:<seq>"``."""
    return f"{sender.hex()}:{seq}"
