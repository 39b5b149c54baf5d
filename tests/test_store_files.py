"""The files store on SQLite and MySQL: reference counts under concurrent references and deletes,
grants and read access, uploads bookkeeping."""
import random

import pytest
import pytest_twisted
from twisted.internet import defer

from helpers import usage_both_ways
from imserver.errors import ImError
from imserver.store import accounts, files

SHA = "ab" * 32


def run(store, fn, *args, **kw):
    """Run a files transaction function as its callers do."""
    return store.db.run(fn.__name__, fn, *args, **kw)


async def user(store, name):
    return await store.db.run("create_user", accounts.create_user, name, None, "x", name, 0)


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


def quota_refused(d):
    """A Deferred of the result of ``d``, or of None if it failed with ``quota_exceeded``."""
    async def result():
        try:
            return await d
        except ImError as e:
            assert e.code == "quota_exceeded"
            return None
    return defer.ensureDeferred(result())


@pytest_twisted.ensureDeferred
async def test_usage_counter_equals_the_rows_under_a_concurrent_mix(store):
    rng = random.Random(16)
    owners = [await user(store, f"user{i}") for i in range(3)]
    contents = {f"{i:02x}" * 32: size for i, size in enumerate((10, 20, 30, 1000))}
    for sha, size in contents.items():
        await run(store, files.add_blob_reference, owners[0], sha, size, "n", "m", 0)
    uploads, quota = {}, 4000  # upload id -> (owner, sha, size)

    def begin():
        owner, (sha, size) = rng.choice(owners), rng.choice(list(contents.items()))
        d = run(store, files.begin_upload, owner, sha, size, "n", "m", rng.randrange(100), quota)
        return d.addCallback(lambda r: uploads.setdefault(r[0], (owner, sha, size)))

    def finish():
        upload_id = rng.choice(list(uploads))
        owner, sha, size = uploads.pop(upload_id)
        return run(store, files.add_blob_reference, owner, sha, size, "n", "m", 1,
                   upload_id=upload_id)

    def cancel():  # twice at once sometimes: the second finds nothing
        return run(store, files.delete_upload, rng.choice(list(uploads)))

    def instant():
        owner, (sha, size) = rng.choice(owners), rng.choice(list(contents.items()))
        return run(store, files.add_reference, owner, sha, size, "n", "m", 2, quota)

    async def delete():
        rows = await store.db.run("t", lambda txn: txn.all("SELECT id, owner FROM files"))
        if rows:
            file_id, owner = rng.choice(rows)
            await files.run_delete(store.db, owner, file_id)

    async def expire():
        for upload_id in await run(store, files.expired_uploads, rng.randrange(100)):
            await run(store, files.delete_upload, upload_id)

    for _ in range(8):
        ops = [begin() for _ in range(6)]
        ops += [rng.choice((finish, cancel, instant, delete, expire, instant, delete))()
                for _ in range(14) if uploads]
        await defer.gatherResults([quota_refused(d) for d in ops])
        summed, counted = await store.db.run("usage", usage_both_ways)
        assert summed == counted
        assert [await run(store, files.used_bytes, o) for o in owners] == \
            [summed.get(o, 0) for o in owners]
    assert summed  # the mix left something to count


@pytest_twisted.ensureDeferred
async def test_concurrent_uploads_of_one_user_cannot_both_pass_the_quota(store):
    alice, bob = await user(store, "alice"), await user(store, "bob")
    begins = [run(store, files.begin_upload, alice, f"{i:02x}" * 32, 100, "n", "m", 0, 250)
              for i in range(10)]
    begins.append(run(store, files.begin_upload, bob, SHA, 100, "n", "m", 0, 250))
    results = await defer.gatherResults([quota_refused(d) for d in begins])
    assert sum(1 for r in results[:10] if r is not None) == 2 and results[10] is not None
    assert await run(store, files.used_bytes, alice) == 200
    # Instant uploads count too, and one refused leaves no file behind.
    await run(store, files.add_blob_reference, bob, SHA, 40, "n", "m", 0)
    instants = [run(store, files.add_reference, alice, SHA, 40, "n", "m", 0, 250)
                for _ in range(5)]
    results = await defer.gatherResults([quota_refused(d) for d in instants])
    assert sum(1 for r in results if r is not None) == 1
    assert await run(store, files.used_bytes, alice) == 240
    assert await run(store, files.refcount, SHA) == (2, 2)
