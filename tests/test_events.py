"""imclient.events: one call signature for every subscriber, by class, by name or "*"; the
records built from wire events; the LAN chat's events in the same style."""
import dataclasses
import random

import pytest
from twisted.internet import task

from imclient import events as ev
from imclient.lan import core as lan_core
from imclient.lan import events as lan_events


def message(pos=5):
    return {"type": "message", "pos": pos, "msg_id": pos, "from": 2, "to": 1, "body": "hi",
            "kind": "text", "ts": 1000, "client_id": "c5", "extra": "kept"}


def test_subscribe_by_class_name_or_star_all_get_fn_event():
    emitter = ev.Emitter()
    by_class, by_base, by_name, every = [], [], [], []
    emitter.on(ev.MessageEvent, by_class.append)
    emitter.on(ev.Event, by_base.append)
    emitter.on("friend_added", by_name.append)
    unsubscribe = emitter.on("*", every.append)
    m = ev.stream_event(message())
    added = ev.stream_event({"type": "friend_added", "pos": 6, "user": 2})
    emitter.emit(m)
    emitter.emit(added)
    assert by_class == [m] and by_name == [added] and by_base == every == [m, added]
    unsubscribe()
    emitter.emit(ev.Offline("gone"))
    assert len(every) == 2 and by_base[-1] == ev.Offline("gone")


def test_a_failing_subscriber_does_not_stop_the_others():
    emitter = ev.Emitter()
    got = []

    def broken(event):
        raise RuntimeError("subscriber bug")
    emitter.on("*", broken)
    emitter.on("*", got.append)
    emitter.emit(ev.Online(1))
    assert got == [ev.Online(1)]


def test_wire_events_become_records_that_keep_the_wire_object():
    m = ev.stream_event(message())
    assert (m.name, m.sender, m.to, m.body, m.pos, m.client_id) == ("message", 2, 1, "hi", 5, "c5")
    assert m.data["extra"] == "kept" and "data" not in m.as_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.body = "changed"
    push = dict(message(), op="message")
    del push["type"]
    assert ev.stream_event(push) == m  # a push and a sync row make the same record
    r = ev.stream_event({"type": "receipt", "pos": 7, "kind": "read", "reader": 2, "peer": 1,
                         "msg_id": 5})
    assert isinstance(r, ev.ReceiptEvent) and r.name == "receipt" and r.kind == "read"
    g = ev.stream_event({"type": "group_message", "pos": 8, "group": 3, "msg_id": 8, "seq": 1,
                         "from": 2, "body": "@1 hi", "ts": 9, "mentions": [1], "mentioned": True})
    assert isinstance(g, ev.GroupMessageEvent) and g.mentions == (1,) and g.mentioned
    j = ev.stream_event({"type": "group_member_joined", "pos": 9, "group": 3, "user": 4, "by": 2,
                         "via": "invite"})
    assert isinstance(j, ev.GroupEvent) and j.name == "group_member_joined" and j.data["via"] == "invite"
    unknown = ev.stream_event({"type": "poll_created", "pos": 10, "question": "?"})
    assert type(unknown) is ev.StreamEvent and unknown.name == "poll_created" and unknown.pos == 10


def test_lan_events_are_client_events_and_the_core_subscribes_by_class():
    assert issubclass(lan_events.MessageDelivered, ev.Event)
    assert lan_events.MemberJoined("ab", "zoe").as_dict() == {
        "member": "ab", "nickname": "zoe", "event": "member_joined"}
    clock = task.Clock()
    core = lan_core.LanCore("ann", clock, lambda datagram: None, random.Random(1))
    joined, every = [], []
    core.on(lan_events.MemberJoined, joined.append)
    core.subscribe(every.append)
    core._publish(lan_events.MemberJoined("ab", "zoe"))
    core._publish(lan_events.MessageAcknowledged("ab:1"))
    assert joined == [lan_events.MemberJoined("ab", "zoe")] and len(every) == 2
