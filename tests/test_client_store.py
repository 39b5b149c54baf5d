"""The client's local store, and the Client's once-only event handling, without a network.

The Client runs here on a scripted protocol (replies and pushes chosen by the test) and a
``task.Clock``, so the dedupe and catch-up rules are checked exactly and fast.
"""
import os

import pytest
from twisted.internet import defer, task
from twisted.python import failure

from imclient.account import Account
from imclient.client import Client
from imclient.events import MessageEvent
from imclient.store import LocalStore
from imclient.worker import StoreWorker


def now(d):
    """The result of a Deferred that has fired already (the inline store answers at once)."""
    assert d.called, d
    result = d.result
    if isinstance(result, failure.Failure):
        d.addErrback(lambda f: None)  # raised here, so handled
        result.raiseException()
    return result


def message(pos, sender, recipient, body, client_id=None):
    return {"pos": pos, "type": "message", "msg_id": pos, "from": sender, "to": recipient,
            "body": body, "kind": "text", "ts": 1000 + pos, "client_id": client_id or f"c{pos}"}


def test_position_and_seen_positions(tmp_path):
    store = LocalStore(str(tmp_path / "s.sqlite"))
    assert store.position == 0
    assert store.first_sight(5) and not store.first_sight(5)
    store.set_position(7)
    assert not store.first_sight(6) and store.first_sight(9)
    assert store.db.execute("SELECT pos FROM seen").fetchall() == [(9,)]  # pruned below 7
    store.close()
    assert LocalStore(str(tmp_path / "s.sqlite")).position == 7


def test_history_floor_prune_and_conversations(tmp_path):
    store = LocalStore(str(tmp_path / "s.sqlite"))
    me, bob = 1, 2
    for pos in range(10, 20):
        sender, to = (bob, me) if pos % 2 else (me, bob)
        assert store.add_message(message(pos, sender, to, f"m{pos}"), me)
    assert not store.add_message(message(10, me, bob, "m10"), me)
    assert [m["body"] for m in store.history(bob, before=15, limit=3)] == ["m14", "m13", "m12"]
    assert store.floor(bob) == 0
    assert store.prune(bob, keep=4) == 6
    assert store.floor(bob) == 15 and [m["msg_id"] for m in store.history(bob)] == [19, 18, 17, 16]
    store.receipt(bob, "my_read_upto", 17)
    store.receipt(bob, "my_read_upto", 11)  # markers never go back
    [conv] = store.conversations()
    assert conv == {"peer": bob, "last_msg_id": 19, "last_ts": 1019, "count": 4, "unread": 1}


def test_outbox_and_transfers_survive_a_restart(tmp_path):
    path = str(tmp_path / "s.sqlite")
    store = LocalStore(path)
    for i in range(3):
        store.outbox_add(f"id{i}", 2, f"b{i}", 100 + i)
    store.outbox_add("id0", 2, "again", 200)  # same client id: kept once
    tid = store.transfer_add("upload", "/tmp/a.bin", "a.bin", 1 << 20, "ab" * 32, 5)
    store.transfer_update(tid, upload_id=9, offset=65536, updated=6)
    with pytest.raises(ValueError):
        store.transfer_update(tid, path="/elsewhere")
    store.close()
    store = LocalStore(path)  # as after a crash
    assert [r["client_id"] for r in store.outbox()] == ["id0", "id1", "id2"]
    assert store.outbox()[0]["body"] == "b0"
    [t] = store.transfers()
    assert (t["path"], t["size"], t["upload_id"], t["offset"], t["state"]) == (
        "/tmp/a.bin", 1 << 20, 9, 65536, "active")
    store.transfer_update(tid, state="done")
    assert store.transfers() == [] and len(store.transfers(unfinished=False)) == 1


class ScriptedProtocol:
    """Stands in for ClientProtocol: requests are recorded and answered by ``replies[op]``."""

    def __init__(self, replies):
        self.replies, self.requests, self.handlers = replies, [], []
        self.lost = defer.Deferred()
        self.server_info = {"server": "parley"}
        self.transport = self

    def request(self, op, **fields):
        self.requests.append((op, fields))
        reply = self.replies[op]
        result = reply(**fields) if callable(reply) else reply
        return result if isinstance(result, defer.Deferred) else defer.succeed(result)

    def subscribe(self, handler):
        self.handlers.append(handler)

    def push(self, message):
        for handler in list(self.handlers):
            handler(message)

    def loseConnection(self):
        if not self.lost.called:
            self.lost.callback(None)

    abortConnection = loseConnection


def scripted_client(tmp_path, events, **replies):
    me = 1
    stream = {"events": events}

    def sync(since, limit):
        after = [e for e in stream["events"] if e["pos"] > since][:limit]
        return {"events": after, "next": after[-1]["pos"] if after else since, "more": False}

    protos = []

    def connect(reactor, host, port, **kw):
        protos.append(ScriptedProtocol({"resume": {"user_id": me}, "sync": sync, **replies}))
        return defer.succeed(protos[-1])

    acct = Account(home=str(tmp_path), username="me", host="h", port=1, tls=False, user_id=me,
                   token="t")
    clock = task.Clock()
    os.makedirs(acct.directory)
    store = StoreWorker(acct.store_path, threaded=False)  # every job at once: the Clock drives all
    client = Client(clock, acct, clock=clock, connect=connect, retry=lambda attempt: 1.0, store=store)
    seen = []
    client.on(MessageEvent, lambda m: seen.append(m.body))
    return client, clock, protos, stream, seen


def test_each_message_is_reported_once_across_pushes_syncs_and_reconnects(tmp_path):
    client, clock, protos, stream, seen = scripted_client(
        tmp_path, [message(3, 2, 1, "before we started")])
    client.start()
    assert client.online and seen == ["before we started"]
    live = message(5, 2, 1, "live")
    stream["events"].append(live)
    protos[0].push({"op": "message", **{k: v for k, v in live.items() if k != "type"}})
    assert seen == ["before we started", "live"]
    clock.advance(client.checkpoint_delay)  # the checkpoint sync sees it again: no repeat
    assert seen == ["before we started", "live"] and now(client.store.position()) == 5
    protos[0].push({"op": "message", **{k: v for k, v in live.items() if k != "type"}})
    stream["events"].append(message(8, 2, 1, "while away"))
    protos[0].loseConnection()
    assert not client.online
    clock.advance(1.0)
    assert client.online and len(protos) == 2
    assert seen == ["before we started", "live", "while away"]
    assert [op for op, _ in protos[1].requests] == ["resume", "sync"]
    assert protos[1].requests[1][1]["since"] == 5
    client.close()


def test_a_send_given_up_on_is_still_acknowledged_and_leaves_the_outbox(tmp_path):
    acks = []

    def send(to, body, client_id):
        acks.append(defer.Deferred())
        return acks[-1]

    client, clock, protos, stream, seen = scripted_client(tmp_path, [], send=send)
    client.start()
    d = client.send(2, "slow", client_id="slow-1")
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    d.cancel()  # the caller stops waiting (a CLI timeout) ...
    assert [r["client_id"] for r in now(client.outbox.pending())] == ["slow-1"]
    sent = []
    client.on("message_state", sent.append)
    acks[0].callback({"msg_id": 9, "ts": 5, "pos": 9, "duplicate": False})  # ... the ack comes anyway
    assert now(client.outbox.pending()) == [] and [(e.state, e.msg_id) for e in sent] == [("acked", 9)]
    assert now(client.store.message(9))["body"] == "slow"
    client.close()
