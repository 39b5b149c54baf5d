"""A MariaDB restart mid-run: requests get ``unavailable``, then the pool recovers by itself."""
import os
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from imclient.protocol import RemoteError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mariadb(action):
    subprocess.run(["service", "mariadb", action], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_mariadb_restart_gives_unavailable_then_recovers(running):
    alice = await running.user("alice")
    assert (await alice.request("profile_get"))["ok"]
    await threads.deferToThread(mariadb, "stop")
    try:
        with pytest.raises(RemoteError) as info:
            await alice.request("profile_get")
        assert info.value.code == "unavailable"
        assert (await alice.request("ping"))["ok"]  # the server itself stays up
    finally:
        await threads.deferToThread(mariadb, "start")
    for _ in range(100):
        try:
            reply = await alice.request("profile_get")
            break
        except RemoteError as e:
            assert e.code == "unavailable"
            await task.deferLater(reactor, 0.1, lambda: None)
    else:
        raise AssertionError("the pool did not recover after MariaDB came back")
    assert reply["profile"]["username"] == "alice"
    # New logins work too, on fresh pooled connections.
    assert (await (await running.client()).login("alice", "correct horse"))["user_id"]
