"""Groups over real sockets, on SQLite and MySQL: membership, roles and permissions, races, events."""
import pytest_twisted
from twisted.internet import defer

from helpers import Pushes, befriend, error_code, quiet, sync_all
from imclient.protocol import RemoteError


async def crew(running, *names):
    """Logged-in users, the first befriended with every other."""
    users = [await running.user(n) for n in names]
    for other in users[1:]:
        await befriend(users[0], other)
    return users


async def staffed_group(running, policy="approval"):
    """owner, two admins, three members; returns (group id, users by name)."""
    names = ("owner", "admin1", "admin2", "mem1", "mem2", "mem3")
    users = dict(zip(names, await crew(running, *names)))
    reply = await users["owner"].request("group_create", name="crew", join_policy=policy,
                                         members=[users[n].user_id for n in names[1:]])
    gid = reply["group_id"]
    for n in ("admin1", "admin2"):
        await users["owner"].request("group_set_role", group=gid, user=users[n].user_id, role="admin")
    return gid, users


def types(events, group):
    return [e["type"] for e in events if e.get("group") == group]


@pytest_twisted.ensureDeferred
async def test_create_lists_members_and_pushes_changes(running):
    alice, bob, carol = await crew(running, "alice", "bob", "carol")
    bob_pushes = Pushes(bob)
    gid = (await alice.request("group_create", name="  trip ", members=[bob.user_id]))["group_id"]
    created = await bob_pushes.next("group_created")
    assert created["group"] == gid and created["members"] == [alice.user_id, bob.user_id]
    info = (await bob.request("group_info", group=gid))["group"]
    assert (info["name"], info["owner"], info["role"], info["member_count"]) == ("trip", alice.user_id, "member", 2)
    assert (await carol.request("group_info", group=gid))["group"]["role"] is None
    await alice.request("group_invite", group=gid, user=carol.user_id)  # the owner adds directly
    joined = await bob_pushes.next("group_member_joined")
    assert (joined["user"], joined["by"], joined["via"]) == (carol.user_id, alice.user_id, "invite")
    members = (await carol.request("group_members", group=gid))["members"]
    assert [(m["user_id"], m["role"], m["online"]) for m in members] == [
        (alice.user_id, "owner", True), (bob.user_id, "member", True), (carol.user_id, "member", True)]
    mine = (await carol.request("groups"))["groups"]
    assert [(g["group"], g["role"], g["unread"]) for g in mine] == [(gid, "member", 0)]
    # Only friends can be added; bob and carol are not friends.
    assert await error_code(bob.request("group_invite", group=gid, user=carol.user_id)) == "exists"
    dave = await running.user("dave")
    assert await error_code(bob.request("group_invite", group=gid, user=dave.user_id)) == "not_friends"
    assert await error_code(alice.request("group_create", name="x", members=[dave.user_id])) == "not_friends"
    assert await error_code(alice.request("group_create", name=" ")) == "bad_request"
    assert await error_code(alice.request("group_create", name="x", members=["1"])) == "bad_request"
    assert await error_code(alice.request("group_info", group=424242)) == "not_found"
    # Carol sees the events from her join on, and nothing from before it.
    assert types((await carol.request("sync", since=0))["events"], gid) == ["group_member_joined"]
    assert types((await bob.request("sync", since=0))["events"], gid) == ["group_created", "group_member_joined"]


@pytest_twisted.ensureDeferred
async def test_permission_matrix(running):
    gid, u = await staffed_group(running)
    uid = {n: c.user_id for n, c in u.items()}
    refused = [
        ("mem1", "group_kick", dict(user=uid["mem2"])),
        ("admin1", "group_kick", dict(user=uid["admin2"])),
        ("admin1", "group_kick", dict(user=uid["owner"])),
        ("mem1", "group_update", dict(name="mine")),
        ("mem1", "group_approve", dict(user=uid["mem2"])),
        ("admin1", "group_set_role", dict(user=uid["mem1"], role="admin")),
        ("admin1", "group_transfer", dict(user=uid["admin1"])),
        ("mem1", "group_transfer", dict(user=uid["mem1"])),
        ("admin1", "group_disband", {}),
        ("mem1", "group_disband", {}),
        ("owner", "group_leave", {}),
    ]
    for actor, op, fields in refused:
        assert await error_code(u[actor].request(op, group=gid, **fields)) == "forbidden", (actor, op)
    assert await error_code(u["owner"].request("group_kick", group=gid, user=uid["owner"])) == "forbidden"
    # What is allowed, from the bottom up.
    assert (await u["admin1"].request("group_update", group=gid, announcement="be nice"))["changed"] == [
        "announcement"]
    await u["admin1"].request("group_kick", group=gid, user=uid["mem1"])
    await u["owner"].request("group_kick", group=gid, user=uid["admin2"])
    await u["mem2"].request("group_leave", group=gid)
    assert (await u["owner"].request("group_set_role", group=gid, user=uid["mem3"], role="admin"))["changed"]
    await u["owner"].request("group_transfer", group=gid, user=uid["admin1"])
    roles = {m["user_id"]: m["role"] for m in (await u["owner"].request("group_members", group=gid))["members"]}
    assert roles == {uid["owner"]: "admin", uid["admin1"]: "owner", uid["mem3"]: "admin"}
    assert await error_code(u["owner"].request("group_disband", group=gid)) == "forbidden"
    # The new owner may kick the old one, who is an admin now.
    await u["admin1"].request("group_kick", group=gid, user=uid["owner"])
    await u["admin1"].request("group_disband", group=gid)
    assert await error_code(u["mem3"].request("group_info", group=gid)) == "not_found"
    assert await error_code(u["mem3"].request("group_send", group=gid, body="hi", client_id="x")) == "not_found"
    assert (await u["mem3"].request("groups"))["groups"] == []
    events = types((await u["mem3"].request("sync", since=0))["events"], gid)
    assert events[0] == "group_created" and events[-1] == "group_disbanded"
    assert "group_owner_changed" in events and "group_updated" in events


