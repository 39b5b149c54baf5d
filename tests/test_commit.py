"""GroupCommitter's ordering with two batches in flight, on a fake database whose transactions
run exactly when the test says (the real thing runs them on pool threads in any order)."""
from twisted.internet import defer, task

from imserver.store.commit import GroupCommitter


class Reactor(task.Clock):
    def callFromThread(self, f, *args, **kw):
        f(*args, **kw)


class FakeTxn:
    class dialect:
        for_update = " FOR UPDATE"

        @staticmethod
        def begin(txn):
            pass

    def __init__(self, db):
        self.db = db

    def one(self, sql, args=()):
        assert "FOR UPDATE" in sql
        return (self.db.pos,)

    def execute(self, sql, args=()):
        if sql.startswith("UPDATE stream_seq"):
            self.db.pos = args[0]


class FakeDB:
    """``run`` queues the transaction; the test calls ``step`` to run one, split at the lock."""

    def __init__(self):
        self.pos = 0
        self.pending = []

    def run(self, desc, fn, *args):
        d = defer.Deferred()
        self.pending.append((fn, args, d))
        return d

    def run_now(self, index):
        fn, args, d = self.pending.pop(index)
        d.callback(fn(FakeTxn(self), *args))


def take_all(txn, positions, jobs):
    return [positions.take() for _ in jobs]


def make():
    reactor, db = Reactor(), FakeDB()
    db.dialect = FakeTxn.dialect
    writer = GroupCommitter(db, reactor, concurrency=2)
    writer.register("w", take_all)
    got = []
    return reactor, db, writer, got


def _holding_the_lock(db):
    """The oldest queued batch, taken off the fake database as if its thread now held the
    position lock (which lets the next batch start): ``(fn, groups, d)``."""
    fn, (groups, on_locked), d = db.pending.pop(0)
    on_locked()
    return fn, groups, d


def test_next_batch_starts_only_once_the_one_before_holds_the_lock():
    reactor, db, writer, got = make()
    for i in range(3):
        writer.enqueue("w", i, got.append)
    reactor.advance(0)
    assert len(db.pending) == 1
    for i in range(3, 5):
        writer.enqueue("w", i, got.append)
    reactor.advance(0)
    assert len(db.pending) == 1  # batch 0 has not taken the position lock yet
    db.run_now(0)  # batch 0 locks (batch 1 may start), commits, and its results go out
    assert got == [1, 2, 3]
    reactor.advance(0)
    assert len(db.pending) == 1
    db.run_now(0)
    assert got == [1, 2, 3, 4, 5]


def test_results_go_out_in_batch_order_even_if_a_later_batch_ends_first():
    reactor, db, writer, got = make()
    for i in range(2):
        writer.enqueue("w", i, got.append)
    reactor.advance(0)
    # Batch 0 takes the lock (this is what lets batch 1 start) but does not end yet.
    fn, groups, d = _holding_the_lock(db)
    writer.enqueue("w", 2, got.append)
    reactor.advance(0)
    assert len(db.pending) == 1  # batch 1 started while batch 0 holds the lock
    # Batch 1 ends first (as if its thread were faster); nothing is handed out before batch 0.
    fn1, args1, d1 = db.pending.pop(0)
    d1.callback({"w": [99]})
    assert got == []
    d.callback({"w": [1, 2]})
    assert got == [1, 2, 99]


def test_a_batch_after_one_with_a_plain_call_still_starts_once_that_holds_the_lock():
    reactor, db, writer, got = make()
    writer.call(lambda txn, positions: positions.take()).addCallback(got.append)  # a receipt, say
    reactor.advance(0)
    _holding_the_lock(db)
    writer.enqueue("w", 1, got.append)
    reactor.advance(0)
    assert len(db.pending) == 1


def test_no_batch_starts_while_one_with_an_exclusive_call_is_in_flight():
    # A block may change the friendships a send batch checks before it takes the lock: the
    # next batch waits for the block's batch to commit instead of overlapping it.
    reactor, db, writer, got = make()
    writer.call(lambda txn, positions: positions.take(), exclusive=True).addCallback(got.append)
    reactor.advance(0)
    fn, groups, d = _holding_the_lock(db)  # which would let a send batch start
    writer.enqueue("w", 1, got.append)
    reactor.advance(0)
    assert db.pending == []
    d.callback(fn(FakeTxn(db), groups, None))
    assert got == [1]
    reactor.advance(0)
    assert len(db.pending) == 1
    db.run_now(0)
    assert got == [1, 2]
