"""The sans-I/O core of LAN group chat: membership, acknowledgements and retransmission.

``LanCore`` owns no socket. It takes datagrams in through ``receive``, hands datagrams out to a
``sink`` callable, schedules its timers on an ``IReactorTime`` and draws its sender id from an
injected random source. It tells subscribers what happened through the records in ``events``.
The wire rules it follows are in docs/lan.rst.
"""
from collections import Counter, deque
from dataclasses import dataclass

from twisted.internet import task

from imclient.events import Emitter
from imclient.lan import codec, events, receive
from imclient.lan.codec import ACK, ANSWER_ME, BYE, DATA, HELLO, Datagram, DatagramError
from imclient.lan.crypto import AuthenticationFailed
from imclient.lan.send import Outgoing, fragment


@dataclass(frozen=True)
class Config:
    """Timing and size knobs; the defaults are the documented protocol values."""

    announce_period: float = 2.0
    dead_after: int = 4  # announce periods of silence before a member is dropped
    ack_delay: float = 0.01
    answer_delay: float = 0.1  # hellos answering a newcomer are spread over this much time
    probe_gap: float = 1.0  # least time between two hellos asking everyone to announce
    rto: float = 0.2
    rto_max: float = 2.0
    max_silent_rounds: int = 6  # rounds without any ack from a member: it is unreachable
    max_tries: int = 30  # rounds for one message, whoever answers: then give up on all
    nak_holdoff: float = 0.05
    nak_repeat: float = 0.06  # while a stream has gaps, its ack (NAK) is repeated this often
    window: int = 64  # messages in flight; later ones wait their turn
    max_missing: int = 64  # missing entries per ack entry
    departed_memory: float = 600.0  # seconds we remember a departed run's stream position
    max_members: int = 256  # hellos from further ids are ignored (a bound on memory)


class _Member:
    __slots__ = ("nickname", "last_heard", "stream", "acks_heard")

    def __init__(self, nickname, now, expected):
        self.nickname = nickname
        self.last_heard = now
        self.stream = receive.InboundStream(expected)
        self.acks_heard = 0


