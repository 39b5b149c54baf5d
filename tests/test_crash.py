"""SIGKILL the server while clients send: every acked message survives exactly once, and a resend
of an unacked one (same client_id) is stored once. A real twistd process and a real database."""
import signal

import pytest_twisted
from twisted.internet import defer, reactor, task

from imclient.connect import connect
from serverproc import ServerProcess, free_port

TOTAL = 1500


async def login(port, name, register=False):
    c = await connect(reactor, "127.0.0.1", port)
    if register:
        await c.register(name, "correct horse")
    reply = await c.login(name, "correct horse")
    c.user_id = reply["user_id"]
    return c


@pytest_twisted.ensureDeferred
async def test_sigkill_loses_no_acked_message_and_resend_is_idempotent(tmp_path, db_url):
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--db", db_url,
            "--listen", f"tcp:{port}:interface=127.0.0.1"]
    server = ServerProcess(tmp_path, args, port).start()
    try:
        await server.wait_listening()
        alice = await login(port, "alice", register=True)
        bob = await login(port, "bob", register=True)
        await alice.request("friend_request", user=bob.user_id)
        await bob.request("friend_accept", user=alice.user_id)
        bob.transport.loseConnection()

        acked = {}
        sends = {}
        for i in range(TOTAL):
            cid = f"k{i}"
            d = alice.request("send", to=bob.user_id, body=f"body {i}", client_id=cid)
            d.addCallbacks(lambda r, cid=cid: acked.__setitem__(cid, r["msg_id"]), lambda f: None)
            sends[cid] = d
        for _ in range(3000):
            if len(acked) >= 300:
                break
            await task.deferLater(reactor, 0.002, lambda: None)
        server.kill(signal.SIGKILL)
        await defer.DeferredList(list(sends.values()), consumeErrors=True)
        unacked = [cid for cid in sends if cid not in acked]
        assert len(acked) >= 300 and unacked, (len(acked), len(unacked))
    finally:
        server.kill(signal.SIGKILL)

    server = ServerProcess(tmp_path, args, port).start()
    try:
        await server.wait_listening()
        alice = await login(port, "alice")
        resent = await defer.gatherResults([
            alice.request("send", to=bob.user_id, body=f"body {cid[1:]}", client_id=cid) for cid in unacked])
        # Also resend some that were acked: same message ids, nothing new stored.
        again = await defer.gatherResults([
            alice.request("send", to=bob.user_id, body="ignored", client_id=cid) for cid in list(acked)[:50]])
        assert all(r["duplicate"] for r in again)
        assert [r["msg_id"] for r in again] == [acked[cid] for cid in list(acked)[:50]]

        bob = await login(port, "bob")
        seen, since = [], 0
        while True:
            page = await bob.request("sync", since=since, limit=500)
            seen += [e for e in page["events"] if e["type"] == "message"]
            since = page["next"]
            if not page["more"]:
                break
        client_ids = [e["client_id"] for e in seen]
        assert len(client_ids) == len(set(client_ids)), "a message was delivered twice"
        assert set(client_ids) == set(sends), "a message is missing"
        by_cid = {e["client_id"]: e["msg_id"] for e in seen}
        assert all(by_cid[cid] == msg_id for cid, msg_id in acked.items())
        positions = [e["pos"] for e in seen]
        assert positions == sorted(positions)
        for c in (alice, bob):
            c.transport.loseConnection()
        assert len(resent) == len(unacked)
    finally:
        server.stop()
