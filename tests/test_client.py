"""imclient.Client against real loopback servers: TOFU pinning, the outbox, local history, reconnects."""
import os

import pytest
import pytest_twisted
from twisted.application.internet import backoffPolicy
from twisted.internet import defer, error, reactor, ssl, task

from helpers import quiet
from imclient.account import Account, KnownServers
from imclient.client import Client, NotConnected, Queued, SessionEnded
from imclient.connect import CertificateError, PinMismatch, connect
from imclient.events import (
    Error, FriendEvent, MessageEvent, MessageState, Online, Pinned, ProgressMeter, Reconnecting,
)
from imserver import tls
from serverproc import ServerProcess, free_port

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
FAST = backoffPolicy(initialDelay=0.05, maxDelay=0.5, factor=2.0, jitter=lambda: 0)


async def wait_until(predicate, timeout=10.0, what="condition"):
    """Poll ``predicate()`` (a value or a Deferred of one, e.g. a store read) until it is true."""
    for _ in range(int(timeout / 0.02)):
        result = predicate()
        if isinstance(result, defer.Deferred):
            result = await result
        if result:
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


def account(tmp_path, username, port, tls_on=False):
    return Account(home=str(tmp_path / "home"), username=username, host="127.0.0.1", port=port,
                   tls=tls_on)


class Recorder:
    """Every event a client emits (``"*"`` subscribers get ``fn(event)`` like any other)."""

    def __init__(self, client):
        self.events = []
        client.on("*", self.events.append)

    def of(self, name):
        """The events of that name, or of that class."""
        return [e for e in self.events
                if (e.name == name if isinstance(name, str) else isinstance(e, name))]

    def acked(self):
        return [e for e in self.of(MessageState) if e.state == "acked"]

    def bodies(self):
        return [e.body for e in self.of(MessageEvent)]


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_first_certificate_is_pinned_and_a_changed_one_is_refused(running, tmp_path):
    await (await running.client()).register("alice", "correct horse")
    acct = account(tmp_path, "alice", running.tls_port, tls_on=True)
    client = Client(reactor, acct, password="correct horse")
    pinned = Recorder(client)
    await client.start()
    assert KnownServers(acct.home).get("127.0.0.1", running.tls_port) == running.fingerprint
    assert pinned.of(Pinned)[0].fingerprint == running.fingerprint
    await client.close()
    # The same port now presents another certificate.
    port = running.tls_port
    await running.ports[1].stopListening()
    other = tmp_path / "other"
    other.mkdir()
    cert, key, _ = tls.ensure(str(other))
    with open(key, "rb") as k, open(cert, "rb") as c:
        creds = ssl.PrivateCertificate.loadPEM(k.read() + c.read())
    from imserver.protocol import ImFactory
    running.ports[1] = reactor.listenSSL(port, ImFactory(running.server), creds.options(),
                                         interface="127.0.0.1")
    again = Client(reactor, Account.load(acct.home))
    errors = Recorder(again)
    with pytest.raises(PinMismatch) as info:
        await again.start()
    assert "CHANGED" in str(info.value) and running.fingerprint in str(info.value)
    assert errors.of(Error) and not again.online
    assert KnownServers(acct.home).get("127.0.0.1", port) == running.fingerprint  # pin kept
    await again.close()


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_a_ca_verified_server_needs_no_pin(running, tmp_path):
    await (await running.client()).register("alice", "correct horse")
    # The self-signed certificate is its own CA; its names are localhost and 127.0.0.1.
    acct = Account(home=str(tmp_path / "home"), username="alice", host="localhost",
                   port=running.tls_port, ca_file=running.cert_path)
    client = Client(reactor, acct, password="correct horse")
    await client.start()
    assert KnownServers(acct.home).get("localhost", running.tls_port) is None
    await client.close()
    other = tmp_path / "other-ca"
    other.mkdir()
    acct.ca_file = tls.ensure(str(other))[0]
    refused = Client(reactor, acct)
    with pytest.raises(CertificateError):
        await refused.start()
    await refused.close()