@pytest_twisted.ensureDeferred
async def test_two_admins_at_once_have_exactly_one_effect(running):
    gid, u = await staffed_group(running)
    target = u["mem1"].user_id

    async def outcome(d):
        try:
            await d
            return "ok"
        except RemoteError as e:
            return e.code

    def at_once(*requests):
        return defer.gatherResults([defer.ensureDeferred(outcome(d)) for d in requests])

    kicks = await at_once(*(u[a].request("group_kick", group=gid, user=target) for a in ("admin1", "admin2")))
    assert sorted(kicks) == ["not_found", "ok"]
    # A member leaving while an admin kicks them: one of the two happens.
    mem2 = u["mem2"].user_id
    results = await at_once(u["mem2"].request("group_leave", group=gid),
                            u["admin1"].request("group_kick", group=gid, user=mem2))
    assert sorted(results) in (["not_found", "ok"], ["not_member", "ok"])
    # Two admins approving the same request.
    await u["mem2"].request("group_join_request", group=gid)
    results = await at_once(*(u[a].request("group_approve", group=gid, user=mem2) for a in ("admin1", "admin2")))
    assert sorted(results) == ["not_found", "ok"]
    members = [m["user_id"] for m in (await u["owner"].request("group_members", group=gid))["members"]]
    assert members.count(mem2) == 1
    # A join request approved by one admin and denied by the other at the same moment.
    await u["mem1"].request("group_join_request", group=gid, greeting="let me back")
    requests = (await u["admin1"].request("group_requests", group=gid))["requests"]
    assert [(r["user_id"], r["greeting"]) for r in requests] == [(target, "let me back")]
    results = await at_once(u["admin1"].request("group_approve", group=gid, user=target),
                            u["admin2"].request("group_deny", group=gid, user=target))
    assert sorted(results) == ["not_found", "ok"]
    in_group = target in {m["user_id"] for m in (await u["owner"].request("group_members", group=gid))["members"]}
    assert in_group == (results[0] == "ok")
    assert (await u["admin1"].request("group_requests", group=gid))["requests"] == []


@pytest_twisted.ensureDeferred
async def test_join_policies_requests_and_invites(running):
    gid, u = await staffed_group(running)
    stranger = await running.user("stranger")
    admin_pushes = Pushes(u["admin1"])
    assert await error_code(stranger.request("group_join", group=gid)) == "forbidden"
    assert (await stranger.request("group_join_request", group=gid))["status"] == "pending"
    asked = await admin_pushes.next("group_join_requested")
    assert (asked["group"], asked["user"], asked["by"]) == (gid, stranger.user_id, None)
    await u["admin2"].request("group_deny", group=gid, user=stranger.user_id)
    assert (await admin_pushes.next("group_join_denied"))["user"] == stranger.user_id
    assert types((await stranger.request("sync", since=0))["events"], gid) == [
        "group_join_requested", "group_join_denied"]
    # A plain member's invite waits for an admin in an 'approval' group.
    await befriend(u["mem1"], stranger)
    assert (await u["mem1"].request("group_invite", group=gid, user=stranger.user_id))["status"] == "pending"
    assert (await admin_pushes.next("group_join_requested"))["by"] == u["mem1"].user_id
    await u["admin2"].request("group_approve", group=gid, user=stranger.user_id)
    joined = await admin_pushes.next("group_member_joined")
    assert (joined["user"], joined["via"]) == (stranger.user_id, "approve")
    await u["owner"].request("group_update", group=gid, join_policy="open")
    walker = await running.user("walker")
    await walker.request("group_join", group=gid)
    assert await error_code(walker.request("group_join", group=gid)) == "exists"
    assert (await walker.request("group_info", group=gid))["group"]["role"] == "member"


