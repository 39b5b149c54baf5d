"""LanChat on real multicast sockets: three members in one reactor, joined to a group on the
loopback interface with TTL 1, so no datagram leaves this machine.

Linux delivers multicast on ``lo`` once the group is joined on 127.0.0.1 and the outgoing
interface is 127.0.0.1, even without the MULTICAST link flag; if that ever stops working the
test fails (it does not skip), naming what to check.
"""
import random

from twisted.internet import defer, error, reactor, task
import pytest
import pytest_twisted

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


class Members:
    """The LanChat instances of one test, on a fresh random group and port."""

    def __init__(self):
        rng = random.Random()
        self.group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        self.port = rng.randrange(20000, 60000)
        self.chats, self.logs = [], []

    async def start_chats(self, n, passphrases=None, groups=None):
        for i in range(n):
            group = groups[i] if groups else self.group
            chat = LanChat(reactor, f"member{i}", group, self.port,
                           passphrases[i] if passphrases else None,
                           interface="127.0.0.1", config=FAST)
            log = []
            chat.subscribe(log.append)
            self.chats.append(chat)
            self.logs.append(log)
            await chat.start()
            assert chat._port.getOutgoingInterface() == "127.0.0.1"
            assert chat._port.getTTL() == 1

    def delivered(self, i):
        return [e for e in self.logs[i] if isinstance(e, MessageDelivered)]


@pytest.fixture
def lan():
    members = Members()
    yield members
    pytest_twisted.blockon(defer.gatherResults([chat.stop() for chat in members.chats]))


@pytest_twisted.ensureDeferred
async def test_three_members_exchange_messages(lan):
    await lan.start_chats(3)
    await wait_for(lambda: all(len(c.members) == 2 for c in lan.chats), what="members", hint=HINT)
    for n in range(5):
        for i, chat in enumerate(lan.chats):
            chat.send(f"{i}/{n}")
    await wait_for(lambda: all(len(lan.delivered(i)) == 10 for i in range(3)), what="messages")
    for i, chat in enumerate(lan.chats):
        by_sender = {}
        for e in lan.delivered(i):
            by_sender.setdefault(e.nickname, []).append(e.text)
        expected = {f"member{j}": [f"{j}/{n}" for n in range(5)] for j in range(3) if j != i}
        assert by_sender == expected
    last = lan.chats.pop()
    await last.stop()
    await wait_for(lambda: all(len(c.members) == 1 for c in lan.chats), what="bye")
    left = [e for log in lan.logs[:2] for e in log if isinstance(e, MemberLeft)]
    assert [e.reason for e in left] == ["bye", "bye"]


@pytest_twisted.ensureDeferred
async def test_a_passphrase_keeps_strangers_out(lan):
    await lan.start_chats(3, ["sesame", "sesame", "guess"])
    await wait_for(lambda: all(len(c.members) == 1 for c in lan.chats[:2]), what="members")
    lan.chats[2].send("let me in")
    lan.chats[0].send("only for us")
    await wait_for(lambda: lan.delivered(1), what="sealed message")
    assert [e.text for e in lan.delivered(1)] == ["only for us"]
    assert (lan.delivered(2), lan.chats[2].members) == ([], {})
    assert lan.chats[0].stats["auth_failed"] > 0


@pytest_twisted.ensureDeferred
async def test_another_group_on_the_same_port_is_not_heard(lan):
    other = lan.group.rsplit(".", 1)[0] + f".{int(lan.group.rsplit('.', 1)[1]) % 254 + 1}"
    await lan.start_chats(4, groups=[lan.group, lan.group, other, other])
    await wait_for(lambda: all(len(c.members) == 1 for c in lan.chats), what="members")
    lan.chats[0].send("group one")
    lan.chats[2].send("group two")
    await wait_for(lambda: lan.delivered(1) and lan.delivered(3), what="messages")
    await task.deferLater(reactor, 0.2, lambda: None)
    assert [e.text for e in lan.delivered(1)] == ["group one"]
    assert [e.text for e in lan.delivered(3)] == ["group two"]
    assert sum(c.stats["unknown_sender"] for c in lan.chats) == 0


@pytest_twisted.ensureDeferred
async def test_a_failed_join_closes_the_socket(lan):
    chat = LanChat(reactor, "nowhere", "10.1.2.3", lan.port, interface="127.0.0.1")
    with pytest.raises(error.MulticastJoinError):
        await chat.start()
    assert chat._port is None
