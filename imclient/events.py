"""The events a client program subscribes to: small frozen records, one call signature.

Every subscriber is called as ``fn(event)``, whatever it subscribed to. ``Emitter.on(what, fn)``
takes an event class (``MessageEvent``; a base class such as ``StreamEvent`` catches all its
kinds), an event name (``"message"``, ``"friend_added"``: the ``name`` of the event, which for
stream events is the wire type), or ``"*"`` for every event. ``stream_event(wire)`` turns a stream
event as the server sends it (a ``sync`` row or a push) into its record; each keeps the whole wire
object in ``data`` for fields added later. ``ProgressMeter`` turns "bytes done so far" into
``TransferProgress`` records with a rate and an ETA, timed by an injected ``IReactorTime``.
"""
import dataclasses
from dataclasses import dataclass, field

from twisted.logger import Logger


class Event:
    """Base of every client event; ``name`` is what ``on(name, fn)`` matches."""

    name = "event"

    def as_dict(self):
        """The fields as a dict (for JSON output), without the raw wire copy."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        out["event"] = self.name
        return out


def _wire():
    return field(default_factory=dict, compare=False, repr=False)


# The stream: events with a position, kept in the local store.
@dataclass(frozen=True)
class StreamEvent(Event):
    """A stream event of a type this client has no record for (the server added one)."""

    type: str
    pos: int
    data: dict = _wire()

    @property
    def name(self):
        return self.type


@dataclass(frozen=True)
class MessageEvent(Event):
    """A 1:1 message (``sender``/``to`` are user ids; ``file`` is the attached file's record or
    None). Includes what you sent from your other devices, never what this client sent."""

    name = "message"
    msg_id: int
    sender: int
    to: int
    body: str
    kind: str
    ts: int
    pos: int
    client_id: str | None = None
    file: dict | None = None
    data: dict = _wire()


@dataclass(frozen=True)
class ReceiptEvent(Event):
    """``reader`` has received (``kind="delivered"``) or read ``peer``'s messages up to ``msg_id``."""

    name = "receipt"
    kind: str
    reader: int
    peer: int
    msg_id: int
    pos: int
    ts: int | None = None
    data: dict = _wire()


@dataclass(frozen=True)
class FriendEvent(Event):
    """A friend event: ``type`` is ``friend_request``, ``friend_added``, ``friend_removed``,
    ``friend_rejected``, ``blocked``, ``unblocked`` or ``friend_alias``. A request has
    ``from_user``/``to_user``/``greeting``; the others name the other ``user``. ``pos`` is None
    for a pending request pushed again at login (it is reported once)."""

    type: str
    pos: int | None
    user: int | None = None
    from_user: int | None = None
    to_user: int | None = None
    greeting: str = ""
    alias: str | None = None
    ts: int | None = None
    data: dict = _wire()

    @property
    def name(self):
        return self.type


@dataclass(frozen=True)
class GroupMessageEvent(Event):
    """A message in ``group`` (``seq``: its number in the group; ``mentioned``: you are in
    ``mentions``). Includes what you sent from your other devices, never what this client sent."""

    name = "group_message"
    group: int
    msg_id: int
    seq: int
    sender: int
    body: str
    kind: str
    ts: int
    pos: int
    client_id: str | None = None
    mentions: tuple = ()
    mentioned: bool = False
    file: dict | None = None
    data: dict = _wire()


@dataclass(frozen=True)
class GroupEvent(Event):
    """A group event other than a message (``type``: ``group_created``, ``group_member_joined``,
    ``group_member_left``, ``group_member_kicked``, ``group_role_changed``,
    ``group_owner_changed``, ``group_updated``, ``group_disbanded``, ``group_join_requested``,
    ``group_join_denied``, ``group_read``); ``user``/``by`` where the type has them, the rest in
    ``data`` (docs/protocol.rst, "Group pushes and sync events")."""

    type: str
    group: int
    pos: int
    user: int | None = None
    by: int | None = None
    ts: int | None = None
    data: dict = _wire()

    @property
    def name(self):
        return self.type


