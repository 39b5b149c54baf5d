"""Group commit: stream writes submitted while one transaction commits share the next one.

Every write that appends to a user's stream goes through ``GroupCommitter`` so that positions are
handed out in commit order (a reader never sees a position appear below one it has already seen)
and so that persistence costs one transaction per batch, not per message. Jobs of one kind in a
batch are handed to that kind's batch function together (messages are inserted in bulk); a
job's own failure (an ``ImError`` value) fails only that job; a database failure fails the batch.
"""
from collections import deque
from contextlib import nullcontext
from functools import partial

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.logger import Logger

from imserver.errors import ImError


class Positions:
    """Hands out stream positions inside one batch transaction.

    The batch takes the lock on ``stream_seq``'s row (``FOR UPDATE`` on MySQL; SQLite has one
    writer) with its first position, and writes the last position back before committing. So
    batches, even from several server processes, take positions in commit order and never
    overlap (a position taken for a send that turns out to be a duplicate stays unused).
    """

    def __init__(self, txn, on_locked=None):
        self.txn = txn
        self._stored = self._last = None  # the counter as written in the database; as handed out
        self._on_locked = on_locked

    def lock(self):
        """Take the position lock now (it is otherwise taken by the first ``take``)."""
        if self._last is None:
            lock = self.txn.dialect.for_update
            (self._last,) = self.txn.one(f"SELECT pos FROM stream_seq WHERE id = 1{lock}")
            self._locked()

    def take(self):
        if self._last is None:
            self.lock()
        self._last += 1
        return self._last

    def reserve(self, n):
        """Take ``n`` consecutive positions; returns the first. If this takes the lock, one
        statement both locks the counter and moves it past them, so a batch that prepared its
        rows beforehand holds the lock for no more than its inserts and its commit."""
        if self._last is None and n > 0:
            self._last = self.txn.dialect.advance_positions(self.txn, n)
            self._locked()
        elif self._last is None:
            self.lock()
        else:
            self._last += n
        return self._last - n + 1

    def _locked(self):
        self._stored = self._last
        if self._on_locked is not None:
            self._on_locked()

    def save(self):
        if self._last is not None and self._last != self._stored:
            self.txn.execute("UPDATE stream_seq SET pos = ? WHERE id = 1", (self._last,))


