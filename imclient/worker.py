"""``StoreWorker``: the local store on a thread of its own, so SQLite never blocks the reactor.

The reactor thread is the GUI's thread in the desktop app, and a slow disk or a big query must
not freeze it. One thread, one connection, a queue: ``run(fn, *args)`` queues ``fn(store, *args)``
to be run in one transaction on the store's thread and returns a Deferred that fires (on the
reactor thread) with its result. Jobs run in the order they were queued, so a reader queued
after a writer sees what it wrote. Every public method of ``LocalStore`` is also a method here,
returning a Deferred: ``await worker.history(peer)``.

After a job commits, the changes it noted (``LocalStore.changes``) are announced to every
listener as ``StoreChanged(table, keys)`` records, on the reactor thread, before the job's
Deferred fires: a view model re-reads what changed.

``StoreWorker(path, threaded=False)`` runs each job at once on the caller's thread (tests that
drive the client with a ``task.Clock`` want every step to happen synchronously).
"""
import inspect

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python import threadpool

from imclient.events import StoreChanged
from imclient.store import LocalStore


class StoreWorker:
    _log = Logger()

    def __init__(self, path, reactor=None, threaded=True):
        self.path = path
        self._listeners = []
        self._store = None
        self._pool = None
        if threaded:
            if reactor is None:
                from twisted.internet import reactor
            self._reactor = reactor
            self._pool = threadpool.ThreadPool(1, 1, name="imclient-store")
            self._pool.start()
            self._shutdown = reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
        self._open_error = None
        self._submit(self._open)

    def _open(self):
        try:
            self._store = LocalStore(self.path)
        except Exception as e:  # every job fails with it, instead of on a missing store
            self._open_error = e

    def listen(self, fn):
        """Call ``fn(StoreChanged)`` after each committed change; returns an unsubscriber."""
        self._listeners.append(fn)
        return lambda: fn in self._listeners and self._listeners.remove(fn)

    def run(self, fn, *args, **kw):
        """``fn(store, *args, **kw)`` in one transaction on the store's thread: a Deferred."""
        def job():
            store = self._store
            if store is None:
                raise self._open_error or RuntimeError("the local store is closed")
            try:
                with store.batch():
                    result = fn(store, *args, **kw)
            finally:
                changes, store.changes = store.changes, []
            return result, changes
        return self._submit(job).addCallback(self._announce)

    def _submit(self, job):
        if self._pool is None:
            return defer.maybeDeferred(job)
        return threads.deferToThreadPool(self._reactor, self._pool, job)

    def _announce(self, outcome):
        result, changes = outcome
        by_table = {}
        for table, key in changes:
            by_table.setdefault(table, [])
            if key is not None and key not in by_table[table]:
                by_table[table].append(key)
        for table, keys in by_table.items():
            change = StoreChanged(table, tuple(keys))
            for fn in list(self._listeners):
                try:
                    fn(change)
                except Exception:  # a listener's bug must not fail the job
                    self._log.failure("store listener failed on {change!r}", change=change)
        return result

    def __getattr__(self, name):
        method = getattr(LocalStore, name, None)
        if name.startswith("_") or not inspect.isfunction(method):
            raise AttributeError(name)

        def call(*args, **kw):
            return self.run(method, *args, **kw)
        call.__name__ = name
        return call

    def position(self):
        return self.run(lambda store: store.position)

    def close(self):
        """Close the connection and end the thread; fires when both are done."""
        def job():
            store, self._store = self._store, None
            if store is not None:
                store.close()
        d = self._submit(job)
        if self._pool is not None:
            d.addBoth(self._stopped)
        return d

    def _stopped(self, result):
        self._reactor.removeSystemEventTrigger(self._shutdown)
        self._stop_pool()
        return result

    def _stop_pool(self):
        if self._pool is not None and self._pool.started:
            self._pool.stop()
