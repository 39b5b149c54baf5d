"""imclient.outbox.Outbox on a scripted protocol and a task.Clock: message states, retry_after,
failures kept, group sends; and the stream-write rule (a reply's ``pos`` past the saved position
means sync past it)."""
import pytest
from twisted.internet import defer

from imclient.events import MessageState
from imclient.protocol import RemoteError
from test_client_store import message, now, scripted_client


def states(client):
    seen = []
    client.on(MessageState, lambda e: seen.append((e.client_id, e.state)))
    return seen


def test_states_queued_sent_acked_and_the_reply_pos_is_synced_past(tmp_path):
    sync_calls = []
    client, clock, protos, stream, seen = scripted_client(
        tmp_path, [], send=lambda to, body, client_id: {"msg_id": 12, "ts": 5, "pos": 12,
                                                        "duplicate": False})
    seen_states = states(client)
    client.start()
    protos[0].replies["sync"] = lambda since, limit: (sync_calls.append(since) or
                                                      {"events": [message(12, 1, 2, "hi", "k1")],
                                                       "next": 12, "more": False})
    acked = now(client.send(2, "hi", client_id="k1"))
    assert (acked.state, acked.msg_id, acked.pos) == ("acked", 12, 12)
    assert seen_states == [("k1", "queued"), ("k1", "sent"), ("k1", "acked")]
    # pos 12 is past the saved position (0): the client synced past it, and the stream's copy
    # of its own message was not reported again.
    assert sync_calls == [0] and now(client.store.position()) == 12 and seen == []
    assert now(client.message_state("k1")) == "acked"
    client.close()


def test_rate_limited_sends_wait_at_least_retry_after(tmp_path):
    attempts = []

    def send(to, body, client_id):
        attempts.append(client.clock.seconds())
        if len(attempts) == 1:
            return defer.fail(RemoteError("rate_limited", "slow down", {"code": "rate_limited",
                                                                        "retry_after": 7.5}))
        return {"msg_id": 3, "ts": 1, "pos": 3, "duplicate": False}

    client, clock, protos, stream, seen = scripted_client(tmp_path, [], send=send)
    client.start()
    d = client.send(2, "hello", client_id="r1")
    clock.advance(1.0)  # the backoff alone would resend now
    assert attempts == [0] and not d.called
    clock.advance(6.5)
    assert attempts == [0, 7.5] and now(d).state == "acked"
    client.close()


def test_a_refused_send_fails_for_good_and_is_kept_as_failed(tmp_path):
    def send(to, body, client_id):
        return defer.fail(RemoteError("not_friends", "you can only message your friends"))

    client, clock, protos, stream, seen = scripted_client(tmp_path, [], send=send)
    seen_states = states(client)
    client.start()
    d = client.send(9, "hello?", client_id="f1")
    assert d.called
    with pytest.raises(RemoteError):
        now(d)
    assert seen_states[-1] == ("f1", "failed")
    assert now(client.outbox.pending()) == []
    [failed] = now(client.outbox.failed())
    assert failed["client_id"] == "f1" and failed["error"].startswith("not_friends")
    assert now(client.message_state("f1")) == "failed"
    clock.advance(60)
    assert [op for op, _ in protos[0].requests].count("send") == 1  # never retried
    client.close()


def test_group_sends_go_through_the_outbox_and_survive_a_drop(tmp_path):
    replies = []

    def group_send(group, body, client_id):
        replies.append(defer.Deferred())
        return replies[-1]

    client, clock, protos, stream, seen = scripted_client(tmp_path, [], group_send=group_send)
    seen_states = states(client)
    client.start()
    d = client.group_send(4, "team, hello", client_id="g1")
    protos[0].loseConnection()  # the reply never comes
    replies[0].errback(ConnectionError("lost"))
    assert [r["client_id"] for r in now(client.outbox.pending())] == ["g1"]
    clock.advance(1.0)  # reconnected: the same client id goes out again
    assert client.online and protos[1].requests[-1] == (
        "group_send", {"group": 4, "body": "team, hello", "client_id": "g1"})
    replies[1].callback({"msg_id": 30, "seq": 2, "pos": 30, "ts": 8, "duplicate": True})
    assert now(d).group == 4 and now(d).duplicate is True
    [row] = now(client.store.group_history(4))
    assert (row["seq"], row["from"], row["body"], row["state"]) == (2, 1, "team, hello", "acked")
    assert seen_states == [("g1", "queued"), ("g1", "sent"), ("g1", "acked")]
    client.close()


def test_a_reply_with_a_new_pos_is_handed_on_only_after_the_sync(tmp_path):
    synced = defer.Deferred()
    client, clock, protos, stream, seen = scripted_client(
        tmp_path, [], group_create={"ok": True, "group_id": 4, "pos": 40})
    client.start()
    protos[0].replies["sync"] = lambda since, limit: synced
    got = []
    reply = client.group_create("team").addCallback(lambda r: got.append(r) or r)
    assert got == []  # the sync it started has not answered yet
    synced.callback({"events": [{"pos": 40, "type": "group_created", "group": 4, "name": "team",
                                 "by": 1, "members": [1], "join_policy": "approval", "ts": 1}],
                     "next": 40, "more": False})
    assert [r["group_id"] for r in got] == [4]
    assert now(client.store.group(4))["role"] == "owner"
    protos[0].replies["group_info"] = {"ok": True, "group": {"group": 4}}
    protos[0].replies["group_mark_read"] = {"ok": True, "moved": True, "pos": 40}
    before = len(protos[0].requests)
    now(client.group_info(4))  # no pos: nothing to sync
    now(client.group_mark_read(4, 40))  # a pos the client has synced past already
    assert [op for op, _ in protos[0].requests[before:]] == ["group_info", "group_mark_read"]
    client.close()