async def logged_in_pair(running, tmp_path, **client_kw):
    """bob as a raw protocol, alice as a Client (logged in once, then stopped); friends."""
    bob = await running.user("bob")
    await (await running.client()).register("alice", "correct horse")
    acct = account(tmp_path, "alice", running.port)
    first = Client(reactor, acct, password="correct horse", retry=FAST, **client_kw)
    await first.start()
    await bob.request("friend_request", user=acct.user_id)
    await first.friend_accept(bob.user_id)
    await first.close()
    return acct, bob


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_send_queued_offline_survives_a_client_restart_and_arrives_once(running, tmp_path):
    acct, bob = await logged_in_pair(running, tmp_path)
    offline = Client(reactor, Account.load(acct.home), retry=FAST)
    d = offline.send(bob.user_id, "written on a train", client_id="train-1")
    assert [m["body"] for m in await offline.outbox.pending()] == ["written on a train"]
    assert not d.called and await offline.message_state("train-1") == "queued"
    with pytest.raises(NotConnected):
        await offline.request("friends")
    await offline.close()  # the program exits with the message still queued
    with pytest.raises(Queued):
        await d
    bob_messages = []
    bob.subscribe(lambda p: p.get("op") == "message" and bob_messages.append(p))
    client = Client(reactor, Account.load(acct.home), retry=FAST)
    seen = Recorder(client)
    await client.start()
    await wait_until(seen.acked, what="the queued send to be acknowledged")
    await quiet(0.2)
    assert [m["body"] for m in bob_messages] == ["written on a train"]
    assert bob_messages[0]["client_id"] == "train-1"
    assert await client.outbox.pending() == [] and seen.acked()[0].duplicate is False
    assert await client.message_state("train-1") == "acked"
    assert seen.acked()[0].client_id == "train-1"
    assert seen.of(MessageEvent) == []  # our own message is not reported as incoming
    history = await bob.request("history", peer=acct.user_id)
    assert [m["body"] for m in history["messages"]] == ["written on a train"]
    await client.close()


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_local_store_serves_history_without_asking_again(running, tmp_path):
    acct, bob = await logged_in_pair(running, tmp_path)
    for i in range(6):
        await bob.request("send", to=acct.user_id, body=f"h{i}", client_id=f"h{i}")
    client = Client(reactor, Account.load(acct.home), retry=FAST)
    await client.start()
    page = await client.history(bob.user_id, limit=4)
    assert [m["body"] for m in page["messages"]] == ["h5", "h4", "h3", "h2"]
    assert page["fetched"] == 0 and "history" not in client.stats
    # Drop all but the newest two locally: the rest is fetched once, then served locally.
    assert await client.store.prune(bob.user_id, keep=2) == 4
    page = await client.history(bob.user_id, limit=5)
    assert [m["body"] for m in page["messages"]] == ["h5", "h4", "h3", "h2", "h1"]
    assert page["fetched"] == 3 and client.stats["history"] == 1
    page = await client.history(bob.user_id, limit=10)
    assert [m["body"] for m in page["messages"]] == [f"h{i}" for i in range(5, -1, -1)]
    assert client.stats["history"] == 2 and page["more"] is False
    page = await client.history(bob.user_id, limit=10)
    assert page["fetched"] == 0 and client.stats["history"] == 2
    await client.stop()
    offline = await client.history(bob.user_id, before=page["messages"][1]["msg_id"], limit=2)
    assert [m["body"] for m in offline["messages"]] == ["h3", "h2"]
    await client.store.close()


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_friend_events_are_reported_once_across_restarts(running, tmp_path):
    bob = await running.user("bob")
    await (await running.client()).register("alice", "correct horse")
    acct = account(tmp_path, "alice", running.port)
    client = Client(reactor, acct, password="correct horse", retry=FAST)
    seen = Recorder(client)
    await client.start()
    await bob.request("friend_request", user=acct.user_id, greeting="hi alice")
    await wait_until(lambda: seen.of("friend_request"), what="the friend request")
    await client.close()
    # Logging in again re-pushes the pending request (without a position) and syncs it again.
    again = Client(reactor, Account.load(acct.home), retry=FAST)
    seen_again = Recorder(again)
    await again.start()
    await quiet(0.2)
    assert [e.greeting for e in seen.of("friend_request")] == ["hi alice"]
    assert all(isinstance(e, FriendEvent) for e in seen.of("friend_request"))
    assert seen_again.of("friend_request") == []
    await again.friend_accept(bob.user_id)
    # The reply carried the position of the friend_added it wrote (the server pushes that to
    # our other connections only): the client synced past it before handing the reply on.
    assert [e.user for e in seen_again.of("friend_added")] == [bob.user_id]
    assert [f["username"] for f in await again.friends()] == ["bob"]
    # Bob was online before this client connected: the friend list says so, with no push.
    assert again.presence[bob.user_id]["online"] is True
    await again.friend_alias(bob.user_id, "Bobby")
    assert [f["alias"] for f in await again.store.friends()] == ["Bobby"]
    await again.close()


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_a_revoked_session_stops_the_client_instead_of_reconnecting(running, tmp_path):
    await (await running.client()).register("alice", "correct horse")
    client = Client(reactor, account(tmp_path, "alice", running.port), password="correct horse",
                    retry=FAST)
    seen = Recorder(client)
    await client.start()
    other = await running.user("alice", device="phone", register=False)
    mine = [s for s in (await other.request("sessions"))["sessions"] if not s["current"]]
    await other.request("session_revoke", session=mine[0]["session"])
    await wait_until(lambda: seen.of("error"), what="the client to stop")
    assert seen.of("session_revoked") and isinstance(seen.of(Error)[0].error, SessionEnded)
    await quiet(0.3)
    assert not client.online and seen.of("reconnecting") == []
    assert Account.load(client.account.home).token is None
    await client.close()


