"""The files store on SQLite and MySQL: reference counts under concurrent references and deletes,
grants and read access, uploads bookkeeping."""
import random

import pytest
import pytest_twisted
from twisted.internet import defer

from imserver.errors import ImError
from imserver.store import files

SHA = "ab" * 32


def run(store, fn, *args, **kw):
    """Run a files transaction function as its callers do."""
    return store.db.run(fn.__name__, fn, *args, **kw)


async def user(store, name):
    return await store.accounts.create_user(name, None, "x", name, 0)


@pytest_twisted.ensureDeferred
async def test_refcount_equals_rows_under_concurrent_references_and_deletes(store):
    owners = [await user(store, f"user{i}") for i in range(3)]
    first = await run(store, files.add_blob_reference, owners[0], SHA, 10, "n", "m", 0)

    def adds(n):
        return [run(store, files.add_blob_reference, random.choice(owners), SHA, 10, "n", "m", 0)
                if i % 2 else
                run(store, files.add_reference, random.choice(owners), SHA, 10, "n", "m", 0)
                for i in range(n)]
    ids = await defer.gatherResults(adds(40))
    assert all(ids) and len(set(ids)) == 40
    owner_of = {r[0]: r[1] for r in await store.db.run("t", lambda txn: txn.all(
        "SELECT id, owner FROM files"))}
    doomed = ids[:30]
    mixed = [files.run_delete(store.db, owner_of[i], i) for i in doomed] + adds(20)
    random.shuffle(mixed)
    results = await defer.gatherResults(mixed)
    assert sum(1 for r in results if isinstance(r, tuple)) == 30
    assert not any(r[1] for r in results if isinstance(r, tuple))  # never the last reference
    refcount, nrows = await run(store, files.refcount, SHA)
    assert refcount == nrows == 1 + 40 - 30 + 20

    owner_of = {r[0]: r[1] for r in await store.db.run("t", lambda txn: txn.all(
        "SELECT id, owner FROM files"))}
    last = await defer.gatherResults([files.run_delete(store.db, o, i) for i, o in owner_of.items()])
    assert [r[1] for r in last].count(True) == 1
    assert await run(store, files.refcount, SHA) == (0, 0)
    assert not await run(store, files.blob_exists, SHA, 10)
    # With the content gone, an instant reference is refused rather than resurrecting a count.
    assert await run(store, files.add_reference, owners[0], SHA, 10, "n", "m", 0) is None
    assert first in owner_of


@pytest_twisted.ensureDeferred
async def test_concurrent_deletes_of_one_file_count_once(store):
    alice = await user(store, "alice")
    keep = await run(store, files.add_blob_reference, alice, SHA, 10, "n", "m", 0)
    doomed = await run(store, files.add_blob_reference, alice, SHA, 10, "n", "m", 0)
    results = await defer.gatherResults([files.run_delete(store.db, alice, doomed) for _ in range(6)])
    assert [r for r in results if r is not None] == [(SHA, False)]
    assert await run(store, files.refcount, SHA) == (1, 1)
    assert await files.run_delete(store.db, alice, keep) == (SHA, True)


@pytest_twisted.ensureDeferred
async def test_grant_and_readable(store):
    alice, bob, carol = [await user(store, n) for n in ("alice", "bob", "carol")]
    file_id = await run(store, files.add_blob_reference, alice, SHA, 10, "a.txt", "text/plain", 0)
    assert (await run(store, files.readable_file, file_id, alice))["name"] == "a.txt"
    with pytest.raises(ImError) as info:
        await run(store, files.readable_file, file_id, bob)
    assert info.value.code == "forbidden"
    await run(store, files.grant, file_id, user_id=bob)
    await run(store, files.grant, file_id, user_id=bob)  # idempotent
    await run(store, files.grant, file_id, group_id=9)
    assert (await run(store, files.readable_file, file_id, bob))["owner"] == alice
    with pytest.raises(ImError):
        await run(store, files.readable_file, file_id, carol)
    assert await run(store, files.readable_file, file_id + 1, alice) is None
    with pytest.raises(ValueError):
        await run(store, files.grant, file_id)
    # Grants go with the file.
    await files.run_delete(store.db, alice, file_id)
    assert await store.db.run("t", lambda txn: txn.one("SELECT COUNT(*) FROM file_access")) == (0,)


@pytest_twisted.ensureDeferred
async def test_upload_rows_resume_quota_and_expiry(store):
    alice = await user(store, "alice")
    up, resumed = await run(store, files.begin_upload, alice, SHA, 100, "a", "m", 1000, 150)
    assert not resumed
    assert await run(store, files.begin_upload, alice, SHA, 100, "a", "m", 2000, 150) == (up, True)
    with pytest.raises(ImError) as info:  # the unfinished upload counts against the quota
        await run(store, files.begin_upload, alice, "cd" * 32, 51, "b", "m", 2000, 150)
    assert info.value.code == "quota_exceeded"
    assert (await run(store, files.upload, up))["touched"] == 2000
    assert await run(store, files.expired_uploads, 2000) == []
    assert await run(store, files.expired_uploads, 2001) == [up]
    await run(store, files.touch_uploads, {up: 5000})
    assert await run(store, files.expired_uploads, 2001) == []
    await run(store, files.touch_uploads, {up: 3000})  # never moves back
    assert (await run(store, files.upload, up))["touched"] == 5000
    assert await run(store, files.delete_upload, up)
    assert await run(store, files.upload, up) is None