# Pushes that are not in the stream.
@dataclass(frozen=True)
class PresenceEvent(Event):
    name = "presence"
    user: int
    online: bool
    status: str
    text: str | None = None


@dataclass(frozen=True)
class SessionRevoked(Event):
    """This session was ended from another device; the client stops (an ``Error`` follows)."""

    name = "session_revoked"
    session: int | None = None


@dataclass(frozen=True)
class ServerError(Event):
    """An error frame that answers no request of ours (a refused chunk, an undecodable frame)."""

    name = "server_error"
    code: str
    message: str
    data: dict = _wire()


# The client's own life.
@dataclass(frozen=True)
class Online(Event):
    name = "online"
    user_id: int
    server: dict | None = None


@dataclass(frozen=True)
class Offline(Event):
    name = "offline"
    reason: str


@dataclass(frozen=True)
class Reconnecting(Event):
    name = "reconnecting"
    attempt: int
    delay: float
    error: str


@dataclass(frozen=True)
class Pinned(Event):
    """The first certificate seen for this server was pinned (trust on first use)."""

    name = "pinned"
    host: str
    port: int
    fingerprint: str


@dataclass(frozen=True)
class Error(Event):
    """Fatal: the client has stopped (``error`` is the exception, e.g. ``SessionEnded``)."""

    name = "error"
    error: BaseException

    def __str__(self):
        return str(self.error)


#: A message of mine, in the order its states come: written to the outbox; written on the wire;
#: the server has it (committed, with a ``msg_id``); the recipient's device has it; they read it.
#: ``failed`` is the end of a send the server refused for good (``code`` says why).
MESSAGE_STATES = ("queued", "sent", "acked", "delivered", "read", "failed")


@dataclass(frozen=True)
class MessageState(Event):
    """A message I sent changed state (``MESSAGE_STATES``); ``to`` for 1:1, ``group`` for group
    messages; ``msg_id``/``ts``/``pos`` once acked; ``code``/``message`` when failed."""

    name = "message_state"
    client_id: str
    state: str
    to: int | None = None
    group: int | None = None
    msg_id: int | None = None
    ts: int | None = None
    pos: int | None = None
    duplicate: bool = False
    code: str | None = None
    message: str | None = None


#: A transfer's states: waiting its turn; moving bytes; paused by the program; finished (``file``
#: is the file id); given up (``error``); cancelled by the program.
TRANSFER_STATES = ("queued", "running", "paused", "done", "failed", "cancelled")


@dataclass(frozen=True)
class TransferState(Event):
    name = "transfer_state"
    transfer: int
    direction: str
    state: str
    file: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class TransferProgress(Event):
    """Where one transfer stands. ``direction`` is ``"upload"`` or ``"download"``; ``rate`` is
    bytes per second over the recent window; ``eta`` is seconds to go (None while the rate is
    unknown); ``done`` is true once ``bytes_done == total``."""

    name = "progress"
    transfer: int
    direction: str
    file_name: str
    bytes_done: int
    total: int
    rate: float
    eta: float | None

    @property
    def done(self):
        return self.bytes_done >= self.total

    @property
    def fraction(self):
        return 1.0 if self.total == 0 else self.bytes_done / self.total


@dataclass(frozen=True)
class StoreChanged(Event):
    """Rows of the local store's ``table`` changed and are committed (``keys``: the peers,
    group ids, client ids or transfer ids the writes named; empty for "the table as a whole")."""

    name = "store_changed"
    table: str
    keys: tuple


_FRIEND_TYPES = frozenset({"friend_request", "friend_added", "friend_removed", "friend_rejected",
                           "blocked", "unblocked", "friend_alias"})


def stream_event(wire):
    """The record of one stream event as the server sends it (``type`` or ``op`` names it)."""
    kind = wire.get("type") or wire.get("op")
    pos = wire.get("pos")
    if kind == "message":
        return MessageEvent(wire["msg_id"], wire["from"], wire["to"], wire["body"],
                            wire.get("kind", "text"), wire["ts"], pos, wire.get("client_id"),
                            wire.get("file"), dict(wire))
    if kind == "receipt":
        return ReceiptEvent(wire["kind"], wire["reader"], wire["peer"], wire["msg_id"], pos,
                            wire.get("ts"), dict(wire))
    if kind in _FRIEND_TYPES:
        return FriendEvent(kind, pos, wire.get("user"), wire.get("from"), wire.get("to"),
                           wire.get("greeting") or "", wire.get("alias"), wire.get("ts"), dict(wire))
    if kind == "group_message":
        return GroupMessageEvent(wire["group"], wire["msg_id"], wire["seq"], wire["from"],
                                 wire.get("body", ""), wire.get("kind", "text"), wire["ts"], pos,
                                 wire.get("client_id"), tuple(wire.get("mentions") or ()),
                                 bool(wire.get("mentioned")), wire.get("file"), dict(wire))
    if kind and kind.startswith("group_") and "group" in wire:
        return GroupEvent(kind, wire["group"], pos, wire.get("user"), wire.get("by"),
                          wire.get("ts"), dict(wire))
    return StreamEvent(kind, pos, dict(wire))


class Emitter:
    """Events to subscribers by class, name or ``"*"``; a failing subscriber is logged and does
    not stop the others. Subscribers are called in the order they subscribed."""

    _log = Logger()

    def __init__(self):
        self._subscribers = []  # (what, fn)

    def on(self, what, fn):
        """Call ``fn(event)`` for every event matching ``what`` (a class, a name or ``"*"``);
        returns a function that unsubscribes it."""
        entry = (what, fn)
        self._subscribers.append(entry)
        return lambda: entry in self._subscribers and self._subscribers.remove(entry)

    def emit(self, event):
        for what, fn in list(self._subscribers):
            if what == "*" or (isinstance(what, str) and what == event.name) or (
                    isinstance(what, type) and isinstance(event, what)):
                try:
                    fn(event)
                except Exception:
                    self._log.failure("subscriber to {name} failed", name=event.name)


class ProgressMeter:
    """Feeds ``TransferProgress`` records to ``sink`` as a transfer advances.

    The transfer engine calls ``update(bytes_done)`` whenever it likes; events are emitted at most
    every ``interval`` seconds (and always for the last byte). The rate is a moving average over
    the updates of the last ``window`` seconds."""

    def __init__(self, clock, sink, transfer, direction, name, total, start=0, interval=0.25,
                 window=5.0):
        self.clock, self.sink = clock, sink
        self.transfer, self.direction, self.name, self.total = transfer, direction, name, total
        self.interval, self.window = interval, window
        self._samples = [(clock.seconds(), start)]
        self._last_emit = None
        self.last = None

    def restart(self, bytes_done):
        """Forget the rate (after a pause or a reconnect) and carry on from ``bytes_done``."""
        self._samples = [(self.clock.seconds(), bytes_done)]
        self._last_emit = None

    def update(self, bytes_done):
        now = self.clock.seconds()
        self._samples.append((now, bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.pop(0)
        final = bytes_done >= self.total
        if not final and self._last_emit is not None and now - self._last_emit < self.interval:
            return None
        self._last_emit = now
        self.last = self._event(now, bytes_done)
        self.sink(self.last)
        return self.last

    def _event(self, now, bytes_done):
        t0, b0 = self._samples[0]
        rate = (bytes_done - b0) / (now - t0) if now > t0 else 0.0
        remaining = max(self.total - bytes_done, 0)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        return TransferProgress(self.transfer, self.direction, self.name, bytes_done, self.total,
                                rate, eta)


def format_progress(event, width=24):
    """One line for a terminal: ``name  [#####.....]  42%  1.2 MiB/3.0 MiB  800 KiB/s  ETA 3s``."""
    filled = int(event.fraction * width)
    eta = "--" if event.eta is None else f"{event.eta:.0f}s"
    return (f"{event.file_name}  [{'#' * filled}{'.' * (width - filled)}] {event.fraction:4.0%}  "
            f"{human_bytes(event.bytes_done)}/{human_bytes(event.total)}  "
            f"{human_bytes(event.rate)}/s  ETA {eta}")


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
