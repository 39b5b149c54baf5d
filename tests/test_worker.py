"""imclient.worker.StoreWorker: the local store's SQLite runs on one thread of its own, jobs in
the order queued, and committed changes are announced to listeners."""
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from imclient.events import StoreChanged
from imclient.worker import StoreWorker


def message(msg_id, sender, to, body):
    return {"msg_id": msg_id, "from": sender, "to": to, "body": body, "kind": "text", "ts": msg_id}


@pytest_twisted.ensureDeferred
async def test_jobs_run_on_the_store_thread_in_order_and_changes_are_announced(tmp_path):
    worker = StoreWorker(str(tmp_path / "s.sqlite"), reactor)
    heard = []
    worker.listen(heard.append)
    reactor_thread = threading.get_ident()
    where = await worker.run(lambda store: threading.get_ident())
    assert where != reactor_thread
    assert threading.get_ident() == reactor_thread  # the result comes back on the reactor thread
    # Queued back to back without waiting: each job sees what the one before it wrote.
    writes = [worker.add_message(message(i, 2, 1, f"m{i}"), 1) for i in range(1, 6)]
    page = worker.history(2, limit=10)
    assert [await d for d in writes] == [True] * 5
    assert [m["body"] for m in await page] == ["m5", "m4", "m3", "m2", "m1"]
    assert heard[:1] == [StoreChanged("messages", (2,))] and len(heard) == 5
    # One job is one transaction: a failing job leaves nothing behind, and the worker goes on.

    def half_then_fail(store):
        store.add_message(message(9, 2, 1, "never"), 1)
        raise ValueError("the job fails")
    with pytest.raises(ValueError):
        await worker.run(half_then_fail)
    assert await worker.message(9) is None and len(heard) == 5
    await worker.close()
    assert not worker._pool.started


@pytest_twisted.ensureDeferred
async def test_a_failing_listener_does_not_fail_the_job(tmp_path):
    worker = StoreWorker(str(tmp_path / "s.sqlite"), reactor)
    heard = []

    def broken(change):
        raise RuntimeError("listener bug")
    worker.listen(broken)
    unlisten = worker.listen(heard.append)
    assert await worker.add_friend(7) is None
    unlisten()
    await worker.add_friend(8)
    assert heard == [StoreChanged("friends", (7,))]
    assert [f["user_id"] for f in await worker.friends()] == [7, 8]
    await worker.close()


def test_private_and_unknown_names_are_not_store_methods(tmp_path):
    worker = StoreWorker(str(tmp_path / "s.sqlite"), threaded=False)
    with pytest.raises(AttributeError):
        worker._migrate
    with pytest.raises(AttributeError):
        worker.no_such_method
    worker.close()


def test_a_store_that_cannot_be_opened_fails_every_job_with_why(tmp_path):
    worker = StoreWorker(str(tmp_path / "missing-dir" / "s.sqlite"), threaded=False)
    failed = []
    worker.history(2).addErrback(failed.append)
    assert [f.check(Exception) for f in failed] == [Exception]
    assert "unable to open" in failed[0].getErrorMessage()
