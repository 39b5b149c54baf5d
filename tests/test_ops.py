"""The Client's op methods against a real loopback server: group ops, group sends through the
outbox, and group messages and events from pushes, stored locally and emitted as records."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from imclient.account import Account
from imclient.client import Client
from imclient.events import GroupEvent, GroupMessageEvent, MessageState
from imclient.protocol import RemoteError
from test_client import FAST, Recorder, account, sqlite_only, wait_until


async def alice_and_bob(running, tmp_path):
    """alice as a Client, bob as a raw protocol; friends."""
    bob = await running.user("bob")
    await (await running.client()).register("alice", "correct horse")
    client = Client(reactor, account(tmp_path, "alice", running.port), password="correct horse",
                    retry=FAST)
    await client.start()
    await bob.request("friend_request", user=client.me)
    await client.friend_accept(bob.user_id)
    return client, bob


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_group_messages_and_events_are_stored_and_reported(running, tmp_path):
    client, bob = await alice_and_bob(running, tmp_path)
    seen = Recorder(client)
    group = (await client.group_create("team", [bob.user_id]))["group_id"]
    # Synced past the reply's pos: the group is stored and its event reported already.
    assert (await client.store.group(group))["role"] == "owner"
    assert [(e.type, e.group) for e in seen.of(GroupEvent)] == [("group_created", group)]
    assert (await client.group_info(group))["group"]["role"] == "owner"
    # bob posts: a push to alice, kept and reported once.
    await bob.request("group_send", group=group, body=f"hi @{client.me}", client_id="b1")
    await wait_until(lambda: seen.of(GroupMessageEvent), what="bob's group message")
    [got] = seen.of("group_message")
    assert (got.group, got.sender, got.body, got.mentioned) == (group, bob.user_id,
                                                                f"hi @{client.me}", True)
    # alice posts through the outbox: acked, stored as hers, pushed to bob.
    acked = await client.group_send(group, "hello team", client_id="a1")
    assert (acked.state, acked.group) == ("acked", group)
    assert [e.state for e in seen.of(MessageState) if e.client_id == "a1"] == [
        "queued", "sent", "acked"]
    local = await client.store.group_history(group)
    assert [(m["from"], m["body"]) for m in local] == [(client.me, "hello team"),
                                                       (bob.user_id, f"hi @{client.me}")]
    assert await client.message_state("a1", group) == "acked"
    # The same client id again is the same message (the server dedupes; one row here).
    again = await client.group_send(group, "hello team", client_id="a1")
    assert again.msg_id == acked.msg_id and again.duplicate
    # bob renames the group: a group event, and the stored group follows it.
    await client.group_set_role(group, bob.user_id, "admin")
    assert [e.data["role"] for e in seen.of("group_role_changed")] == ["admin"]
    await bob.request("group_update", group=group, name="the team")
    await wait_until(lambda: [e for e in seen.of(GroupEvent) if e.name == "group_updated"],
                     what="group_updated")
    assert (await client.store.group(group))["name"] == "the team"
    listed = await client.groups()
    assert [(g["group"], g["name"], g["role"]) for g in listed] == [(group, "the team", "owner")]
    page = await client.group_history(group, limit=10)
    assert [m["body"] for m in page["messages"]] == ["hello team", f"hi @{client.me}"]
    members = (await client.group_members(group))["members"]
    assert sorted(m["user_id"] for m in members) == sorted([client.me, bob.user_id])
    with pytest.raises(RemoteError) as info:
        await client.group_leave(group)  # the owner may not leave
    assert info.value.code == "forbidden"
    await client.close()


@sqlite_only
@pytest_twisted.ensureDeferred
async def test_group_messages_while_away_come_by_sync_and_offline_reads_are_local(running, tmp_path):
    client, bob = await alice_and_bob(running, tmp_path)
    first = Recorder(client)
    group = (await client.group_create("team", [bob.user_id]))["group_id"]
    await client.close()
    for i in range(3):
        await bob.request("group_send", group=group, body=f"away {i}", client_id=f"w{i}")
    again = Client(reactor, Account.load(client.account.home), retry=FAST)
    seen = Recorder(again)
    await again.start()
    assert [e.body for e in seen.of(GroupMessageEvent)] == ["away 0", "away 1", "away 2"]
    # Each group event reaches the program once: group_created came with the create's reply.
    assert [e.type for e in first.of(GroupEvent)] == ["group_created"]
    assert seen.of(GroupEvent) == []
    assert (await again.store.group(group))["role"] == "owner"
    await again.stop()
    offline = await again.group_history(group, limit=2)
    assert [m["body"] for m in offline["messages"]] == ["away 2", "away 1"]
    await again.store.close()