@pytest_twisted.ensureDeferred
async def test_kicked_member_receives_and_reads_nothing_after(running):
    alice, bob, carol = await crew(running, "alice", "bob", "carol")
    gid = (await alice.request("group_create", name="g", members=[bob.user_id, carol.user_id]))["group_id"]
    before = await alice.request("group_send", group=gid, body="before", client_id="k1")
    bob_pushes = Pushes(bob)
    await alice.request("group_kick", group=gid, user=bob.user_id)
    assert (await bob_pushes.next("group_member_kicked"))["user"] == bob.user_id
    after = await alice.request("group_send", group=gid, body="after", client_id="k2")
    await carol.request("group_send", group=gid, body="after, too", client_id="k3")
    await quiet(0.1)
    assert bob_pushes.of("group_message") == []
    assert await error_code(bob.request("group_history", group=gid)) == "not_member"
    assert await error_code(bob.request("group_send", group=gid, body="hey", client_id="b")) == "not_member"
    assert await error_code(bob.request("group_mark_read", group=gid, msg_id=after["msg_id"])) == "not_member"
    synced = [e for e in (await bob.request("sync", since=0))["events"] if e.get("group") == gid]
    assert [(e["type"], e.get("body")) for e in synced] == [
        ("group_created", None), ("group_message", "before"), ("group_member_kicked", None)]
    assert synced[1]["msg_id"] == before["msg_id"]
    # Rejoining later shows what is new from then on, not what was missed.
    await alice.request("group_invite", group=gid, user=bob.user_id)
    history = (await bob.request("group_history", group=gid))["messages"]
    assert history == []


@pytest_twisted.ensureDeferred
async def test_group_messages_push_sync_history_and_read_markers(running):
    alice, bob, carol = await crew(running, "alice", "bob", "carol")
    gid = (await alice.request("group_create", name="g", members=[bob.user_id, carol.user_id]))["group_id"]
    bob_phone = await running.user("bob", device="phone", register=False)
    pushes = {name: Pushes(c) for name, c in (("bob", bob), ("phone", bob_phone), ("carol", carol),
                                               ("alice", alice))}
    alice_tablet = await running.user("alice", device="tablet", register=False)
    tablet = Pushes(alice_tablet)
    first = await alice.request("group_send", group=gid, body=f"hi @{bob.user_id}", client_id="m1")
    assert first["seq"] == 1 and first["msg_id"] == first["pos"] and first["duplicate"] is False
    for name in ("bob", "phone"):
        push = await pushes[name].next("group_message")
        assert push == {**push, "group": gid, "msg_id": first["msg_id"], "from": alice.user_id,
                        "body": f"hi @{bob.user_id}", "seq": 1, "mentions": [bob.user_id], "mentioned": True}
    carol_push = await pushes["carol"].next("group_message")
    assert carol_push["mentions"] == [bob.user_id] and "mentioned" not in carol_push
    assert (await tablet.next("group_message"))["msg_id"] == first["msg_id"]  # the sender's other device
    assert pushes["alice"].of("group_message") == []
    second = await carol.request("group_send", group=gid, body="@999 is nobody", client_id="m1")
    assert second["seq"] == 2 and second["duplicate"] is False  # client ids are per sender
    mine = {g["group"]: g["unread"] for g in (await bob.request("groups"))["groups"]}
    assert mine == {gid: 2}
    assert (await bob.request("group_mark_read", group=gid, msg_id=first["msg_id"]))["moved"] is True
    assert (await bob.request("group_mark_read", group=gid, msg_id=first["msg_id"]))["moved"] is False
    assert (await pushes["phone"].next("group_read"))["msg_id"] == first["msg_id"]
    assert {g["group"]: g["unread"] for g in (await bob.request("groups"))["groups"]} == {gid: 1}
    assert await error_code(bob.request("group_mark_read", group=gid, msg_id=10 ** 9)) == "not_found"
    synced = [e for e in (await bob.request("sync", since=0))["events"] if e["type"] == "group_message"]
    assert [(e["seq"], e.get("mentioned", False)) for e in synced] == [(1, True), (2, False)]
    page = await bob.request("group_history", group=gid, limit=1)
    assert [m["seq"] for m in page["messages"]] == [2] and page["more"]
    page = await bob.request("group_history", group=gid, before=page["messages"][0]["msg_id"])
    assert [m["body"] for m in page["messages"]] == [f"hi @{bob.user_id}"] and not page["more"]
    for fields, code in [(dict(body="  ", client_id="e"), "empty_body"),
                         (dict(body="x" * 5000, client_id="e"), "too_large"),
                         (dict(body="x", client_id=""), "bad_request")]:
        assert await error_code(alice.request("group_send", group=gid, **fields)) == code


