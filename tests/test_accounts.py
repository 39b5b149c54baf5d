"""Accounts over real loopback sockets, on SQLite and MySQL: register, login, resume, profile, sessions."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from imclient.protocol import RemoteError
from helpers import error_code


@pytest_twisted.ensureDeferred
async def test_hello_names_versions_and_limits(running):
    c = await running.client()
    info = c.server_info
    assert info["ok"] and info["protocol"] == 1 and info["server"] == "parley"
    assert info["limits"]["max_frame"] == running.server.config.max_frame
    assert await error_code(c.request("hello", protocol=99)) == "bad_request"
    assert (await c.request("ping"))["ts"] > 0


@pytest_twisted.ensureDeferred
async def test_register_login_resume(running):
    c = await running.client()
    uid = (await c.register("Alice", "correct horse", nickname="Al"))["user_id"]
    reply = await c.login("alice", "correct horse", device="laptop")
    assert reply["user_id"] == uid and len(reply["token"]) > 30
    profile = (await c.request("profile_get"))["profile"]
    assert profile["username"] == "alice" and profile["nickname"] == "Al"

    c2 = await running.client()
    resumed = await c2.resume(reply["token"])
    assert resumed["user_id"] == uid and resumed["device"] == "laptop"
    assert resumed["session"] == reply["session"]
    assert (await c2.request("profile_get"))["profile"]["user_id"] == uid


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_look_alike(running):
    c = await running.client()
    await c.register("bob", "correct horse")
    with pytest.raises(RemoteError) as wrong:
        await c.login("bob", "wrong horse!")
    with pytest.raises(RemoteError) as unknown:
        await c.login("nobody", "wrong horse!")
    assert wrong.value.code == unknown.value.code == "bad_credentials"
    assert wrong.value.message == unknown.value.message
    assert await error_code(c.resume("not-a-token")) == "bad_credentials"


@pytest_twisted.ensureDeferred
async def test_duplicate_username_and_bad_fields(running):
    c = await running.client()
    await c.register("carol", "correct horse")
    assert await error_code(c.register("CAROL", "other password")) == "exists"
    assert await error_code(c.register("x", "correct horse")) == "bad_request"
    assert await error_code(c.register("dave", "short")) == "bad_request"
    assert await error_code(c.request("register", username="dave", password=12345678)) == "bad_request"


@pytest_twisted.ensureDeferred
async def test_ops_before_login_are_refused(running):
    c = await running.client()
    for op in ("profile_get", "sessions", "logout", "user_search"):
        assert await error_code(c.request(op)) == "not_authenticated"
    assert await error_code(c.request("no_such_op")) == "unknown_op"


@pytest_twisted.ensureDeferred
async def test_malformed_frames_keep_the_connection(running):
    c = await running.client()
    replies = []
    c.subscribe(replies.append)
    c.send_raw(b'{"op": "ping", "id": ')
    c.send_raw(b'{"op": "\xff\xfe"}')
    c.send_raw(b"[]")
    pong = await c.request("ping")
    assert pong["ok"]
    assert [r["error"]["code"] for r in replies] == ["bad_request"] * 3


@pytest_twisted.ensureDeferred
async def test_profile_set_and_search(running):
    alice = await running.user("alice")
    await running.user("alfred")
    await alice.request("profile_set", nickname="Queen A", age=30, email="a@example.org")
    assert await error_code(alice.request("profile_set", age=-3)) == "bad_request"
    assert await error_code(alice.request("profile_set")) == "bad_request"
    mine = (await alice.request("profile_get"))["profile"]
    assert mine["age"] == 30 and mine["email"] == "a@example.org"
    found = (await alice.request("user_search", query="al"))["users"]
    assert {u["username"] for u in found} == {"alice", "alfred"}
    other = [u for u in found if u["username"] == "alfred"][0]["user_id"]
    public = (await alice.request("profile_get", user=other))["profile"]
    assert "email" not in public and "age" not in public
    # LIKE wildcards in the query are literal
    assert (await alice.request("user_search", query="%"))["users"] == []
    assert await error_code(alice.request("profile_get", user=999999)) == "not_found"


@pytest_twisted.ensureDeferred
async def test_sessions_revoke_and_logout(running):
    phone = await running.user("erin", device="phone")
    laptop = await running.user("erin", device="laptop", register=False)
    listed = (await laptop.request("sessions"))["sessions"]
    assert {s["device"] for s in listed} == {"phone", "laptop"}
    assert [s["current"] for s in listed] == [False, True]
    pushes = []
    phone.subscribe(pushes.append)
    phone_session = [s for s in listed if s["device"] == "phone"][0]["session"]
    await laptop.request("session_revoke", session=phone_session)
    await phone.lost
    assert pushes and pushes[0]["op"] == "session_revoked"
    c = await running.client()
    assert await error_code(c.resume(phone.token)) == "bad_credentials"
    assert await error_code(laptop.request("session_revoke", session=phone_session)) == "not_found"
    await laptop.logout()
    assert await error_code(laptop.request("sessions")) == "not_authenticated"
    assert await error_code(c.resume(laptop.token)) == "bad_credentials"


@pytest_twisted.ensureDeferred
async def test_change_password_ends_other_sessions(running):
    a = await running.user("frank")
    b = await running.user("frank", register=False)
    assert await error_code(a.request("change_password", old_password="wrong one",
                                      new_password="new password")) == "bad_credentials"
    reply = await a.request("change_password", old_password="correct horse", new_password="new password")
    assert reply["sessions_ended"] == 1
    await b.lost
    c = await running.client()
    assert await error_code(c.login("frank", "correct horse")) == "bad_credentials"
    assert (await c.login("frank", "new password"))["user_id"] == a.user_id


@pytest_twisted.ensureDeferred
async def test_max_connections_per_user(running):
    running.server.realm.max_connections = 2
    await running.user("gina")
    await running.user("gina", register=False)
    c = await running.client()
    assert await error_code(c.login("gina", "correct horse")) == "too_many_connections"


async def settle(d, clock, step=10.0, tries=500):
    """Advance the fake clock until ``d`` fires (its reply may also wait on real threads)."""
    for _ in range(tries):
        if d.called:
            break
        clock.advance(step)
        await task.deferLater(reactor, 0.01, lambda: None)
    return await error_code(d)


@pytest_twisted.ensureDeferred
async def test_repeated_failures_are_slowed_then_refused(running):
    clock = task.Clock()
    server = running.server
    server.throttle.clock = clock
    server.clock = clock  # failure replies are held back on this clock
    c = await running.client()
    await c.register("hank", "correct horse")
    for _ in range(3):
        assert await error_code(c.login("hank", "bad password")) == "bad_credentials"
    slowed = c.login("hank", "bad password")
    await task.deferLater(reactor, 0.3, lambda: None)
    assert not slowed.called  # held back until the clock moves
    assert await settle(slowed, clock) == "bad_credentials"
    for _ in range(6):
        assert await settle(c.login("hank", "bad password"), clock) == "bad_credentials"
    # Ten failures: now refused outright, even with the right password, until the window passes.
    assert await error_code(c.login("hank", "correct horse")) == "rate_limited"
    clock.advance(901)
    assert (await c.login("hank", "correct horse"))["user_id"]


@pytest_twisted.ensureDeferred
async def test_restart_keeps_accounts(store, tmp_path):
    from conftest import RunningServer, make_server

    first = RunningServer(make_server(store), tmp_path)
    first.listen()
    c = await first.client()
    uid = (await c.register("ivan", "correct horse"))["user_id"]
    token = (await c.login("ivan", "correct horse"))["token"]
    await first.stop()

    second = RunningServer(make_server(store), tmp_path)
    second.listen()
    try:
        c = await second.client()
        assert (await c.login("ivan", "correct horse"))["user_id"] == uid
        c2 = await second.client()
        assert (await c2.resume(token))["user_id"] == uid
    finally:
        await second.stop()
