"""Group commit: stream writes submitted while one transaction commits share the next one.

Every write that appends to a user's stream goes through ``GroupCommitter`` so that positions are
handed out in commit order (a reader never sees a position appear below one it has already seen)
and so that persistence costs one transaction per batch, not per message. Jobs of one kind in a
batch are handed to that kind's batch function together (messages are inserted in bulk); a
job's own failure (an ``ImError`` value) fails only that job; a database failure fails the batch.
"""
from collections import deque
from functools import partial

from twisted.internet import defer
from twisted.logger import Logger

from imserver.errors import ImError


class Positions:
    """Hands out stream positions inside one batch transaction.

    The batch reads ``stream_seq`` once, locking its row (``FOR UPDATE`` on MySQL; SQLite has one
    writer), and writes the last position back before committing. So batches, even from several
    server processes, take positions in commit order and never overlap (a position taken for
    a send that turns out to be a duplicate stays unused).
    """

    def __init__(self, txn):
        self.txn = txn
        self._first = self._last = None

    def take(self):
        if self._last is None:
            lock = self.txn.dialect.for_update
            (self._last,) = self.txn.one(f"SELECT pos FROM stream_seq WHERE id = 1{lock}")
            self._first = self._last
        self._last += 1
        return self._last

    def save(self):
        if self._last is not None and self._last != self._first:
            self.txn.execute("UPDATE stream_seq SET pos = ? WHERE id = 1", (self._last,))


def run_calls(txn, positions, jobs):
    """The batch function for ``GroupCommitter.call`` jobs: each in its own savepoint."""
    results = []
    for fn, args in jobs:
        txn.execute("SAVEPOINT job")
        try:
            results.append(fn(txn, positions, *args))
        except ImError as e:
            txn.execute("ROLLBACK TO SAVEPOINT job")
            results.append(e)
        txn.execute("RELEASE SAVEPOINT job")
    return results


def _fire(d, result):
    if isinstance(result, ImError):
        d.errback(result)
    else:
        d.callback(result)


class GroupCommitter:
    _log = Logger()

    def __init__(self, db, clock, max_batch=2000):
        self.db = db
        self.clock = clock
        self.max_batch = max_batch
        self.kinds = {"call": run_calls}
        self._queue = deque()
        self._running = False
        self._scheduled = False
        self.batches = 0  # for tests and benchmarks: how many transactions ran

    def register(self, kind, batch_fn):
        """``batch_fn(txn, positions, [job args...]) -> [result or ImError per job]``."""
        self.kinds[kind] = batch_fn

    def submit(self, kind, job):
        """Queue a job for the next batch; a Deferred fires with its result (or fails)."""
        d = defer.Deferred()
        self.enqueue(kind, job, partial(_fire, d))
        return d

    def enqueue(self, kind, job, on_result):
        """Queue a job; ``on_result(result)`` is called once it has committed, or with an
        ``ImError`` instead. No Deferred: for jobs queued tens of thousands of times a second."""
        self._queue.append((kind, job, on_result))
        if not self._running and not self._scheduled:
            # Gather everything that arrives in this reactor turn into the first batch.
            self._scheduled = True
            self.clock.callLater(0, self._start)

    def call(self, fn, *args):
        """Run ``fn(txn, positions, *args)`` in the next batch; fires with its result."""
        return self.submit("call", (fn, args))

    def _start(self):
        self._scheduled = False
        if self._running or not self._queue:
            return
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
        groups = {}
        for kind, job, on_result in batch:
            groups.setdefault(kind, []).append((job, on_result))
        self._running = True
        self.batches += 1
        self.db.run("commit_batch", self._batch_txn, groups).addCallbacks(
            self._done, self._failed, callbackArgs=(groups,), errbackArgs=(groups,))

    def _batch_txn(self, txn, groups):
        txn.dialect.begin(txn)
        positions = Positions(txn)
        results = {kind: self.kinds[kind](txn, positions, [job for job, _ in entries])
                   for kind, entries in groups.items()}
        positions.save()
        return results

    def _done(self, results, groups):
        # Start the next batch before answering this one: the database works on it (no GIL
        # held while it waits for MariaDB) while this thread sends the replies and pushes.
        # Its results can only arrive after this method returns, so pushes keep commit order.
        self._running = False
        self._start()
        for kind, entries in groups.items():
            for (job, on_result), result in zip(entries, results[kind]):
                try:
                    on_result(result)
                except Exception:
                    self._log.failure("handling the result of a {kind} job failed", kind=kind)

    def _failed(self, failure, groups):
        self._running = False
        self._start()
        if not failure.check(ImError):
            self._log.failure("batch of {n} writes failed", failure, n=sum(map(len, groups.values())))
        error = failure.value if failure.check(ImError) else ImError("internal", "internal server error")
        for kind, entries in groups.items():
            for _, on_result in entries:
                try:
                    on_result(error)
                except Exception:
                    self._log.failure("handling the failure of a {kind} job failed", kind=kind)
