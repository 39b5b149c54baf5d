"""LanChat on real multicast sockets: three members in one reactor, joined to a group on the
loopback interface with TTL 1, so no datagram leaves this machine.

Linux delivers multicast on ``lo`` once the group is joined on 127.0.0.1 and the outgoing
interface is 127.0.0.1, even without the MULTICAST link flag; if that ever stops working the
test fails (it does not skip), naming what to check.
"""
import random

from twisted.internet import defer, error, reactor, task
from twisted.trial import unittest

from imclient.lan import LanChat, MemberLeft, MessageDelivered
from imclient.lan.core import Config

FAST = Config(announce_period=0.5, rto=0.05)
HINT = ("no multicast on loopback here: check `ip route` and `ip link show lo` "
        "(`ip link set lo multicast on`), or run in a network namespace with lo up")


def wait_for(condition, timeout=10.0, what="condition", hint=""):
    """A Deferred that fires once ``condition()`` is true, polling the real reactor."""
    done = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def poll():
        if condition():
            loop.stop()
            done.callback(None)
        elif reactor.seconds() > deadline:
            loop.stop()
            done.errback(AssertionError(f"timed out waiting for {what}. {hint}"))

    loop = task.LoopingCall(poll)
    loop.start(0.01)
    return done


class LoopbackMulticastTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        rng = random.Random()
        self.group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        self.port = rng.randrange(20000, 60000)
        self.chats, self.logs = [], []

    def tearDown(self):
        return defer.gatherResults([chat.stop() for chat in self.chats])

    @defer.inlineCallbacks
    def start_chats(self, n, passphrases=None, groups=None):
        for i in range(n):
            group = groups[i] if groups else self.group
            chat = LanChat(reactor, f"member{i}", group, self.port,
                           passphrases[i] if passphrases else None,
                           interface="127.0.0.1", config=FAST)
            log = []
            chat.subscribe(log.append)
            self.chats.append(chat)
            self.logs.append(log)
            yield chat.start()
            self.assertEqual(chat._port.getOutgoingInterface(), "127.0.0.1")
            self.assertEqual(chat._port.getTTL(), 1)

    def delivered(self, i):
        return [e for e in self.logs[i] if isinstance(e, MessageDelivered)]

    @defer.inlineCallbacks
    def test_three_members_exchange_messages(self):
        yield self.start_chats(3)
        yield wait_for(lambda: all(len(c.members) == 2 for c in self.chats), what="members",
                       hint=HINT)
        for n in range(5):
            for i, chat in enumerate(self.chats):
                chat.send(f"{i}/{n}")
        yield wait_for(lambda: all(len(self.delivered(i)) == 10 for i in range(3)),
                       what="messages")
        for i, chat in enumerate(self.chats):
            by_sender = {}
            for e in self.delivered(i):
                by_sender.setdefault(e.nickname, []).append(e.text)
            expected = {f"member{j}": [f"{j}/{n}" for n in range(5)] for j in range(3) if j != i}
            self.assertEqual(by_sender, expected)
        last = self.chats.pop()
        yield last.stop()
        yield wait_for(lambda: all(len(c.members) == 1 for c in self.chats), what="bye")
        left = [e for log in self.logs[:2] for e in log if isinstance(e, MemberLeft)]
        self.assertEqual([e.reason for e in left], ["bye", "bye"])

    @defer.inlineCallbacks
    def test_a_passphrase_keeps_strangers_out(self):
        yield self.start_chats(3, ["sesame", "sesame", "guess"])
        yield wait_for(lambda: all(len(c.members) == 1 for c in self.chats[:2]), what="members")
        self.chats[2].send("let me in")
        self.chats[0].send("only for us")
        yield wait_for(lambda: self.delivered(1), what="sealed message")
        self.assertEqual([e.text for e in self.delivered(1)], ["only for us"])
        self.assertEqual((self.delivered(2), self.chats[2].members), ([], {}))
        self.assertGreater(self.chats[0].stats["auth_failed"], 0)

    @defer.inlineCallbacks
    def test_another_group_on_the_same_port_is_not_heard(self):
        other = self.group.rsplit(".", 1)[0] + f".{int(self.group.rsplit('.', 1)[1]) % 254 + 1}"
        yield self.start_chats(4, groups=[self.group, self.group, other, other])
        yield wait_for(lambda: all(len(c.members) == 1 for c in self.chats), what="members")
        self.chats[0].send("group one")
        self.chats[2].send("group two")
        yield wait_for(lambda: self.delivered(1) and self.delivered(3), what="messages")
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([e.text for e in self.delivered(1)], ["group one"])
        self.assertEqual([e.text for e in self.delivered(3)], ["group two"])
        self.assertEqual(sum(c.stats["unknown_sender"] for c in self.chats), 0)

    @defer.inlineCallbacks
    def test_a_failed_join_closes_the_socket(self):
        chat = LanChat(reactor, "nowhere", "10.1.2.3", self.port, interface="127.0.0.1")
        yield self.assertFailure(chat.start(), error.MulticastJoinError)
        self.assertIsNone(chat._port)
