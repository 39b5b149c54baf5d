"""A send batch that made its checks before the batch ahead of it committed, on MySQL (two
batches overlap there; SQLite has one writer and takes its lock at BEGIN, so they cannot)."""
import pytest

from imserver.store import dialects
from imserver.store.commit import Positions
from imserver.store.messages import Send, send_batch
from imserver.store.migrate import migrate
from imserver.store.pool import Txn


def _batch(conn, dialect, jobs):
    txn = Txn(conn.cursor(), dialect)
    dialect.begin(txn)
    positions = Positions(txn)
    out = send_batch(txn, positions, jobs)
    positions.save()
    conn.commit()
    return out


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_a_resend_of_what_the_batch_ahead_stored_is_found_after_its_commit(db_url, tmp_path):
    dialect = dialects.from_url(db_url, str(tmp_path))
    migrate(dialect, log=lambda text: None)
    setup, first, second = dialect.connect(), dialect.connect(), dialect.connect()
    try:
        cur = setup.cursor()
        for name in ("alice", "bob"):
            cur.execute("INSERT INTO users (username, password_hash, created) VALUES (%s, 'x', 0)", (name,))
        cur.execute("INSERT INTO friends (user_id, friend_id, created) VALUES (1, 2, 0), (2, 1, 0)")
        setup.commit()
        # The second batch begins and reads (as its friendship check does) before the first commits.
        txn = Txn(second.cursor(), dialect)
        dialect.begin(txn)
        assert txn.one("SELECT COUNT(*) FROM friends") == (2,)
        [(stored, duplicate)] = _batch(first, dialect, [Send(1, 2, "race", "hi", "text", None, 1)])
        assert duplicate is False
        positions = Positions(txn)
        results = send_batch(txn, positions, [Send(1, 2, "race", "hi", "text", None, 2),
                                              Send(1, 2, "other", "new", "text", None, 2)])
        positions.save()
        second.commit()
        (resent, was_duplicate), (fresh, fresh_duplicate) = results
        assert was_duplicate is True and resent["msg_id"] == stored["msg_id"]
        assert fresh_duplicate is False and fresh["msg_id"] > stored["msg_id"]
        cur.execute("SELECT client_id, body FROM messages ORDER BY pos")
        assert [(bytes(c).decode(), b) for c, b in cur.fetchall()] == [("race", "hi"), ("other", "new")]
        setup.commit()
    finally:
        for conn in (setup, first, second):
            conn.close()