@pytest_twisted.ensureDeferred
async def test_resend_is_idempotent_and_kept_apart_from_direct_messages(running):
    alice, bob = await crew(running, "alice", "bob")
    gid = (await alice.request("group_create", name="g", members=[bob.user_id]))["group_id"]
    first = await alice.request("group_send", group=gid, body="once", client_id="same")
    again = await alice.request("group_send", group=gid, body="once", client_id="same")
    assert (again["msg_id"], again["seq"], again["duplicate"]) == (first["msg_id"], 1, True)
    replies = await defer.gatherResults([
        alice.request("group_send", group=gid, body="piped", client_id="piped") for _ in range(5)])
    assert len({r["msg_id"] for r in replies}) == 1 and sum(not r["duplicate"] for r in replies) == 1
    direct = await alice.request("send", to=bob.user_id, body="1:1", client_id="same")
    assert direct["duplicate"] is False
    history = (await bob.request("group_history", group=gid))["messages"]
    assert [(m["seq"], m["body"]) for m in history] == [(2, "piped"), (1, "once")]


@pytest_twisted.ensureDeferred
async def test_offline_member_catches_up_on_1000_messages(running):
    alice, bob = await crew(running, "alice", "bob")
    gid = (await alice.request("group_create", name="g", members=[bob.user_id]))["group_id"]
    start = (await bob.request("sync", since=0))["next"]
    await bob.close()
    before = running.server.writer.batches
    replies = await defer.gatherResults([
        alice.request("group_send", group=gid, body=f"m{i}", client_id=f"c{i}") for i in range(1000)])
    assert [r["seq"] for r in replies] == list(range(1, 1001))
    assert running.server.writer.batches - before < 50
    bob = await running.user("bob", register=False)
    events, pages, _ = await sync_all(bob, start, 300)
    got = [e["body"] for e in events if e["type"] == "group_message"]
    assert got == [f"m{i}" for i in range(1000)] and pages == 4
    assert {g["group"]: g["unread"] for g in (await bob.request("groups"))["groups"]} == {gid: 1000}


@pytest_twisted.ensureDeferred
async def test_sync_pages_merge_several_groups_and_direct_messages_in_order(running):
    alice, bob = await crew(running, "alice", "bob")
    groups = [(await alice.request("group_create", name=f"g{i}", members=[bob.user_id]))["group_id"]
              for i in range(3)]
    start = (await bob.request("sync", since=0))["next"]
    quiet_group = groups.pop()  # nothing new in it: sync does not even look
    expected = []
    for i in range(20):
        if i % 5 == 4:
            reply = await alice.request("send", to=bob.user_id, body=f"d{i}", client_id=f"d{i}")
        else:
            reply = await alice.request("group_send", group=groups[i % 2], body=f"g{i}", client_id=f"g{i}")
        expected.append(reply["pos"])
    events, pages, _ = await sync_all(bob, start, 3)
    assert [e["pos"] for e in events] == expected and pages == 7
    assert all(e.get("group") != quiet_group for e in events)


@pytest_twisted.ensureDeferred
async def test_groups_are_bounded_by_max_group_members(running):
    running.server.config.max_group_members = 3
    alice, bob, carol, dave = await crew(running, "alice", "bob", "carol", "dave")
    everyone = [bob.user_id, carol.user_id, dave.user_id]
    assert await error_code(alice.request("group_create", name="big", members=everyone)) == "too_large"
    gid = (await alice.request("group_create", name="g", members=everyone[:2], join_policy="open"))["group_id"]
    assert await error_code(alice.request("group_invite", group=gid, user=dave.user_id)) == "too_large"
    assert await error_code(dave.request("group_join", group=gid)) == "too_large"
    await bob.request("group_leave", group=gid)
    await dave.request("group_join", group=gid)


@pytest_twisted.ensureDeferred
async def test_replies_of_group_changes_carry_the_pos_of_my_newest_entry(running):
    gid, users = await staffed_group(running)
    owner, mem1 = users["owner"], users["mem1"]
    update = await owner.request("group_update", group=gid, announcement="read me")
    assert update["changed"] == ["announcement"]
    events = (await owner.request("sync", since=update["pos"] - 1))["events"]
    assert (events[0]["pos"], events[0]["type"]) == (update["pos"], "group_updated")
    sent = await mem1.request("group_send", group=gid, body="hello", client_id="c1")
    read = await owner.request("group_mark_read", group=gid, msg_id=sent["msg_id"])
    assert read["moved"] and read["pos"] > sent["pos"]
    again = await owner.request("group_mark_read", group=gid, msg_id=sent["msg_id"])
    assert again == {"re": again["re"], "ok": True, "moved": False}  # nothing written: no pos
