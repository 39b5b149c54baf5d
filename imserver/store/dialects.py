"""The two SQL dialects Parley speaks: everything that differs between SQLite and MySQL/MariaDB.

Store modules write portable SQL with ``?`` placeholders; a dialect rewrites what must differ.
This is the only module that imports a DB-API driver or knows a connection URL.
"""
import os
import re
import socket
import sqlite3
from urllib.parse import parse_qs, unquote, urlsplit


class Dialect:
    name = None
    #: Appended to a SELECT that must lock the rows it reads until commit.
    for_update = ""
    #: Errors that mean "the database cannot be reached right now", not "your SQL is wrong".
    unavailable_errors = ()
    integrity_errors = ()
    #: Group-commit batches that may be in flight at once: a second one prepares (checks and
    #: lookups) while the first, holding the position lock, inserts and commits. SQLite has one
    #: writer and takes its lock at BEGIN, so there it is one.
    concurrent_batches = 1

    def sql(self, text):
        return text

    def begin(self, txn):
        """Start a group-commit batch's transaction, before its first statement (SQLite opens
        it and takes the write lock; MySQL sets the batch's isolation level)."""

    def executemany(self, cursor, sql, rows):
        """Run ``sql`` once per row; returns the number of rows the statements changed."""
        cursor.executemany(self.sql(sql), rows)
        return cursor.rowcount

    def numbered_insert(self, cursor, sql, rows):
        """Prepare ``INSERT ... VALUES (?, ...) [tail]`` for ``rows`` whose first column is not
        known yet; returns ``run(first)``, which inserts them numbered ``first, first + 1, ...``
        in that column and returns how many rows changed. Whatever can be done before the
        numbers are known (rendering the SQL, on MySQL) is done here."""
        def run(first):
            return self.executemany(cursor, sql, [(first + i, *row) for i, row in enumerate(rows)])
        return run

    def advance_positions(self, txn, n):
        """Move the stream counter on by ``n`` and return its new value; the statement takes
        the counter's lock until commit, like ``SELECT ... FOR UPDATE``."""
        txn.execute("UPDATE stream_seq SET pos = pos + ? WHERE id = 1", (n,))
        return txn.one("SELECT pos FROM stream_seq WHERE id = 1")[0]

    def connection_closed(self, conn):
        """True if an idle pooled connection is known to be dead, so the pool replaces it
        before a transaction runs on it instead of failing that transaction."""
        return False

    def pairs(self, n):
        """A derived table of ``n`` rows with columns ``a`` and ``b``, taking ``2n``
        placeholders (a, b, a, b, ...): join it to look up many exact key pairs at once. One
        indexed lookup per pair; an ``OR`` of pairs made the database plan each of them."""
        raise NotImplementedError

    def insert_ignore(self, table):
        raise NotImplementedError

    def on_conflict_ignore(self, key, column):
        """The tail that makes ``INSERT ... VALUES (...)`` skip a row whose unique ``key``
        (a column list) exists already, counting it as no change; any other error still fails
        the statement. ``column`` is one of the inserted columns (MySQL's form names one)."""
        raise NotImplementedError

    def on_conflict_increment(self, key, column):
        """The tail that turns ``INSERT ... VALUES (...)`` into "add 1 to ``column``" when a row
        with that ``key`` exists: one atomic statement, with no read-then-write race."""
        raise NotImplementedError

    def on_conflict_add(self, key, column):
        """The tail that turns ``INSERT ... VALUES (...)`` into "add the inserted ``column`` to
        the existing row's" when a row with that ``key`` exists (one atomic statement)."""
        raise NotImplementedError