def run_calls(txn, positions, jobs):
    """The batch function for ``GroupCommitter.call`` jobs: each in its own savepoint."""
    results = []
    for fn, args, _ in jobs:
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
    """Runs queued stream writes in batches, each batch one transaction.

    Up to ``concurrency`` batches are in flight at once (the dialect says how many it can
    overlap: one for SQLite's single writer, two for MySQL). A batch is started only once the
    batch before it holds the position lock, so batches take the lock, and so positions, in
    the order they were started, and a client's pipelined writes keep their order; a batch
    whose kinds only read before their first position (``reads_first``) does those reads
    while the batch before it inserts and commits. A call made ``exclusive`` (a friendship
    change) may change what those reads see, so no batch starts while one holding such a call
    is in flight: a send is never checked against friendships older than a block committed
    before it. Results are handed out in batch order, which is commit order, so
    pushes leave in position order.
    """
    _log = Logger()

    def __init__(self, db, reactor, max_batch=2000, concurrency=None, delivery=nullcontext):
        self.db = db
        # A context manager around handing out each batch's results (the server corks its
        # output there, so a connection's acks and pushes from one batch leave together).
        self._delivery = delivery
        self.reactor = reactor  # callLater for gathering a batch, callFromThread for the lock
        self.max_batch = max_batch
        if concurrency is None:
            concurrency = getattr(db.dialect, "concurrent_batches", 1)
        self.concurrency = concurrency
        self.kinds = {"call": run_calls}
        self._reads_first = set()
        self._queue = deque()
        self._in_flight = 0
        self._scheduled = False
        self._unlocked = None  # the newest batch, until it holds the position lock or ends
        self._exclusive = set()  # the batches in flight that hold an exclusive call
        self._started = 0  # batches started, in order; each batch's number is its index
        self._delivered = 0  # batches whose results have been handed out
        self._finished = {}  # number -> (results or Failure, groups) waiting for earlier batches
        self.batches = 0  # for tests and benchmarks: how many transactions ran

    def register(self, kind, batch_fn, reads_first=False):
        """``batch_fn(txn, positions, [job args...]) -> [result or ImError per job]``.

        ``reads_first``: the function only reads until its first ``positions.take()``, and so
        may run while the batch before holds the position lock. A batch with any other kind
        takes the lock before it starts. (Either way a batch holds no lock when it waits for
        the position lock, so two batches in flight cannot deadlock.)"""
        self.kinds[kind] = batch_fn
        if reads_first:
            self._reads_first.add(kind)

    def submit(self, kind, job):
        """Queue a job for the next batch; a Deferred fires with its result (or fails)."""
        d = defer.Deferred()
        self.enqueue(kind, job, partial(_fire, d))
        return d

    def enqueue(self, kind, job, on_result):
        """Queue a job; ``on_result(result)`` is called once it has committed, or with an
        ``ImError`` instead. No Deferred: for jobs queued tens of thousands of times a second."""
        self._queue.append((kind, job, on_result))
        if not self._scheduled and self._can_start():
            # Gather everything that arrives in this reactor turn into the first batch.
            self._scheduled = True
            self.reactor.callLater(0, self._start)

    def call(self, fn, *args, exclusive=False):
        """Run ``fn(txn, positions, *args)`` in the next batch; fires with its result.

        ``exclusive``: ``fn`` may change what a ``reads_first`` kind reads before it takes the
        position lock (friendships, for sends), so no other batch overlaps the one it runs in."""
        return self.submit("call", (fn, args, exclusive))

    def _can_start(self):
        return (self._in_flight < self.concurrency and self._unlocked is None
                and not self._exclusive)

    def _start(self):
        self._scheduled = False
        if not self._queue or not self._can_start():
            return
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
        groups = {}
        for kind, job, on_result in batch:
            groups.setdefault(kind, []).append((job, on_result))
        number, self._started = self._started, self._started + 1
        self._in_flight += 1
        if any(job[2] for job, _ in groups.get("call", ())):
            self._exclusive.add(number)
        self.batches += 1
        if self.concurrency > 1:
            self._unlocked = number
            on_locked = partial(self.reactor.callFromThread, self._locked, number)
        else:
            on_locked = None
        self.db.run("commit_batch", self._batch_txn, groups, on_locked).addBoth(
            self._finish, number, groups)

    def _batch_txn(self, txn, groups, on_locked):
        txn.dialect.begin(txn)
        positions = Positions(txn, on_locked)
        if not self._reads_first.issuperset(groups):
            positions.lock()
        results = {kind: self.kinds[kind](txn, positions, [job for job, _ in entries])
                   for kind, entries in groups.items()}
        positions.save()
        return results

    def _locked(self, number):
        """(Reactor thread.) Batch ``number`` holds the position lock: the next may start."""
        if self._unlocked == number:
            self._unlocked = None
            self._start()

    def _finish(self, outcome, number, groups):
        # Start the next batch before answering this one: the database works on it (no GIL
        # held while it waits for MariaDB) while this thread sends the replies and pushes.
        self._in_flight -= 1
        self._exclusive.discard(number)
        if self._unlocked == number:
            self._unlocked = None  # it ended without taking the lock (nothing to write, or failed)
        self._finished[number] = (outcome, groups)
        self._start()
        if self._delivered not in self._finished:
            return
        with self._delivery():
            while self._delivered in self._finished:
                outcome, groups = self._finished.pop(self._delivered)
                self._delivered += 1
                if isinstance(outcome, Failure):
                    self._failed(outcome, groups)
                else:
                    self._done(outcome, groups)

    def _done(self, results, groups):
        for kind, entries in groups.items():
            for (job, on_result), result in zip(entries, results[kind]):
                try:
                    on_result(result)
                except Exception:
                    self._log.failure("handling the result of a {kind} job failed", kind=kind)

    def _failed(self, failure, groups):
        if not failure.check(ImError):
            self._log.failure("batch of {n} writes failed", failure, n=sum(map(len, groups.values())))
        error = failure.value if failure.check(ImError) else ImError("internal", "internal server error")
        for kind, entries in groups.items():
            for _, on_result in entries:
                try:
                    on_result(error)
                except Exception:
                    self._log.failure("handling the failure of a {kind} job failed", kind=kind)
