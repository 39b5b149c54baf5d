"""imclient.ingest: what each stream event does to the local store and which records it yields,
on a LocalStore directly (these are the transaction functions the store thread runs)."""
from imclient import events as ev
from imclient import ingest
from imclient.store import LocalStore

ME, BOB = 1, 2


def group_event(pos, kind, **fields):
    return {"pos": pos, "type": kind, "group": 7, "ts": pos, **fields}


def test_group_events_keep_the_group_record_current_and_are_reported_once(tmp_path):
    store = LocalStore(str(tmp_path / "s.sqlite"))
    created = group_event(1, "group_created", name="team", by=BOB, members=[ME, BOB],
                          join_policy="open")
    [record] = ingest.apply_event(store, created, ME)
    assert isinstance(record, ev.GroupEvent) and record.name == "group_created"
    assert ingest.apply_event(store, created, ME) == []  # the same position again: nothing
    assert store.group(7) == {"group": 7, "name": "team", "join_policy": "open", "owner": BOB,
                              "role": "member"}
    ingest.apply_event(store, group_event(2, "group_role_changed", user=ME, role="admin", by=BOB), ME)
    ingest.apply_event(store, group_event(3, "group_updated", by=BOB, announcement="hi"), ME)
    ingest.apply_event(store, group_event(4, "group_read", msg_id=40), ME)
    ingest.apply_event(store, group_event(5, "group_owner_changed", user=ME, by=BOB), ME)
    group = store.group(7)
    assert (group["role"], group["owner"], group["announcement"], group["read_upto"]) == (
        "owner", ME, "hi", 40)
    assert [e["type"] for e in store.group_events(7)][:2] == ["group_created", "group_role_changed"]
    ingest.apply_event(store, group_event(6, "group_member_kicked", user=ME, by=BOB), ME)
    assert store.group(7) is None and store.groups() == []


def test_receipts_move_my_messages_states_forward_only(tmp_path):
    store = LocalStore(str(tmp_path / "s.sqlite"))
    for i in (10, 11, 12):
        store.add_message({"msg_id": i, "from": ME, "to": BOB, "body": f"m{i}", "ts": i,
                           "client_id": f"c{i}"}, ME, state="acked")
    read = {"pos": 20, "type": "receipt", "kind": "read", "reader": BOB, "peer": ME, "msg_id": 11}
    records = ingest.apply_event(store, read, ME)
    assert [type(r) for r in records] == [ev.ReceiptEvent, ev.MessageState, ev.MessageState]
    assert [(r.client_id, r.state) for r in records[1:]] == [("c10", "read"), ("c11", "read")]
    late = {"pos": 21, "type": "receipt", "kind": "delivered", "reader": BOB, "peer": ME,
            "msg_id": 12}
    records = ingest.apply_event(store, late, ME)
    assert [(r.client_id, r.state) for r in records[1:]] == [("c12", "delivered")]  # not c10/c11
    assert [store.message_state(f"c{i}") for i in (10, 11, 12)] == ["read", "read", "delivered"]


def test_an_unknown_event_type_is_reported_as_a_stream_event(tmp_path):
    store = LocalStore(str(tmp_path / "s.sqlite"))
    [record] = ingest.apply_event(store, {"pos": 3, "op": "poll_created", "question": "?"}, ME)
    assert type(record) is ev.StreamEvent and record.name == "poll_created"
    assert record.data["question"] == "?"
    assert ingest.apply_page(store, [], 9, ME) == [] and store.position == 9