class SQLiteDialect(Dialect):
    name = "sqlite"
    unavailable_errors = (sqlite3.OperationalError,)
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path):
        self.path = path

    def pairs(self, n):
        # A VALUES list has no compound-SELECT limit in SQLite (500 by default for UNION ALL).
        return ("(SELECT column1 AS a, column2 AS b FROM (VALUES "
                + ", ".join(["(?, ?)"] * n) + "))")

    def insert_ignore(self, table):
        return f"INSERT OR IGNORE INTO {table}"

    def on_conflict_ignore(self, key, column):
        return f"ON CONFLICT({key}) DO NOTHING"

    def begin(self, txn):
        # Python's sqlite3 opens transactions lazily, before the first INSERT/UPDATE/DELETE; a
        # SAVEPOINT issued first would become the outermost transaction and its RELEASE would
        # commit on its own. BEGIN IMMEDIATE makes the whole batch one transaction and takes the
        # write lock up front.
        txn.execute("BEGIN IMMEDIATE")

    def on_conflict_increment(self, key, column):
        return f"ON CONFLICT({key}) DO UPDATE SET {column} = {column} + 1"

    def on_conflict_add(self, key, column):
        return f"ON CONFLICT({key}) DO UPDATE SET {column} = {column} + excluded.{column}"

    def pool_args(self):
        # One connection: SQLite has one writer anyway, and group commit batches the writes.
        return ("sqlite3", self.path), dict(
            check_same_thread=False, cp_min=1, cp_max=1, cp_openfun=_sqlite_open,
            isolation_level="DEFERRED", timeout=5.0,
        )

    def connect(self):
        conn = sqlite3.connect(self.path, isolation_level="DEFERRED", timeout=5.0)
        _sqlite_open(conn)
        return conn

    def describe(self):
        return f"sqlite:///{self.path}"


def _sqlite_open(conn):
    cur = conn.cursor()
    # WAL lets readers run beside the writer; FULL syncs each commit, so an acked write
    # survives a power cut too (group commit keeps that to one sync per batch).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


#: Split rendered multi-row INSERTs at about this many characters (PyMySQL's own limit).
_MAX_STATEMENT = 1_000_000
#: The part of an INSERT after ``VALUES``: one row of placeholders, then an optional tail.
_VALUES = re.compile(r"\s*(\([?,\s]*\))(\s.*)?$", re.S)


def _value_renderer(escape):
    """SQL text of one value by its type; ``escape`` (PyMySQL's) for any type not listed."""
    by_type = {int: int.__repr__, bool: lambda v: "1" if v else "0", type(None): lambda v: "NULL"}

    def value(v):
        return by_type.get(type(v), escape)(v)
    return value


def _generic_row(value):
    def render(row):
        return "(" + ",".join([value(v) for v in row]) + ")"
    return render


