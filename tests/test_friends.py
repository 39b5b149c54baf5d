"""Friends and presence over real sockets, on SQLite and MySQL."""
import pytest_twisted
from twisted.internet import defer

from imserver.handlers import presence

from helpers import Pushes, befriend, error_code, quiet


@pytest_twisted.ensureDeferred
async def test_request_accept_list_remove(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    bob_pushes = Pushes(bob)
    reply = await alice.request("friend_request", user=bob.user_id, greeting="hello bob")
    assert reply["status"] == "pending"
    push = await bob_pushes.next("friend_request")
    assert push["from"] == alice.user_id and push["greeting"] == "hello bob" and push["pos"] > 0
    reqs = await bob.request("friend_requests")
    assert [r["user_id"] for r in reqs["incoming"]] == [alice.user_id] and reqs["outgoing"] == []
    assert [r["user_id"] for r in (await alice.request("friend_requests"))["outgoing"]] == [bob.user_id]
    alice_pushes = Pushes(alice)
    await bob.request("friend_accept", user=alice.user_id)
    added = await alice_pushes.next("friend_added")
    assert added["user"] == bob.user_id
    friends = (await alice.request("friends"))["friends"]
    assert [(f["user_id"], f["online"]) for f in friends] == [(bob.user_id, True)]
    assert (await bob.request("friend_requests"))["incoming"] == []
    await alice.request("friend_alias", user=bob.user_id, alias="Bobby")
    assert (await alice.request("friends"))["friends"][0]["alias"] == "Bobby"
    assert (await bob.request("friends"))["friends"][0]["alias"] == ""
    await alice.request("friend_remove", user=bob.user_id)
    assert (await alice.request("friends"))["friends"] == []
    assert (await bob.request("friends"))["friends"] == []
    assert (await bob_pushes.next("friend_removed"))["user"] == alice.user_id
    assert await error_code(alice.request("friend_remove", user=bob.user_id)) == "not_found"


@pytest_twisted.ensureDeferred
async def test_request_errors(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    assert await error_code(alice.request("friend_request", user=alice.user_id)) == "bad_request"
    assert await error_code(alice.request("friend_request", user=99999)) == "not_found"
    assert await error_code(alice.request("friend_accept", user=bob.user_id)) == "not_found"
    assert await error_code(alice.request("friend_reject", user=bob.user_id)) == "not_found"
    assert await error_code(alice.request("friend_request", user="bob")) == "bad_request"
    await befriend(alice, bob)
    assert await error_code(alice.request("friend_request", user=bob.user_id)) == "exists"
    assert await error_code(alice.request("friend_alias", user=99999, alias="x")) == "not_found"


@pytest_twisted.ensureDeferred
async def test_crossed_requests_become_friends(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    await alice.request("friend_request", user=bob.user_id)
    assert (await bob.request("friend_request", user=alice.user_id))["status"] == "accepted"
    assert [f["user_id"] for f in (await alice.request("friends"))["friends"]] == [bob.user_id]


@pytest_twisted.ensureDeferred
async def test_reject_is_not_told_to_requester(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    alice_pushes = Pushes(alice)
    await alice.request("friend_request", user=bob.user_id)
    await bob.request("friend_reject", user=alice.user_id)
    await quiet()
    assert alice_pushes.of("friend_rejected") == []
    assert (await bob.request("friend_requests"))["incoming"] == []


@pytest_twisted.ensureDeferred
async def test_offline_request_is_pushed_at_next_login(running):
    alice = await running.user("alice")
    bob = await running.user("bob")
    await bob.close()
    await alice.request("friend_request", user=bob.user_id, greeting="while you were out")
    bob2 = await running.client()
    pushes = Pushes(bob2)
    await bob2.login("bob", "correct horse")
    push = await pushes.next("friend_request")
    assert push["from"] == alice.user_id and push["greeting"] == "while you were out"


@pytest_twisted.ensureDeferred
async def test_block_ends_friendship_and_refuses_requests_and_messages(running):
    alice, mallory = await running.user("alice"), await running.user("mallory")
    await befriend(alice, mallory)
    await alice.request("block", user=mallory.user_id)
    assert (await alice.request("blocked"))["users"] == [mallory.user_id]
    assert (await mallory.request("friends"))["friends"] == []
    # Mallory learns no more than any non-friend would from sending a message.
    assert await error_code(mallory.request("send", to=alice.user_id, body="hi", client_id="m1")) == "not_friends"
    assert await error_code(mallory.request("friend_request", user=alice.user_id)) == "forbidden"
    await alice.request("unblock", user=mallory.user_id)
    assert (await mallory.request("friend_request", user=alice.user_id))["status"] == "pending"
    assert await error_code(alice.request("unblock", user=mallory.user_id)) == "not_found"


@pytest_twisted.ensureDeferred
async def test_presence_on_first_device_and_last_device_only(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    await befriend(alice, bob)
    await bob.close()
    await quiet(0.3)  # bob's own login/logout broadcasts may still be on their way to alice
    pushes = Pushes(alice)
    phone = await running.user("bob", device="phone", register=False)
    first = await pushes.next("presence")
    assert first["user"] == bob.user_id and first["online"] is True
    laptop = await running.user("bob", device="laptop", register=False)
    await laptop.close()
    await quiet(0.2)
    assert len(pushes.of("presence")) == 1  # second device on and off: nothing more
    await phone.request("presence_set", status="busy", text="in a meeting")
    busy = await pushes.next("presence")
    assert busy["status"] == "busy" and busy["text"] == "in a meeting"
    friends = (await alice.request("friends"))["friends"]
    assert friends[0]["status"] == "busy"
    await phone.close()
    gone = await pushes.next("presence")
    assert gone["online"] is False and gone["status"] == "offline"
    assert await error_code(alice.request("presence_set", status="sleeping")) == "bad_request"


@pytest_twisted.ensureDeferred
async def test_the_blocker_cannot_befriend_the_blocked_user_through_the_block(running):
    alice, mallory = await running.user("alice"), await running.user("mallory")
    await alice.request("block", user=mallory.user_id)
    # A request from Alice would let Mallory accept it and message Alice while still blocked.
    assert await error_code(alice.request("friend_request", user=mallory.user_id)) == "forbidden"
    assert (await mallory.request("friend_requests"))["incoming"] == []
    assert await error_code(mallory.request("friend_accept", user=alice.user_id)) == "not_found"
    assert await error_code(mallory.request("send", to=alice.user_id, body="hi", client_id="m1")) == "not_friends"
    await alice.request("unblock", user=mallory.user_id)
    assert (await alice.request("friend_request", user=mallory.user_id))["status"] == "pending"


@pytest_twisted.ensureDeferred
async def test_a_rejected_request_leaves_the_requesters_outgoing_list_as_a_block_does(running):
    alice, bob, carol = await running.user("alice"), await running.user("bob"), await running.user("carol")
    await alice.request("friend_request", user=bob.user_id)
    await alice.request("friend_request", user=carol.user_id)
    await bob.request("friend_reject", user=alice.user_id)
    await carol.request("block", user=alice.user_id)
    # Alice sees the same thing both times: the request is simply gone.
    assert (await alice.request("friend_requests"))["outgoing"] == []


@pytest_twisted.ensureDeferred
async def test_an_alias_reaches_my_other_devices_and_my_stream_only(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    await befriend(alice, bob)
    phone = await running.user("alice", device="phone", register=False)
    phone_pushes, bob_pushes = Pushes(phone), Pushes(bob)
    since = (await phone.request("sync", since=0, limit=1000))["next"]
    await alice.request("friend_alias", user=bob.user_id, alias="Bobby")
    push = await phone_pushes.next("friend_alias")
    assert push["user"] == bob.user_id and push["alias"] == "Bobby"
    events = (await phone.request("sync", since=since))["events"]
    assert [(e["type"], e["alias"]) for e in events] == [("friend_alias", "Bobby")]
    await quiet()
    assert bob_pushes.of("friend_alias") == []
    assert (await bob.request("sync", since=since))["events"] == []


class _PresenceServer:
    """Just what the Broadcaster uses: reads it answers by hand, a status to read, and the
    effects it announces."""

    def __init__(self):
        self.reads, self.pushed, self.state = [], [], {"online": True, "status": "online", "text": ""}
        self.presence = self

    def read(self, desc, fn, *args):
        d = defer.Deferred()
        self.reads.append(d)
        return d

    def status(self, user_id):
        return defer.succeed(dict(self.state))

    def announce(self, effects, origin=None):
        for effect in effects:
            self.pushed.extend((user_id, effect.payload["online"]) for user_id in effect.users)


def test_a_presence_broadcast_that_finishes_late_still_sends_the_current_status():
    server = _PresenceServer()
    broadcast = presence.Broadcaster(server)
    broadcast(1)  # a device came online...
    server.state = {"online": False, "status": "offline", "text": ""}
    broadcast(1)  # ...and the last one left before the first friend list was read
    first, second = server.reads
    second.callback([2])
    first.callback([2])  # the first read finishes last
    assert server.pushed == [(2, False), (2, False)]


@pytest_twisted.ensureDeferred
async def test_replies_of_friend_changes_carry_the_pos_of_my_newest_entry(running):
    alice, bob = await running.user("alice"), await running.user("bob")
    request = await alice.request("friend_request", user=bob.user_id, greeting="hi")
    accept = await bob.request("friend_accept", user=alice.user_id)
    alias = await alice.request("friend_alias", user=bob.user_id, alias="B")
    for client, reply, last_type in ((alice, request, "friend_request"), (bob, accept, "friend_added"),
                                     (alice, alias, "friend_alias")):
        events = (await client.request("sync", since=reply["pos"] - 1))["events"]
        assert [(e["pos"], e["type"]) for e in events][:1] == [(reply["pos"], last_type)]
    # A refused change writes nothing to the stream.
    mark = (await alice.request("sync", since=0))["next"]
    assert await error_code(alice.request("unblock", user=bob.user_id)) == "not_found"
    assert (await alice.request("sync", since=mark))["events"] == []
