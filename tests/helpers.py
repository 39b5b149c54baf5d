"""Small helpers shared by the tests."""
import pytest
from twisted.internet import defer, reactor, task

from imclient.protocol import RemoteError


async def error_code(d):
    with pytest.raises(RemoteError) as info:
        await d
    return info.value.code


class Pushes:
    """Collects a client's pushes; ``await pushes.next(op)`` waits (bounded) for the next one."""

    def __init__(self, client):
        self.items = []
        self._consumed = {}
        client.subscribe(self.items.append)

    def of(self, op):
        return [p for p in self.items if p.get("op") == op]

    async def wait_for(self, predicate, timeout=5.0):
        for _ in range(int(timeout / 0.01)):
            found = [p for p in self.items if predicate(p)]
            if found:
                return found
            await task.deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"no matching push in {timeout}s; got {self.items}")

    async def next(self, op, timeout=5.0):
        """The next push of this op not returned before (waiting for it if need be)."""
        index = self._consumed.get(op, 0)
        for _ in range(int(timeout / 0.01)):
            if len(self.of(op)) > index:
                self._consumed[op] = index + 1
                return self.of(op)[index]
            await task.deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"no {op!r} push in {timeout}s; got {self.items}")


async def befriend(a, b):
    await a.request("friend_request", user=b.user_id, greeting="hi")
    await b.request("friend_accept", user=a.user_id)


async def quiet(seconds=0.05):
    await task.deferLater(reactor, seconds, lambda: None)


async def sync_all(client, since, limit):
    """Every event after ``since`` through ``sync`` pages of ``limit``: (events, pages, next)."""
    events, pages = [], 0
    while True:
        page = await client.request("sync", since=since, limit=limit)
        events += page["events"]
        since, pages = page["next"], pages + 1
        if not page["more"]:
            return events, pages, since


HELD = ("SELECT owner, SUM(size) FROM (SELECT owner, size FROM files "
        "UNION ALL SELECT owner, size FROM uploads) AS held GROUP BY owner")


def usage_both_ways(txn):
    """A transaction function: ({user: bytes} summed from the files and uploads rows,
    {user: bytes} the usage counters hold), users at zero left out."""
    summed = {owner: int(n) for owner, n in txn.all(HELD)}
    counted = {user: int(n) for user, n in txn.all("SELECT user_id, used_bytes FROM storage_used")
               if n}
    return summed, counted