class MySQLDialect(Dialect):
    name = "mysql"
    for_update = " FOR UPDATE"
    concurrent_batches = 2

    def __init__(self, host, port, user, password, database, options):
        import pymysql
        from pymysql.constants import SERVER_STATUS

        self._escape_string = pymysql.converters.escape_string
        self._no_backslash_escapes = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
        self.host, self.port, self.user = host, port, user
        self.password, self.database = password, database
        self.options = options
        self.unavailable_errors = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
        self.integrity_errors = (pymysql.err.IntegrityError,)
        self._cache = {}
        self._renderers = {}

    def sql(self, text):
        out = self._cache.get(text)
        if out is None:
            if len(self._cache) >= 1024:  # batch queries vary with the batch: keep the cache bounded
                self._cache.clear()
            out = self._cache[text] = text.replace("%", "%%").replace("?", "%s")
        return out

    def executemany(self, cursor, sql, rows):
        """A multi-row ``INSERT ... VALUES (?, ...) [tail]`` rendered here, instead of by
        PyMySQL's generic ``executemany`` (several calls deep per value), which was most of the
        pool thread's Python time in a group commit of messages. Any other statement goes to
        PyMySQL whole. Returns the number of rows the statements changed."""
        parts = self._insert_parts(sql, len(rows[0])) if rows else None
        if parts is None:
            cursor.executemany(self.sql(sql), rows)
            return cursor.rowcount
        head, tail = parts
        return self._run_rendered(cursor, head, tail, self._render_rows(cursor, rows))

    def numbered_insert(self, cursor, sql, rows):
        # The rows are rendered now, so that run() only pastes each number in front.
        parts = self._insert_parts(sql, len(rows[0]) + 1) if rows else None
        if parts is None:
            return super().numbered_insert(cursor, sql, rows)
        head, tail = parts
        rests = [item[1:] for item in self._render_rows(cursor, rows)]  # "v1,v2,...)"

        def run(first):
            return self._run_rendered(cursor, head, tail,
                                      [f"({first + i},{rest}" for i, rest in enumerate(rests)])
        return run

    def advance_positions(self, txn, n):
        # One statement and no read back: LAST_INSERT_ID(expr) puts the new value in the reply.
        cursor = txn.execute("UPDATE stream_seq SET pos = LAST_INSERT_ID(pos + ?) WHERE id = 1", (n,))
        if n < 1 or cursor.rowcount != 1:
            # With n = 0 nothing changes, so the reply could not tell a missing row apart.
            raise RuntimeError(f"stream_seq was not advanced (n={n}, rows={cursor.rowcount})")
        return cursor.lastrowid

    @staticmethod
    def _insert_parts(sql, width):
        """``(head, tail)`` of a one-row ``INSERT ... VALUES (?, ...) [tail]`` with ``width``
        placeholders, or None for any other statement."""
        head, _, rest = sql.partition(" VALUES ")
        shape = _VALUES.match(rest)
        if not head.lstrip().upper().startswith("INSERT") or shape is None or \
                shape.group(1).replace(" ", "") != "(" + ",".join("?" * width) + ")":
            return None
        return head + " VALUES ", shape.group(2) or ""

    def _render_rows(self, cursor, rows):
        """Each row as ``(v1,v2,...)`` SQL text."""
        connection = cursor.connection
        value = _value_renderer(connection.escape)
        if connection.server_status & self._no_backslash_escapes:
            render = _generic_row(value)
        else:
            render = self._row_renderer(tuple(map(type, rows[0])), value)
        return [render(row) for row in rows]

    @staticmethod
    def _run_rendered(cursor, head, tail, items):
        """Execute ``head + items + tail`` in statements of at most about ``_MAX_STATEMENT``
        characters; returns the rows they changed."""
        out, size, changed = [], 0, 0
        for item in items:
            out.append(item)
            size += len(item) + 1
            if size > _MAX_STATEMENT:
                changed += cursor.execute(head + ",".join(out) + tail)
                out, size = [], 0
        if out:
            changed += cursor.execute(head + ",".join(out) + tail)
        return changed

    def _row_renderer(self, types, value):
        """A function rendering one row as ``(v1,v2,...)`` SQL text, made for ``types`` (the
        column types of a batch's first row) and kept for the next batch like it.

        One ``%`` format per row, where ints become ``%d`` through ``int.__index__`` and
        strings ``'%s'`` through ``escape_string``; both raise on any other type (a bool is an
        int and renders as 1 or 0; a float, None or a str in an int column raises). A row
        that raises, or has another length, is rendered value by value by the generic path
        instead: a different type in a later row is still quoted, never pasted in raw.
        """
        fast = self._renderers.get(types)
        if fast is None:
            parts, exprs = [], []
            for i, t in enumerate(types):
                if t is int:
                    parts.append("%d")
                    exprs.append(f"index(r[{i}])")
                elif t is str:
                    parts.append("'%s'")
                    exprs.append(f"escape_string(r[{i}])")
                else:
                    parts.append("%s")
                    exprs.append(f"value(r[{i}])")
            source = (f"def render(r, value):\n"
                      f"    return {'(' + ','.join(parts) + ')'!r} % ({', '.join(exprs)},)\n")
            namespace = {"index": int.__index__, "escape_string": self._escape_string}
            exec(source, namespace)  # noqa: S102 (the source is built above from positions only)
            fast = namespace["render"]
            if len(self._renderers) >= 64:
                self._renderers.clear()
            self._renderers[types] = fast
        generic, width = _generic_row(value), len(types)

        def render(row):
            if len(row) == width:
                try:
                    return fast(row, value)
                except (TypeError, AttributeError):
                    pass
            return generic(row)
        return render

    def connection_closed(self, conn):
        # Between transactions the server sends nothing unasked: anything to read on an idle
        # connection is the server closing it (EOF, or an error packet first), as when MariaDB
        # restarts or kills the connection. A non-blocking peek sees that for about 4 us, where a
        # ping would cost a round trip on every transaction. Parley connects without TLS, so
        # PyMySQL's ``_sock`` is a plain socket.
        sock = conn._sock
        if sock is None:  # PyMySQL closed it itself after an error
            return True
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            sock.recv(1, socket.MSG_PEEK)  # EOF or a byte: either way the server has hung up
        except BlockingIOError:
            return False  # nothing to read: the connection is alive and idle
        except OSError:
            return True  # reset by the peer, or otherwise broken
        finally:
            sock.settimeout(timeout)
        return True

    def begin(self, txn):
        # A batch does its checks (friendships, users) while the batch before it still holds
        # the position lock, then inserts once that one has committed. Under InnoDB's default
        # REPEATABLE READ its reads after the insert would still see the snapshot of its first
        # read, from before that commit: a resend whose first copy the previous batch stored
        # would be skipped by the unique key yet not be found. READ COMMITTED lets each
        # statement see what has committed; it applies to this one transaction (plain reads
        # keep their one snapshot, which sync needs across its queries).
        txn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def pairs(self, n):
        return "(SELECT ? AS a, ? AS b" + " UNION ALL SELECT ?, ?" * (n - 1) + ")"

    def insert_ignore(self, table):
        return f"INSERT IGNORE INTO {table}"

    def on_conflict_ignore(self, key, column):
        # Not INSERT IGNORE, which would also turn data errors into warnings. Setting a column
        # to itself changes nothing, so such a row counts 0 affected rows (PyMySQL does not ask
        # for found rows); it applies to any unique key, which callers check (see messages.py).
        return f"ON DUPLICATE KEY UPDATE {column} = {column}"

    def on_conflict_increment(self, key, column):
        return f"ON DUPLICATE KEY UPDATE {column} = {column} + 1"

    def on_conflict_add(self, key, column):
        return f"ON DUPLICATE KEY UPDATE {column} = {column} + VALUES({column})"

    def _connargs(self):
        return dict(
            host=self.host, port=self.port, user=self.user, password=self.password,
            database=self.database, charset="utf8mb4", autocommit=False,
            connect_timeout=int(self.options.get("connect_timeout", 3)),
            read_timeout=int(self.options.get("read_timeout", 30)),
            write_timeout=int(self.options.get("write_timeout", 30)),
        )

    def pool_args(self):
        kw = self._connargs()
        kw.update(cp_reconnect=True, cp_min=1, cp_max=int(self.options.get("pool", 4)),
                  cp_noisy=False)
        return ("pymysql",), kw

    def connect(self):
        import pymysql

        return pymysql.connect(**self._connargs())

    def describe(self):
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def from_url(url, data_dir=None):
    """A Dialect for ``sqlite:///path`` or ``mysql://user:pass@host:port/db?pool=4``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///rel.db -> "rel.db" (under the data dir); sqlite:////abs/x.db -> "/abs/x.db"
        path = unquote(parts.path)[1:]
        if not path:
            raise ValueError("sqlite URL needs a path: sqlite:///relative.db or sqlite:////abs.db")
        if data_dir and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        return SQLiteDialect(path)
    if parts.scheme in ("mysql", "mariadb"):
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("mysql URL needs a database name: mysql://user:pass@host:3306/parley")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return MySQLDialect(
            parts.hostname or "127.0.0.1", parts.port or 3306, unquote(parts.username or "root"),
            unquote(parts.password or ""), database, options,
        )
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or mysql://...")