@pytest_twisted.ensureDeferred
async def test_reconnect_after_server_restart_loses_and_repeats_nothing(tmp_path):
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--listen", f"tcp:{port}:interface=127.0.0.1"]
    server = ServerProcess(tmp_path, args, port).start()
    client = None
    try:
        await server.wait_listening()
        alice = await connect(reactor, "127.0.0.1", port)
        await alice.register("alice", "correct horse")
        alice_id = (await alice.login("alice", "correct horse"))["user_id"]
        await alice.register("bob", "correct horse")
        acct = account(tmp_path, "bob", port)
        gate = [defer.succeed(None)]  # holds bob's reconnects back while it is unfired

        async def gated_connect(*args, **kw):
            await gate[0]
            return await connect(*args, **kw)

        client = Client(reactor, acct, password="correct horse", retry=FAST, connect=gated_connect)
        seen = Recorder(client)
        await client.start()
        alice.transport.abortConnection()
        alice = await connect(reactor, "127.0.0.1", port)
        await alice.login("alice", "correct horse")
        await alice.request("friend_request", user=acct.user_id)
        await client.friend_accept(alice_id)
        for i in range(5):
            await alice.request("send", to=acct.user_id, body=f"m{i}", client_id=f"m{i}")
        await wait_until(lambda: len(seen.of(MessageEvent)) == 5, what="five live messages")
        gate[0] = defer.Deferred()
        server.kill()  # SIGKILL mid-conversation
        await wait_until(lambda: seen.of("offline"), what="the client to notice")
        queued = client.send(alice_id, "sent while the server was down", client_id="down-1")
        server = ServerProcess(tmp_path, args, port).start()
        await server.wait_listening()
        alice = await connect(reactor, "127.0.0.1", port)
        await alice.login("alice", "correct horse")
        for i in range(5, 8):  # while bob is away: these come by sync
            await alice.request("send", to=acct.user_id, body=f"m{i}", client_id=f"m{i}")
        gate[0].callback(None)
        await queued
        assert client.online
        for i in range(8, 10):  # and these live
            await alice.request("send", to=acct.user_id, body=f"m{i}", client_id=f"m{i}")
        await wait_until(lambda: len(seen.of(MessageEvent)) >= 10, what="ten messages")
        await quiet(0.3)
        assert seen.bodies() == [f"m{i}" for i in range(10)]
        assert len(seen.of(Online)) >= 2 and seen.of(Reconnecting)
        history = (await alice.request("history", peer=acct.user_id))["messages"]
        assert [m["body"] for m in history if m["from"] == acct.user_id] == ["sent while the server was down"]
        # Every message is in the local store, once.
        local = (await client.history(alice_id, limit=50))["messages"]
        assert [m["body"] for m in local if m["from"] == alice_id] == [f"m{i}" for i in range(9, -1, -1)]
        alice.transport.abortConnection()
    finally:
        if client is not None:
            await client.close()
        server.stop()


