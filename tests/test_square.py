"""The chat square over real sockets, on SQLite and MySQL: live posts, history, rate limit, bound."""
import pytest
import pytest_twisted
from twisted.internet import defer, task

from conftest import RunningServer, make_server
from helpers import Pushes, error_code, quiet
from imclient.protocol import RemoteError
from imserver.config import Config


@pytest_twisted.ensureDeferred
async def test_listeners_hear_posts_and_history_pages_back(running):
    alice, bob, carol = [await running.user(n) for n in ("alice", "bob", "carol")]
    bob_pushes, carol_pushes = Pushes(bob), Pushes(carol)
    await bob.request("square_join")
    first = await alice.request("square_send", body="hello, square")
    push = await bob_pushes.next("square_message")
    assert push == {"op": "square_message", "id": first["id"], "from": alice.user_id,
                    "body": "hello, square", "ts": first["ts"]}
    await bob.request("square_leave")
    await carol.request("square_send", body="anyone?")
    await quiet(0.1)
    assert len(bob_pushes.of("square_message")) == 1 and carol_pushes.of("square_message") == []
    page = await carol.request("square_history", limit=1)
    assert [m["body"] for m in page["messages"]] == ["anyone?"] and page["more"]
    page = await carol.request("square_history", before=page["messages"][0]["id"])
    assert [m["body"] for m in page["messages"]] == ["hello, square"] and not page["more"]
    assert await error_code(alice.request("square_send", body=" ")) == "empty_body"
    await carol.request("square_join")
    await carol.logout()
    await carol.login("carol", "correct horse")
    await alice.request("square_send", body="carol logged out, so she left")
    await quiet(0.1)
    assert carol_pushes.of("square_message") == []
    anonymous = await running.client()
    assert await error_code(anonymous.request("square_history")) == "not_authenticated"


@pytest_twisted.ensureDeferred
async def test_posting_is_rate_limited_per_user(running):
    clock = task.Clock()
    running.server.state["square"].clock = clock  # the bucket's time is injected
    burst = running.server.config.square_burst
    alice, bob = await running.user("alice"), await running.user("bob")
    for i in range(burst):
        await alice.request("square_send", body=f"p{i}")
    with pytest.raises(RemoteError) as info:
        await alice.request("square_send", body="one too many")
    assert info.value.code == "rate_limited" and info.value.error["retry_after"] == pytest.approx(1.0)
    await bob.request("square_send", body="bob has his own bucket")
    clock.advance(1.0)
    await alice.request("square_send", body="refilled")
    assert await error_code(alice.request("square_send", body="empty again")) == "rate_limited"
    bodies = [m["body"] for m in (await bob.request("square_history", limit=200))["messages"]]
    assert "one too many" not in bodies and "refilled" in bodies


@pytest.fixture
def small_square(store, tmp_path):
    rs = RunningServer(make_server(store, Config(max_frame=64 * 1024, square_history=5, square_burst=100)),
                       tmp_path)
    rs.listen()
    yield rs
    pytest_twisted.blockon(defer.ensureDeferred(rs.stop()))


@pytest_twisted.ensureDeferred
async def test_history_is_bounded(small_square):
    alice = await small_square.user("alice")
    await defer.gatherResults([alice.request("square_send", body=f"s{i}") for i in range(12)])
    page = await alice.request("square_history", limit=200)
    assert [m["body"] for m in page["messages"]] == [f"s{i}" for i in range(11, 6, -1)]
    assert not page["more"]
