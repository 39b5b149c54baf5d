"""LanCore on a simulated LAN: a task.Clock and an in-memory network that loses, duplicates
and reorders datagrams, driven by a seeded random source. No sockets, no real time."""
import heapq
import random

from twisted.internet import task
from twisted.trial import unittest

from imclient.lan import codec, events
from imclient.lan.core import Config, LanCore
from imclient.lan.crypto import Box, derive_key
from imclient.lan.receive import DUPLICATE, InboundStream


class Network:
    """Every datagram a peer sends reaches each other attached peer after a random delay,
    unless lost; some arrive twice. ``blocked(src, dst, data)`` can refuse more."""

    def __init__(self, clock, rng, loss=0.0, duplicate=0.0, max_delay=0.02):
        self.clock, self.rng = clock, rng
        self.loss, self.duplicate, self.max_delay = loss, duplicate, max_delay
        self.cores = []
        self.detached = set()
        self.blocked = lambda src, dst, data: False
        self._queue = []
        self._order = 0

    def attach(self, make_core):
        index = len(self.cores)
        core = make_core(lambda data: self._multicast(index, data))
        self.cores.append(core)
        return core

    def _multicast(self, src, data):
        if src in self.detached:
            return
        for dst in range(len(self.cores)):
            if dst == src or self.rng.random() < self.loss or self.blocked(src, dst, data):
                continue
            for _ in range(2 if self.rng.random() < self.duplicate else 1):
                self._order += 1
                when = self.clock.seconds() + self.rng.uniform(0, self.max_delay)
                heapq.heappush(self._queue, (when, self._order, dst, data))

    def run(self, seconds, until=lambda: False, step=0.005):
        """Advance time, delivering datagrams, for ``seconds`` or until ``until()``."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end and not until():
            self.clock.advance(step)
            while self._queue and self._queue[0][0] <= self.clock.seconds():
                _, _, dst, data = heapq.heappop(self._queue)
                if dst not in self.detached:
                    self.cores[dst].receive(data)
        return until()


def make_group(n, loss=0.0, seed=7, keys=None, config=Config(), duplicate=0.05):
    """``n`` started cores on one simulated network, each with an event log."""
    clock = task.Clock()
    rng = random.Random(seed)
    net = Network(clock, rng, loss=loss, duplicate=duplicate)
    logs = []
    for i in range(n):
        key = keys[i] if keys else None

        def make(sink, i=i, key=key):
            peer_rng = random.Random(seed * 1000 + i)
            box = Box(key, peer_rng) if key is not None else None
            return LanCore(f"peer{i}", clock, sink, peer_rng, box, config)

        core = net.attach(make)
        log = []
        core.subscribe(log.append)
        logs.append(log)
    for core in net.cores:
        core.start()
    return net, net.cores, logs


def of_type(log, kind):
    return [e for e in log if isinstance(e, kind)]


def everyone_knows_everyone(cores):
    return lambda: all(len(c.members) == len(cores) - 1 for c in cores)


def _check_the_rest_go_on(net, cores, logs, gone):
    """Everyone but ``gone`` drops it, and their new messages are acknowledged by the rest."""
    rest = [c for c in cores if c is not gone]
    gone_id = gone.id.hex()
    assert net.run(30, lambda: all(gone_id not in c.members for c in rest))
    ids = [c.send(f"after {c.nickname}") for c in rest]
    acked = lambda: all(
        any(e.message_id == mid for e in of_type(logs[cores.index(c)], events.MessageAcknowledged))
        for c, mid in zip(rest, ids))
    assert net.run(30, acked)
    return [e for log in logs for e in of_type(log, events.MemberLeft) + of_type(
        log, events.MemberUnreachable) if e.member == gone_id]


class SimulatedLanTests(unittest.SynchronousTestCase):
    """Driven by task.Clock; every test is deterministic for its seed."""

    def test_five_peers_thousand_messages_thirty_percent_loss(self):
        net, cores, logs = make_group(5, loss=0.3)
        assert net.run(10, everyone_knows_everyone(cores))
        sent = {c.id.hex(): [] for c in cores}
        for n in range(1000):
            core = cores[n % 5]
            core.send(f"message {n}")
            sent[core.id.hex()].append(f"message {n}")

        def all_delivered():
            return all(len(of_type(log, events.MessageDelivered)) == 800 for log in logs)

        assert net.run(300, all_delivered), [len(of_type(g, events.MessageDelivered)) for g in logs]
        for core, log in zip(cores, logs):
            got = {}
            for e in of_type(log, events.MessageDelivered):
                got.setdefault(e.member, []).append(e.text)
            assert got == {s: texts for s, texts in sent.items() if s != core.id.hex()}
            assert not of_type(log, events.MemberLeft) + of_type(log, events.MemberUnreachable)
        assert net.run(30, lambda: all(
            len(of_type(log, events.MessageAcknowledged)) == 200 for log in logs))
        assert sum(c.stats["nak_retransmitted"] for c in cores) > 0
        assert sum(c.stats["duplicate"] for c in cores) > 0

    def test_a_fifty_kilobyte_message_arrives_whole(self):
        net, cores, logs = make_group(3, loss=0.3, seed=11)
        assert net.run(10, everyone_knows_everyone(cores))
        text = "".join(chr(0x41 + i % 26) for i in range(50_000)) + " ✓"
        mid = cores[0].send(text)
        assert net.run(60, lambda: all(of_type(log, events.MessageDelivered) for log in logs[1:]))
        for log in logs[1:]:
            [delivered] = of_type(log, events.MessageDelivered)
            assert (delivered.message_id, delivered.text) == (mid, text)
        assert net.run(30, lambda: of_type(logs[0], events.MessageAcknowledged))

    def test_subscribers_may_send_from_their_callbacks(self):
        net, cores, logs = make_group(3, loss=0.2, seed=21)
        assert net.run(10, everyone_knows_everyone(cores))

        acked = []

        def echo(event):
            if isinstance(event, events.MessageDelivered) and event.text.startswith("ping"):
                cores[1].send("pong " + event.text)
            if isinstance(event, events.MessageAcknowledged) and len(acked) < 10:
                acked.append(cores[1].send("acked"))

        cores[1].subscribe(echo)
        for n in range(20):
            cores[0].send(f"ping {n}")
        assert net.run(30, lambda: len([e for e in of_type(logs[2], events.MessageDelivered)
                                        if e.text.startswith("pong")]) == 20)
        net.run(1)
        texts = [e.text for e in of_type(logs[2], events.MessageDelivered)
                 if e.member == cores[1].id.hex()]
        assert [t for t in texts if t != "acked"] == [f"pong ping {n}" for n in range(20)]

    def test_limits_are_enforced_locally(self):
        net, cores, logs = make_group(1, config=Config(max_members=1))
        self.assertRaises(ValueError, cores[0].send, "x" * 300_000)
        self.assertRaises(ValueError, LanCore, "", net.clock, print, random.Random(1))
        for i in range(3):
            net.attach(lambda sink: LanCore("extra", net.clock, sink, random.Random(i))).start()
        net.run(1)
        assert len(cores[0].members) == 1 and cores[0].stats["too_many_members"] > 0

    def test_a_peer_that_says_bye_is_dropped(self):
        net, cores, logs = make_group(5, loss=0.3, seed=3)
        assert net.run(10, everyone_knows_everyone(cores))
        cores[4].stop()
        left = _check_the_rest_go_on(net, cores, logs, cores[4])
        assert "bye" in {getattr(e, "reason", None) for e in left}

    def test_a_bye_without_loss_is_seen_at_once(self):
        net, cores, logs = make_group(3)
        assert net.run(5, everyone_knows_everyone(cores))
        cores[2].stop()
        net.run(0.1)
        left = [e.reason for log in logs[:2] for e in of_type(log, events.MemberLeft)]
        assert left == ["bye"] * 2

    def test_a_peer_that_vanishes_is_dropped_and_stops_holding_messages(self):
        net, cores, logs = make_group(5, loss=0.3, seed=5)
        assert net.run(10, everyone_knows_everyone(cores))
        net.detached.add(4)
        held = cores[0].send("sent as peer4 vanished")
        left = _check_the_rest_go_on(net, cores, logs, cores[4])
        assert len(left) == 4  # as silent, or as unreachable for the message it never acked
        assert net.run(5, lambda: any(e.message_id == held
                                      for e in of_type(logs[0], events.MessageAcknowledged)))

    def test_a_peer_that_never_acknowledges_is_reported_unreachable(self):
        net, cores, logs = make_group(3, seed=9)
        assert net.run(5, everyone_knows_everyone(cores))
        net.blocked = lambda src, dst, data: src == 2 and codec.decode(data).kind == codec.ACK
        mid = cores[0].send("hello?")
        assert net.run(30, lambda: of_type(logs[0], events.MemberUnreachable))
        [event] = of_type(logs[0], events.MemberUnreachable)
        assert (event.member, event.message_id) == (cores[2].id.hex(), mid)
        assert any(e.message_id == mid for e in of_type(logs[0], events.MessageAcknowledged))
        assert [e.text for e in of_type(logs[2], events.MessageDelivered)] == ["hello?"]

    def test_a_late_joiner_gets_what_is_sent_after_it_joins(self):
        net, cores, logs = make_group(2, loss=0.3, seed=13)
        assert net.run(20, everyone_knows_everyone(cores))
        for n in range(20):
            cores[0].send(f"early {n}")
        net.run(10)
        late_log = []
        late = net.attach(lambda sink: LanCore("late", net.clock, sink, random.Random(99)))
        late.subscribe(late_log.append)
        late.start()
        assert net.run(10, everyone_knows_everyone(net.cores))
        cores[0].send("for everyone")
        assert net.run(20, lambda: of_type(late_log, events.MessageDelivered))
        assert [e.text for e in of_type(late_log, events.MessageDelivered)] == ["for everyone"]

    def test_strangers_with_the_wrong_passphrase_can_neither_read_nor_inject(self):
        good, bad = derive_key("correct horse"), derive_key("wrong horse")
        net, cores, logs = make_group(4, loss=0.1, seed=17, keys=[good, good, good, bad])
        assert net.run(5, lambda: all(len(c.members) == 2 for c in cores[:3]))
        plain = net.attach(lambda sink: LanCore("plain", net.clock, sink, random.Random(5)))
        plain.start()
        cores[3].send("let me in")
        plain.send("me too")
        cores[0].send("secret")
        assert net.run(10, lambda: all(of_type(log, events.MessageDelivered) for log in logs[1:3]))
        net.run(5)
        for log in logs[:3]:
            assert {e.text for e in of_type(log, events.MessageDelivered)} <= {"secret"}
        assert not of_type(logs[3], events.MessageDelivered) and cores[3].members == {}
        assert plain.members == {} and plain.stats["bad_datagram"] > 0
        assert all(c.stats["auth_failed"] > 0 for c in cores[:4])

    def test_inbound_stream_orders_reassembles_and_drops_duplicates(self):
        stream = InboundStream(1)
        assert stream.add(2, 0, 1, b"two") == ("added", [])
        assert stream.add(1, 1, 2, b"B") == ("added", [])
        assert stream.ack(10) == (0, 2, ((1, 0),))
        assert stream.add(1, 0, 2, b"A") == ("added", [(1, b"AB"), (2, b"two")])
        assert stream.add(1, 0, 2, b"A") == (DUPLICATE, [])
        assert stream.add(5, 0, 1, b"five") == ("added", [])
        assert stream.ack(1) == (2, 3, ((3, codec.ALL_FRAGMENTS),))
        assert stream.skip_to(5) == ([(5, b"five")], 2)
        assert stream.ack(10) == (5, 5, ())