class LanCore:
    """One peer of a LAN chat group (see the module docstring)."""

    def __init__(self, nickname, clock, sink, rng, box=None, config=Config()):
        if not 0 < len(nickname.encode("utf-8")) <= codec.MAX_NICKNAME:
            raise ValueError(f"nickname must be 1 to {codec.MAX_NICKNAME} bytes of UTF-8")
        self.nickname = nickname
        self.id = rng.randbytes(8)
        self.stats = Counter()
        self._clock = clock
        self._sink = sink
        self._rng = rng
        self._box = box
        self._config = config
        self._members = {}
        self._departed = {}  # sender -> (next expected seq, when, said bye)
        self._events = Emitter()
        self._next_seq = 1
        self._queue = deque()
        self._held = {}
        self._dirty = set()
        self._ack_call = None
        self._hello_call = None
        self._hello_flags = 0
        self._last_probe = None
        self._announcer = task.LoopingCall(self._announce)
        self._announcer.clock = clock
        self._running = False

    # -- public API --------------------------------------------------------

    @property
    def members(self):
        """Current members (not including us): ``{sender id hex: nickname}``."""
        return {m.hex(): rec.nickname for m, rec in self._members.items()}

    def on(self, what, callback):
        """Call ``callback(event)`` for every event matching ``what``: an event class, its name
        or ``"*"`` (as ``Client.on``); returns a function that unsubscribes."""
        return self._events.on(what, callback)

    def subscribe(self, callback):
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        return self._events.on("*", callback)

    def start(self):
        self._running = True
        self._send_hello(ANSWER_ME)
        self._announcer.start(self._config.announce_period, now=False)
        self._pump()

    def stop(self):
        """Say bye (twice, against loss) and cancel every timer; the core is then inert."""
        if not self._running:
            return
        self._running = False
        bye = Datagram(BYE, self.id)
        self._emit_datagram(bye)
        self._emit_datagram(bye)
        self._announcer.stop()
        for call in [self._ack_call, self._hello_call] + [m.timer for m in self._held.values()]:
            if call is not None and call.active():
                call.cancel()

    def send(self, text):
        """Queue ``text`` for the group; returns its message id. Raises ValueError if too large."""
        pieces = fragment(text.encode("utf-8"))
        seq = self._next_seq
        self._next_seq += 1
        self._queue.append((seq, pieces))
        self._pump()
        return events.message_id(self.id, seq)

    def receive(self, data):
        """Take one datagram off the wire. Never raises for bad input: it counts and drops."""
        try:
            plain = self._box.open(data) if self._box is not None else data
            d = codec.decode(plain)
        except AuthenticationFailed:
            self.stats["auth_failed"] += 1
            return
        except DatagramError:
            self.stats["bad_datagram"] += 1
            return
        if d.sender == self.id or not self._running:
            return
        self.stats["received"] += 1
        self._HANDLERS[d.kind](self, d)

    # -- membership --------------------------------------------------------

    def _on_hello(self, d):
        member = self._members.get(d.sender)
        if member is None:
            member = self._admit(d)
            if member is None:
                return
        member.last_heard = self._clock.seconds()
        self._deliver(d.sender, member, *member.stream.skip_to(d.seq))
        if d.flags & ANSWER_ME:
            self._schedule_hello(0)

    def _admit(self, d):
        expected, _, said_bye = self._departed.pop(d.sender, (d.seq, None, False))
        if said_bye:
            self._departed[d.sender] = (expected, self._clock.seconds(), True)
            self.stats["departed_sender"] += 1
            return None
        if len(self._members) >= self._config.max_members:
            self.stats["too_many_members"] += 1
            return None
        nickname = d.body.decode("utf-8")
        member = _Member(nickname, self._clock.seconds(), max(expected, d.seq))
        self._members[d.sender] = member
        self._publish(events.MemberJoined(d.sender.hex(), nickname))
        self._schedule_hello(0)
        return member

    def _on_bye(self, d):
        if d.sender in self._members:
            self._drop(d.sender, events.MemberLeft, reason="bye")

    def _drop(self, sender, event_type, **details):
        member = self._members.pop(sender)
        said_bye = details.get("reason") == "bye"
        self._departed[sender] = (member.stream.expected, self._clock.seconds(), said_bye)
        self._dirty.discard(sender)
        for message in self._held.values():
            message.forget(sender)
        self._publish(event_type(sender.hex(), member.nickname, **details))
        self._pump()

    def _announce(self):
        now = self._clock.seconds()
        period = self._config.announce_period
        # Someone quiet for two periods may just have lost hellos: ask everyone to answer.
        quiet = any(now - m.last_heard > 2 * period for m in self._members.values())
        self._send_hello(ANSWER_ME if quiet else 0)
        silent_for = self._config.dead_after * period
        for sender in [s for s, m in self._members.items() if now - m.last_heard > silent_for]:
            self._drop(sender, events.MemberLeft, reason="silent")
        for sender, (_, when, _) in list(self._departed.items()):
            if now - when > self._config.departed_memory:
                del self._departed[sender]
        for sender, member in self._members.items():
            if member.stream.has_gaps():
                self._mark_dirty(sender)

    def _probe(self):
        """Someone we do not know is talking: ask everyone to announce (at most once a second)."""
        now = self._clock.seconds()
        if self._last_probe is None or now - self._last_probe >= self._config.probe_gap:
            self._last_probe = now
            self._schedule_hello(ANSWER_ME)

    def _schedule_hello(self, flags):
        self._hello_flags |= flags
        if self._hello_call is None or not self._hello_call.active():
            delay = self._rng.uniform(0, self._config.answer_delay)
            self._hello_call = self._clock.callLater(delay, self._scheduled_hello)

    def _scheduled_hello(self):
        flags, self._hello_flags = self._hello_flags, 0
        self._send_hello(flags)

    def _send_hello(self, flags):
        nick = self.nickname.encode("utf-8")
        self._emit_datagram(Datagram(HELLO, self.id, self._low_water(), flags=flags, body=nick))

    def _low_water(self):
        if self._held:
            return min(self._held)
        if self._queue:
            return self._queue[0][0]
        return self._next_seq

    def _heard_from(self, d):
        """The member that sent ``d``, or None (and a probe for who it is)."""
        member = self._members.get(d.sender)
        if member is None:
            if d.sender in self._departed and self._departed[d.sender][2]:
                self.stats["departed_sender"] += 1
            else:
                self.stats["unknown_sender"] += 1
                self._probe()
            return None
        member.last_heard = self._clock.seconds()
        return member

    # -- receiving ---------------------------------------------------------

    def _on_data(self, d):
        member = self._heard_from(d)
        if member is None:
            return
        status, ready = member.stream.add(d.seq, d.frag_index, d.frag_count, d.body)
        if status != receive.ADDED:
            self.stats[status] += 1
        self._mark_dirty(d.sender)
        self._deliver(d.sender, member, ready, 0)

    def _deliver(self, sender, member, ready, skipped):
        self.stats["skipped"] += skipped
        for seq, body in ready:
            self.stats["delivered"] += 1
            text = body.decode("utf-8", errors="replace")
            self._publish(events.MessageDelivered(
                sender.hex(), member.nickname, events.message_id(sender, seq), seq, text))

    def _mark_dirty(self, sender):
        self._dirty.add(sender)
        self._ack_within(self._config.ack_delay)

    def _ack_within(self, delay):
        due = self._clock.seconds() + delay
        if self._ack_call is None or not self._ack_call.active():
            self._ack_call = self._clock.callLater(delay, self._flush_acks)
        elif self._ack_call.getTime() > due:
            self._ack_call.reset(delay)

    def _flush_acks(self):
        entries = []
        for sender in sorted(self._dirty):  # sorted: the same run gives the same datagrams
            cumulative, top, missing = self._members[sender].stream.ack(self._config.max_missing)
            entries.append(codec.AckEntry(sender, cumulative, top, missing))
        self._dirty.clear()
        for batch in _pack(entries):
            self._emit_datagram(Datagram(ACK, self.id, acks=tuple(batch)))
        # A lost NAK or re-send must not wait for the sender's timer: ask again soon.
        gappy = {s for s, m in self._members.items() if m.stream.has_gaps()}
        if gappy:
            self._dirty |= gappy
            self._ack_within(self._config.nak_repeat)

    # -- sending -----------------------------------------------------------

    def _on_ack(self, d):
        member = self._heard_from(d)
        if member is None:
            return
        for entry in d.acks:
            if entry.sender != self.id:
                continue
            member.acks_heard += 1
            if entry.missing and entry.missing[0][0] < self._low_water():
                self._schedule_hello(0)  # it waits for what we let go: tell it our low water
            for message in self._held.values():
                wanted = message.apply_ack(d.sender, entry.cumulative, entry.top, entry.missing)
                self._resend(message, wanted, "nak_retransmitted")
        self._pump()

    def _pump(self):
        """Release what every member has, then start sending what now fits in the window."""
        while True:
            self._release_done()
            room = self._config.window - len(self._held)
            if not self._queue or room <= 0 or not self._running:
                return
            for _ in range(min(room, len(self._queue))):
                self._transmit(*self._queue.popleft())

    def _transmit(self, seq, pieces):
        message = Outgoing(seq, pieces, list(self._members), self._acks_heard)
        self._held[seq] = message
        self._resend(message, range(len(pieces)), "sent_fragments")
        message.timer = self._clock.callLater(self._config.rto, self._on_timer, message)

    def _acks_heard(self, sender):
        member = self._members.get(sender)
        return member.acks_heard if member is not None else 0

    def _resend(self, message, indexes, stat):
        now = self._clock.seconds()
        for index in message.sendable(indexes, now, self._config.nak_holdoff):
            self.stats[stat] += 1
            self._emit_datagram(Datagram(DATA, self.id, message.seq, index,
                                         len(message.pieces), body=message.pieces[index]))

    def _on_timer(self, message):
        message.timer = None
        message.count_silence(self._acks_heard)
        quiet = message.quiet_members(self._config.max_silent_rounds)
        if message.tries >= self._config.max_tries:
            quiet = list(message.pending)
        mid = events.message_id(self.id, message.seq)
        for sender in quiet:
            if sender in self._members:
                self._drop(sender, events.MemberUnreachable, message_id=mid)
        if message.done():
            return
        self._resend(message, message.round_indexes(), "retransmitted")
        delay = min(self._config.rto * 2 ** message.tries, self._config.rto_max)
        message.timer = self._clock.callLater(delay, self._on_timer, message)

    def _release_done(self):
        for seq in sorted(s for s, m in self._held.items() if m.done()):
            message = self._held.pop(seq, None)
            if message is None:
                continue  # a subscriber's send() released it while we published
            if message.timer is not None and message.timer.active():
                message.timer.cancel()
            self._publish(events.MessageAcknowledged(events.message_id(self.id, seq)))

    # -- plumbing ----------------------------------------------------------

    def _emit_datagram(self, d):
        data = codec.encode(d)
        self._sink(self._box.seal(data) if self._box is not None else data)

    def _publish(self, event):
        self._events.emit(event)

    _HANDLERS = {HELLO: _on_hello, BYE: _on_bye, DATA: _on_data, ACK: _on_ack}


def _pack(entries):
    """Group ack entries into batches whose encoded size fits one datagram body."""
    batch, size = [], 0
    for entry in entries:
        entry_size = codec.ack_entry_size(len(entry.missing))
        if batch and size + entry_size > codec.FRAGMENT_SIZE:
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch
