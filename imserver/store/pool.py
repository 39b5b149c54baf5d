"""The database pool: runs named transactions on adbapi's threads and maps driver failures.

Every store call goes through ``Database.run(desc, fn, *args)``: ``fn(txn, *args)`` runs in one
transaction on a pool thread, with ``txn.execute`` taking portable ``?`` SQL. A database that
cannot be reached becomes ``ImError("unavailable")``; adbapi reconnects on the next call, and a
pooled connection the server has closed meanwhile is replaced before it is used.
"""
from twisted.enterprise import adbapi
from twisted.logger import Logger

from imserver.errors import ImError


class Txn:
    """The cursor handed to transaction functions; rewrites SQL for the dialect."""

    __slots__ = ("_cur", "dialect")

    def __init__(self, cursor, dialect):
        self._cur = cursor
        self.dialect = dialect

    def execute(self, sql, args=()):
        self._cur.execute(self.dialect.sql(sql), args)
        return self._cur

    def executemany(self, sql, seq):
        """Run ``sql`` for each row of ``seq``; returns how many rows the statements changed."""
        return self.dialect.executemany(self._cur, sql, seq)

    def numbered_insert(self, sql, rows):
        """See ``Dialect.numbered_insert``: ``run(first)`` inserts ``rows`` numbered from ``first``."""
        return self.dialect.numbered_insert(self._cur, sql, rows)

    def one(self, sql, args=()):
        self._cur.execute(self.dialect.sql(sql), args)
        return self._cur.fetchone()

    def all(self, sql, args=()):
        self._cur.execute(self.dialect.sql(sql), args)
        return self._cur.fetchall()

    @property
    def lastrowid(self):
        return self._cur.lastrowid

    @property
    def rowcount(self):
        return self._cur.rowcount


class ConnectionPool(adbapi.ConnectionPool):
    """adbapi's pool, checking a thread's idle connection before each transaction.

    adbapi keeps one connection per pool thread and only notices a dead one when a transaction on
    it fails. After a database restart every thread still holds a connection to the old server,
    so each would fail one request with ``unavailable`` although the database is back.
    """

    def __init__(self, connection_closed, *args, **kw):
        self._connection_closed = connection_closed
        super().__init__(*args, **kw)

    def connect(self):
        conn = self.connections.get(self.threadID())
        if conn is not None and self._connection_closed(conn):
            self.disconnect(conn)
        return super().connect()


class Database:
    _log = Logger()

    def __init__(self, dialect, pool=None):
        self.dialect = dialect
        if pool is None:
            args, kw = dialect.pool_args()
            pool = ConnectionPool(dialect.connection_closed, *args, **kw)
        self.pool = pool

    def run(self, desc, fn, *args, **kw):
        """Run ``fn(txn, *args, **kw)`` in one transaction; the result arrives in a Deferred."""
        dialect = self.dialect

        def interaction(cursor):
            return fn(Txn(cursor, dialect), *args, **kw)

        d = self.pool.runInteraction(interaction)
        d.addErrback(self._map_failure, desc)
        return d

    def _map_failure(self, failure, desc):
        if failure.check(adbapi.ConnectionLost, *self.dialect.unavailable_errors):
            self._log.warn("database unavailable during {desc}: {err}", desc=desc,
                           err=failure.getErrorMessage())
            raise ImError("unavailable", "the database is unreachable; retry shortly")
        return failure

    def is_integrity_error(self, exc):
        return isinstance(exc, self.dialect.integrity_errors)

    def close(self):
        if self.pool.running:
            self.pool.close()
