"""The database pool: connection loss becomes ``unavailable``, and a pooled connection the server
has closed is replaced before a transaction runs on it, not failed on.
"""
import pymysql
import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from imserver.errors import ImError
from imserver.store import dialects
from imserver.store.pool import Database
from serverproc import free_port

mysql_only = pytest.mark.parametrize("db_url", ["mysql"], indirect=True)


def _admin_query(dialect, sql, args=()):
    """One query on a fresh admin connection (blocking: run it in a thread)."""
    admin = pymysql.connect(host=dialect.host, port=dialect.port, user=dialect.user,
                            password=dialect.password, connect_timeout=3, autocommit=True)
    try:
        cur = admin.cursor()
        cur.execute(sql, args)
        return cur.fetchall()
    finally:
        admin.close()


async def kill_connection(dialect, connection_id):
    """KILL a connection on the server and wait (at most 10 s) until the server has dropped it."""
    await threads.deferToThread(_admin_query, dialect, f"KILL {int(connection_id)}")
    for _ in range(500):
        rows = await threads.deferToThread(
            _admin_query, dialect,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (connection_id,))
        if rows[0][0] == 0:
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"the server did not drop connection {connection_id}")


def connection_id(txn):
    return txn.one("SELECT CONNECTION_ID()")[0]


@mysql_only
@pytest_twisted.ensureDeferred
async def test_mysql_connection_closed_sees_a_server_side_close(db_url):
    dialect = dialects.from_url(db_url)
    conn = dialect.connect()
    try:
        assert not dialect.connection_closed(conn)
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        (cid,) = cur.fetchone()
        conn.commit()
        assert not dialect.connection_closed(conn)  # idle after a transaction: alive
        await kill_connection(dialect, cid)
        assert dialect.connection_closed(conn)
    finally:
        conn.close()
    assert dialect.connection_closed(conn)  # closed on our side too


@mysql_only
@pytest_twisted.ensureDeferred
async def test_pool_replaces_a_connection_the_server_closed(db_url):
    # One pool thread, so the second transaction would reuse the first one's connection.
    dialect = dialects.from_url(db_url + "?pool=1")
    db = Database(dialect)
    try:
        first = await db.run("connection_id", connection_id)
        await kill_connection(dialect, first)
        second = await db.run("connection_id", connection_id)
        assert second != first
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_unreachable_mysql_is_unavailable():
    db = Database(dialects.from_url(f"mysql://root@127.0.0.1:{free_port()}/parley"))
    try:
        with pytest.raises(ImError) as info:
            await db.run("connection_id", connection_id)
        assert info.value.code == "unavailable"
    finally:
        db.close()