@pytest_twisted.ensureDeferred
async def test_backoff_grows_on_the_injected_clock_and_stop_cancels_it(tmp_path):
    clock = task.Clock()
    attempts = []

    def refuse(reactor_, host, port, **kw):
        attempts.append(clock.seconds())
        return defer.fail(error.ConnectionRefusedError())

    acct = account(tmp_path, "carol", 1)
    client = Client(reactor, acct, password="x", clock=clock, connect=refuse,
                    retry=backoffPolicy(initialDelay=1, maxDelay=8, factor=2, jitter=lambda: 0))
    seen = Recorder(client)
    started = client.start()
    for _ in range(6):
        clock.advance(seen.of(Reconnecting)[-1].delay)
    assert [e.delay for e in seen.of("reconnecting")] == [1, 2, 4, 8, 8, 8, 8]
    assert attempts == [0, 1, 3, 7, 15, 23, 31]
    await client.close()
    assert clock.getDelayedCalls() == []
    with pytest.raises(NotConnected):
        await started


def test_progress_meter_reports_rate_and_eta():
    clock = task.Clock()
    events = []
    meter = ProgressMeter(clock, events.append, transfer=7, direction="upload", name="a.bin",
                          total=1000, interval=0.5)
    clock.advance(1)
    meter.update(100)
    clock.advance(0.1)
    assert meter.update(150) is None  # too soon after the last one
    clock.advance(0.9)
    meter.update(300)
    assert [e.bytes_done for e in events] == [100, 300]
    assert events[-1].rate == pytest.approx(150.0) and events[-1].eta == pytest.approx(700 / 150)
    clock.advance(0.01)
    meter.update(1000)  # the last byte is always reported
    assert events[-1].done and events[-1].eta == 0


def test_account_files_are_private(tmp_path):
    acct = Account(home=str(tmp_path), username="dora", host="h", port=1, token="secret")
    acct.save()
    assert oct(os.stat(os.path.join(acct.directory, "account.json")).st_mode & 0o777) == "0o600"
    assert Account.load(str(tmp_path)).token == "secret"
    assert Account.load(str(tmp_path), "dora").name == "dora@h_1"
    with pytest.raises(LookupError):
        Account.load(str(tmp_path), "nobody")


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_receipts_move_the_local_markers_both_ways(running, tmp_path):
    acct, bob = await logged_in_pair(running, tmp_path)
    client = Client(reactor, Account.load(acct.home), retry=FAST)
    seen = Recorder(client)
    await client.start()
    mine = (await client.send(bob.user_id, "did you get this?", client_id="q-1")).as_dict()
    # Bob's receipts about alice's message reach the client as pushes.
    await bob.request("mark_delivered", peer=acct.user_id, msg_id=mine["msg_id"])
    await wait_until(lambda: client.store.receipts(bob.user_id).addCallback(
        lambda r: r["delivered_upto"] == mine["msg_id"]), what="the delivered receipt")
    await wait_until(lambda: client.message_state("q-1").addCallback(lambda s: s == "delivered"),
                     what="the message's state to follow")
    await bob.request("mark_read", peer=acct.user_id, msg_id=mine["msg_id"])
    await wait_until(lambda: client.store.receipts(bob.user_id).addCallback(
        lambda r: r["read_upto"] == mine["msg_id"]), what="the read receipt")
    assert [(e.client_id, e.state) for e in seen.of(MessageState)] == [
        ("q-1", "queued"), ("q-1", "sent"), ("q-1", "acked"), ("q-1", "delivered"), ("q-1", "read")]
    # Alice reads bob's answer: her own marker moves (through her stream), bob's do not.
    answer = await bob.request("send", to=acct.user_id, body="yes", client_id="a-1")
    await wait_until(lambda: seen.of(MessageEvent), what="bob's answer")
    await client.mark_read(bob.user_id, answer["msg_id"])
    assert await client.store.receipts(bob.user_id) == {
        "delivered_upto": mine["msg_id"], "read_upto": mine["msg_id"], "my_read_upto": answer["msg_id"]}
    await client.close()
