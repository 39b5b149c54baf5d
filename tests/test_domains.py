"""A server runs exactly the domains it is given: their ops, batch kinds, stream sources, login
hooks and start-up state, on real loopback connections."""
import pytest
import pytest_twisted
from twisted.internet import defer

from conftest import RunningServer, make_server
from helpers import Pushes, befriend, error_code, quiet
from imserver import domains
from imserver.dispatch import Str
from imserver.domain import Domain
from imserver.effects import Direct, Ephemeral, Reply
from imserver.handlers import accounts, core, groups, stream


async def _running(store, tmp_path, domain_list):
    rs = RunningServer(make_server(store, domains=domain_list), tmp_path)
    rs.listen()
    return rs


@pytest_twisted.ensureDeferred
async def test_a_server_without_a_domain_has_none_of_its_ops_batches_or_sources(store, tmp_path):
    rs = await _running(store, tmp_path, (core.domain, accounts.domain, stream.domain))
    try:
        alice = await rs.user("alice")
        assert await error_code(alice.request("send", to=2, body="hi", client_id="c")) == "unknown_op"
        assert await error_code(alice.request("group_create", name="g")) == "unknown_op"
        assert "group_send" not in rs.server.writer.kinds and "send" not in rs.server.writer.kinds
        assert groups.domain.sources[0] not in rs.server.stream_sources
        assert (await alice.request("sync", since=0))["events"] == []
    finally:
        await rs.stop()


def test_the_default_list_holds_every_domain_once():
    names = [d.name for d in domains.DEFAULT]
    assert len(names) == len(set(names))
    assert {"core", "accounts", "stream", "friends", "presence", "messages", "groups", "files",
            "square"} <= set(names)


def test_an_op_declared_by_two_domains_is_refused_when_the_server_is_built(store):
    twin = Domain("twin")
    twin.op("ping", auth=False)(lambda ctx: {})
    with pytest.raises(ValueError, match="'ping' registered twice"):
        make_server(store, domains=(core.domain, twin))


def _greeter():
    """A small domain as a plug-in would write one: an op with effects, a login hook, state."""
    greeter = Domain("greeter")
    seen = []

    @greeter.on_start
    def start(server):
        return {"greeting": "welcome"}

    @greeter.on_login
    async def greet(server, user, peer, device):
        seen.append((user.user_id, peer.host, device))
        return [Direct({"op": "greeting", "text": server.state["greeter"]["greeting"]})]

    @greeter.op("wave", to=Str())
    def wave(ctx, to):
        return Reply({"waved": True}, [Ephemeral((int(to),), {"op": "wave", "from": ctx.user.user_id})])

    return greeter, seen


@pytest_twisted.ensureDeferred
async def test_a_new_domain_plugs_in_with_its_ops_login_hooks_and_state(store, tmp_path):
    greeter, seen = _greeter()
    rs = await _running(store, tmp_path, domains.DEFAULT + (greeter,))
    try:
        alice = await rs.user("alice")
        phone = await rs.client()
        await phone.register("bob", "correct horse")
        phone_pushes = Pushes(phone)
        reply = await phone.login("bob", "correct horse", device="phone")
        greeting = await phone_pushes.next("greeting")
        assert greeting["text"] == "welcome"
        assert seen[-1] == (reply["user_id"], "127.0.0.1", "phone")
        laptop = await rs.user("bob", device="laptop", register=False)
        await quiet()
        assert len(phone_pushes.of("greeting")) == 1  # the hook's Direct went to the new login only
        await befriend(alice, laptop)
        wave = await alice.request("wave", to=str(reply["user_id"]))
        assert wave["waved"] is True
        assert (await phone_pushes.next("wave"))["from"] == alice.user_id
    finally:
        await rs.stop()


@pytest_twisted.ensureDeferred
async def test_a_failing_or_plain_login_hook_neither_fails_the_login_nor_stops_the_others(store, tmp_path):
    ran = []
    hooks = Domain("hooks")

    @hooks.on_login
    def plain(server, user, peer, device):  # not an async def
        ran.append("plain")
        return [Direct({"op": "plain_hello"})]

    @hooks.on_login
    async def broken(server, user, peer, device):
        raise RuntimeError("a bug in a plug-in")

    @hooks.on_login
    async def last(server, user, peer, device):
        ran.append("last")
        return []

    rs = await _running(store, tmp_path, domains.DEFAULT + (hooks,))
    try:
        alice = await rs.client()
        await alice.register("alice", "correct horse")
        pushes = Pushes(alice)
        reply = await alice.login("alice", "correct horse")
        assert reply["user_id"] and (await pushes.next("plain_hello"))
        assert ran == ["plain", "last"]
    finally:
        await rs.stop()


@pytest_twisted.ensureDeferred
async def test_a_login_hook_that_finishes_after_logout_tells_nobody(store, tmp_path):
    release = defer.Deferred()
    slow = Domain("slow")

    @slow.on_login
    async def late(server, user, peer, device):
        await release
        return [Direct({"op": "for_" + user.username})]

    rs = await _running(store, tmp_path, domains.DEFAULT + (slow,))
    try:
        conn = await rs.client()
        for name in ("alice", "bob"):
            await conn.register(name, "correct horse")
        pushes = Pushes(conn)
        await conn.login("alice", "correct horse")
        await conn.request("logout")
        await conn.login("bob", "correct horse")  # the same connection, now bob's session
        release.callback(None)  # alice's hook (and then bob's) finishes
        assert (await pushes.next("for_bob"))
        await quiet()
        assert pushes.of("for_alice") == []
    finally:
        await rs.stop()
