"""Schema migrations on a database that already holds data, on SQLite and MySQL."""
import pytest

from imserver.errors import ImError
from imserver.store import dialects, files
from imserver.store.migrate import migrate
from imserver.store.pool import Txn
from imserver.store.stream import MESSAGE_COLUMNS, message_event

CLIENT_IDS = ["k", "café-☕", "a" * 64]


def test_exact_client_ids_keep_the_messages_stored_before(db_url, tmp_path):
    dialect = dialects.from_url(db_url, str(tmp_path))
    migrate(dialect, log=lambda text: None, upto=5)  # the schema an older server left
    conn = dialect.connect()
    try:
        txn = Txn(conn.cursor(), dialect)
        for name in ("alice", "bob"):
            txn.execute("INSERT INTO users (username, password_hash, created) VALUES (?, 'x', 0)", (name,))
        for pos, client_id in enumerate(CLIENT_IDS, 1):
            txn.execute(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, 1, 2, ?, 'text', ?, NULL, 0)",
                        (pos, client_id, f"body {pos}"))
        conn.commit()
        assert migrate(dialect, log=lambda text: None, upto=6) == ["0006_client_ids_exact.sql"]
        rows = txn.all(f"SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY pos")
        assert [message_event(row)["client_id"] for row in rows] == CLIENT_IDS
        # The unique key still holds for the old ids, and now tells "k " from "k".
        txn.execute(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (9, 1, 2, 'k ', 'text', 'b', NULL, 0)")
        with pytest.raises(dialect.integrity_errors):
            txn.execute(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (10, 1, 2, 'k', 'text', 'c', NULL, 0)")
        conn.rollback()
    finally:
        conn.close()


def test_usage_counters_are_filled_from_the_files_and_uploads_stored_before(db_url, tmp_path):
    dialect = dialects.from_url(db_url, str(tmp_path))
    migrate(dialect, log=lambda text: None, upto=6)
    conn = dialect.connect()
    try:
        txn = Txn(conn.cursor(), dialect)
        for name in ("alice", "bob", "carol"):
            txn.execute("INSERT INTO users (username, password_hash, created) VALUES (?, 'x', 0)", (name,))
        txn.execute("INSERT INTO blobs (sha256, size, refcount, created) VALUES (?, 100, 3, 0)", ("ab" * 32,))
        for owner in (1, 1, 2):
            txn.execute("INSERT INTO files (owner, sha256, name, mime, size, created) "
                        "VALUES (?, ?, 'f', 'm', 100, 0)", (owner, "ab" * 32))
        txn.execute("INSERT INTO uploads (owner, sha256, size, name, mime, created, touched) "
                    "VALUES (2, ?, 5000, 'u', 'm', 0, 0)", ("cd" * 32,))
        conn.commit()
        assert migrate(dialect, log=lambda text: None) == ["0007_storage_used.sql"]
        assert [files.used_bytes(txn, user) for user in (1, 2, 3)] == [200, 5100, 0]
        with pytest.raises(ImError) as info:  # the quota check reads the filled counter
            files.begin_upload(txn, 2, "ef" * 32, 1, "n", "m", 0, quota=5100)
        assert info.value.code == "quota_exceeded"
        conn.rollback()
        assert files.delete_upload(txn, 1)
        assert files.used_bytes(txn, 2) == 100
        conn.rollback()
    finally:
        conn.close()
