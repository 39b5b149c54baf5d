"""1:1 messaging over real sockets, on SQLite and MySQL: send, push, sync, history, receipts."""
import pytest
import pytest_twisted
from twisted.internet import defer

from helpers import Pushes, befriend, error_code, quiet, sync_all
from imserver.store import stream


async def pair(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    await befriend(alice, bob)
    return alice, bob


@pytest_twisted.ensureDeferred
async def test_send_is_acked_pushed_and_synced(running):
    alice, bob = await pair(running)
    bob_pushes = Pushes(bob)
    alice_laptop = await running.user("alice", device="laptop", register=False)
    laptop_pushes = Pushes(alice_laptop)
    alice_pushes = Pushes(alice)
    reply = await alice.request("send", to=bob.user_id, body="hello, bob", client_id="c-1")
    assert reply["msg_id"] == reply["pos"] and reply["ts"] > 0 and reply["duplicate"] is False
    push = await bob_pushes.next("message")
    assert {k: push[k] for k in ("msg_id", "from", "to", "body", "pos", "client_id")} == {
        "msg_id": reply["msg_id"], "from": alice.user_id, "to": bob.user_id, "body": "hello, bob",
        "pos": reply["pos"], "client_id": "c-1"}
    # The sender's other device hears it too; the sending connection does not get an echo.
    assert (await laptop_pushes.next("message"))["msg_id"] == reply["msg_id"]
    assert alice_pushes.of("message") == []
    synced = await bob.request("sync", since=0)
    messages = [e for e in synced["events"] if e["type"] == "message"]
    assert [m["body"] for m in messages] == ["hello, bob"]
    assert synced["next"] == synced["events"][-1]["pos"] and synced["more"] is False


@pytest_twisted.ensureDeferred
async def test_resend_with_same_client_id_is_stored_once(running):
    alice, bob = await pair(running)
    first = await alice.request("send", to=bob.user_id, body="once", client_id="same")
    again = await alice.request("send", to=bob.user_id, body="once", client_id="same")
    assert again["msg_id"] == first["msg_id"] and again["duplicate"] is True
    # Pipelined duplicates inside one batch, too.
    replies = await defer.gatherResults([
        alice.request("send", to=bob.user_id, body="twice", client_id="pipelined") for _ in range(5)])
    assert len({r["msg_id"] for r in replies}) == 1
    history = (await bob.request("history", peer=alice.user_id))["messages"]
    assert [m["body"] for m in history] == ["twice", "once"]
    # Resends of committed messages mixed with new sends in one batch: the new ones are stored
    # and pushed, each resend answers with its first message, and nothing is stored twice.
    mixed = await defer.gatherResults([
        alice.request("send", to=bob.user_id, body="new 1", client_id="new-1"),
        alice.request("send", to=bob.user_id, body="once", client_id="same"),
        alice.request("send", to=bob.user_id, body="new 2", client_id="new-2"),
        alice.request("send", to=bob.user_id, body="twice", client_id="pipelined"),
        alice.request("send", to=bob.user_id, body="new 2", client_id="new-2")])
    assert [r["duplicate"] for r in mixed] == [False, True, False, True, True]
    assert mixed[1]["msg_id"] == first["msg_id"] and mixed[3]["msg_id"] == replies[0]["msg_id"]
    assert mixed[4]["msg_id"] == mixed[2]["msg_id"]
    history = (await bob.request("history", peer=alice.user_id))["messages"]
    assert [m["body"] for m in history] == ["new 2", "new 1", "twice", "once"]
    assert mixed[0]["pos"] < mixed[2]["pos"]


@pytest_twisted.ensureDeferred
async def test_bodies_are_stored_byte_for_byte(running):
    # Message rows are rendered into one multi-row INSERT on MySQL: quotes, backslashes, NUL,
    # placeholders and non-BMP characters must come back as sent.
    alice, bob = await pair(running)
    bodies = ["it's \"quoted\"", "back\\slash \\' and \\\\", "nul \x00 here", "%s %% ? ?",
              "emoji \U0001F600 and ü", "line\nbreak\ttab\r", "'); DROP TABLE messages; --"]
    await defer.gatherResults([alice.request("send", to=bob.user_id, body=b, client_id=f"t{i}")
                               for i, b in enumerate(bodies)])
    history = (await bob.request("history", peer=alice.user_id))["messages"]
    assert sorted(m["body"] for m in history) == sorted(bodies)
    assert sorted(m["client_id"] for m in history) == sorted(f"t{i}" for i in range(len(bodies)))


@pytest_twisted.ensureDeferred
async def test_bad_sends_have_their_own_codes_and_store_nothing(running):
    alice, bob = await pair(running)
    carol = await running.user("carol")
    long_body = "x" * (running.server.config.max_body + 1)
    cases = [
        (dict(to=alice.user_id, body="me", client_id="a"), "self_send"),
        (dict(to=987654, body="who", client_id="b"), "not_found"),
        (dict(to=carol.user_id, body="stranger", client_id="c"), "not_friends"),
        (dict(to=bob.user_id, body="   ", client_id="d"), "empty_body"),
        (dict(to=bob.user_id, body=long_body, client_id="e"), "too_large"),
        (dict(to=bob.user_id, body="typed", client_id=17), "bad_request"),
        (dict(to=bob.user_id, body="no id"), "bad_request"),
    ]
    for fields, code in cases:
        assert await error_code(alice.request("send", **fields)) == code, fields
    for user in (alice, bob, carol):  # no message in anyone's stream
        assert [e for e in (await user.request("sync", since=0))["events"] if e["type"] == "message"] == []
    assert (await alice.request("history", peer=bob.user_id))["messages"] == []
    assert (await alice.request("history", peer=carol.user_id))["messages"] == []


@pytest_twisted.ensureDeferred
async def test_offline_recipient_catches_up_in_pages_in_order(running):
    alice, bob = await pair(running)
    start = (await bob.request("sync", since=0))["next"]
    await bob.close()
    replies = await defer.gatherResults([
        alice.request("send", to=bob.user_id, body=f"m{i}", client_id=f"id{i}") for i in range(250)])
    assert len({r["msg_id"] for r in replies}) == 250
    bob2 = await running.user("bob", register=False)
    events, pages, since = await sync_all(bob2, start, 100)
    got = [e["body"] for e in events if e["type"] == "message"]
    assert got == [f"m{i}" for i in range(250)]  # pipelined sends keep their order
    assert pages == 3
    assert (await bob2.request("sync", since=since))["events"] == []


@pytest_twisted.ensureDeferred
async def test_batches_share_transactions(running):
    alice, bob = await pair(running)
    before = running.server.writer.batches
    await defer.gatherResults([
        alice.request("send", to=bob.user_id, body=f"b{i}", client_id=f"b{i}") for i in range(200)])
    used = running.server.writer.batches - before
    assert used < 20, f"200 pipelined sends took {used} transactions"


@pytest_twisted.ensureDeferred
async def test_history_pages_back(running):
    alice, bob = await pair(running)
    for i in range(7):
        sender, to = (alice, bob) if i % 2 == 0 else (bob, alice)
        await sender.request("send", to=to.user_id, body=f"h{i}", client_id=f"h{i}")
    page = await alice.request("history", peer=bob.user_id, limit=3)
    assert [m["body"] for m in page["messages"]] == ["h6", "h5", "h4"] and page["more"]
    page2 = await alice.request("history", peer=bob.user_id, limit=10, before=page["messages"][-1]["msg_id"])
    assert [m["body"] for m in page2["messages"]] == ["h3", "h2", "h1", "h0"] and not page2["more"]
    assert (await alice.request("history", peer=987654))["messages"] == []


@pytest_twisted.ensureDeferred
async def test_receipts_reach_sender_as_push_and_sync(running):
    alice, bob = await pair(running)
    alice_pushes = Pushes(alice)
    m1 = await alice.request("send", to=bob.user_id, body="one", client_id="r1")
    m2 = await alice.request("send", to=bob.user_id, body="two", client_id="r2")
    assert (await bob.request("unread"))["unread"] == [{"peer": alice.user_id, "count": 2}]
    await bob.request("mark_delivered", peer=alice.user_id, msg_id=m2["msg_id"])
    delivered = await alice_pushes.next("receipt")
    assert delivered == {**delivered, "kind": "delivered", "reader": bob.user_id, "msg_id": m2["msg_id"]}
    await bob.request("mark_read", peer=alice.user_id, msg_id=m1["msg_id"])
    read = await alice_pushes.next("receipt")
    assert read["kind"] == "read" and read["msg_id"] == m1["msg_id"]
    assert (await bob.request("unread"))["unread"] == [{"peer": alice.user_id, "count": 1}]
    # Going backwards moves nothing; marking someone else's message is refused.
    assert (await bob.request("mark_read", peer=alice.user_id, msg_id=m1["msg_id"]))["moved"] is False
    assert await error_code(alice.request("mark_read", peer=bob.user_id, msg_id=m1["msg_id"])) == "not_found"
    receipts = [e for e in (await alice.request("sync", since=0))["events"] if e["type"] == "receipt"]
    assert [(r["kind"], r["msg_id"]) for r in receipts] == [("delivered", m2["msg_id"]), ("read", m1["msg_id"])]


@pytest_twisted.ensureDeferred
async def test_stream_positions_only_grow_across_event_types(running):
    alice, bob = await pair(running)
    await alice.request("send", to=bob.user_id, body="x", client_id="p1")
    carol = await running.user("carol")
    await carol.request("friend_request", user=bob.user_id)
    await alice.request("send", to=bob.user_id, body="y", client_id="p2")
    events = (await bob.request("sync", since=0))["events"]
    positions = [e["pos"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e["type"] for e in events][-3:] == ["message", "friend_request", "message"]


@pytest_twisted.ensureDeferred
async def test_a_failing_job_does_not_undo_the_rest_of_its_batch(running, store):
    """Jobs in one batch: the failing one is rolled back to its savepoint, the others commit, and
    the positions counter covers what was committed."""
    from imserver.errors import ImError

    def ok(txn, positions, user):
        return stream.append_event(txn, positions, user, "test", {}, 1)

    def bad(txn, positions, user):
        stream.append_event(txn, positions, user, "test", {}, 1)
        raise ImError("forbidden", "no")

    writer = running.server.writer
    results = await defer.DeferredList([writer.call(ok, 1), writer.call(bad, 1), writer.call(ok, 1)],
                                       consumeErrors=True)
    assert [r[0] for r in results] == [True, False, True]
    head = await store.db.run("head", lambda txn: stream.head(txn))
    rows = await store.db.run("events", lambda txn: txn.all("SELECT pos FROM events WHERE type = 'test'"))
    assert [r[0] for r in rows] == [results[0][1][1]["pos"], results[2][1][1]["pos"]]
    assert head >= max(r[0] for r in rows)


@pytest_twisted.ensureDeferred
async def test_a_failing_result_handler_does_not_keep_others_from_their_results(running):
    """``enqueue`` calls each job's result handler directly: one that raises is logged, and the
    jobs after it in the batch still get their results."""
    def ok(txn, positions, user):
        return stream.append_event(txn, positions, user, "test", {}, 1)

    from twisted.logger import globalLogPublisher

    writer = running.server.writer
    got, done, logged = [], defer.Deferred(), []
    globalLogPublisher.addObserver(logged.append)

    def broken(result):
        raise RuntimeError("handler bug")

    def record(result):
        got.append(result)
        if len(got) == 2:
            done.callback(None)

    writer.enqueue("call", (ok, (1,), False), record)
    writer.enqueue("call", (ok, (1,), False), broken)
    writer.enqueue("call", (ok, (1,), False), record)
    try:
        await done
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [user for user, event in got] == [1, 1]
    assert got[0][1]["pos"] < got[1][1]["pos"]
    failures = [e["log_failure"] for e in logged if "log_failure" in e]
    assert [f.getErrorMessage() for f in failures] == ["handler bug"]


def test_the_message_push_is_the_stream_event_with_op_first():
    """``send`` answers with pushes built once in the batch (``message_event(row, "op")``):
    the same fields as the stream event, ``op`` in place of ``type`` and first on the wire
    (bench/loadclient.py recognises pushes by that prefix without decoding them)."""
    from imserver import wire
    from imserver.store.stream import message_event

    row = (7, 1, 2, "c1", "text", "hi", None, 123)
    event, push = message_event(row), message_event(row, "op")
    assert push.pop("op") == event.pop("type") == "message"
    assert push == event == {"pos": 7, "msg_id": 7, "from": 1, "to": 2, "body": "hi", "kind": "text",
                             "ts": 123, "client_id": "c1"}
    assert wire.encode(message_event(row, "op"))[4:].startswith(b'{"op":"message"')


@pytest_twisted.ensureDeferred
async def test_client_ids_differing_only_in_trailing_spaces_are_different_messages(running):
    # MySQL's utf8mb4_bin ignores trailing spaces in comparisons; client ids must not.
    alice, bob = await pair(running)
    plain = await alice.request("send", to=bob.user_id, body="one", client_id="k")
    spaced = await alice.request("send", to=bob.user_id, body="two", client_id="k ")
    assert spaced["duplicate"] is False and spaced["msg_id"] != plain["msg_id"]
    again = await alice.request("send", to=bob.user_id, body="two", client_id="k ")
    assert again["duplicate"] is True and again["msg_id"] == spaced["msg_id"]
    history = (await bob.request("history", peer=alice.user_id))["messages"]
    assert [(m["body"], m["client_id"]) for m in history] == [("two", "k "), ("one", "k")]


@pytest_twisted.ensureDeferred
async def test_resends_from_another_device_racing_their_first_copies_are_stored_once(running):
    # A reconnecting device resends its outbox while the first copies may still be committing
    # in the batch before (on MySQL two batches overlap): each resend must find its first copy,
    # and the new messages batched with it must not suffer.
    alice, bob = await pair(running)
    phone = await running.user("alice", device="phone", register=False)
    n, lag = 600, 40
    firsts, resends = [], []
    for i in range(n + lag):
        if i < n:
            firsts.append(alice.request("send", to=bob.user_id, body=f"m{i}", client_id=f"c{i}"))
        if i >= lag:
            j = i - lag
            resends.append(phone.request("send", to=bob.user_id, body=f"m{j}", client_id=f"c{j}"))
        if i % 20 == 0:
            await quiet(0.001)
    firsts, resends = await defer.gatherResults(firsts), await defer.gatherResults(resends)
    for first, resend in zip(firsts, resends):
        assert resend["msg_id"] == first["msg_id"]
    assert [r["duplicate"] for r in firsts].count(True) + [r["duplicate"] for r in resends].count(True) == n
    events, _, _ = await sync_all(bob, 0, 1000)
    bodies = [e["body"] for e in events if e["type"] == "message"]
    assert sorted(bodies) == sorted(f"m{i}" for i in range(n))
