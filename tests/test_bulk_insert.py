"""Multi-row INSERTs through ``Txn.executemany``: whatever the mix of types in a batch, every
value arrives as it was sent (the MySQL dialect renders these statements itself)."""
import pytest_twisted

from imserver.store import dialects
from imserver.store.pool import Database

ROWS = [
    # The first row's types shape the fast renderer on MySQL; the rows after it vary them.
    (1, 10, "plain", None, 1.0),
    (2, True, "it's \"quoted\" \\ back\\slash \\' %s %% ? \x00 nul", "x", 2.5),
    (3, 30, None, "emoji \U0001F600 ü", -1.25),
    (4, False, "'); DROP TABLE bulk; --", None, 0.0),
    (5, 50, "line\nbreak\ttab\r", "", 1e-3),
]


@pytest_twisted.ensureDeferred
async def test_mixed_types_in_one_batch_arrive_intact(db_url, tmp_path):
    db = Database(dialects.from_url(db_url, str(tmp_path)))
    try:
        def create_and_fill(txn):
            txn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, n INTEGER, a TEXT, b TEXT, "
                        "f DOUBLE)")
            txn.executemany("INSERT INTO bulk (id, n, a, b, f) VALUES (?, ?, ?, ?, ?)", ROWS)
            return txn.all("SELECT id, n, a, b, f FROM bulk ORDER BY id")
        got = await db.run("bulk", create_and_fill)
        assert [tuple(r) for r in got] == [(i, int(n), a, b, f) for i, n, a, b, f in ROWS]
        # The same statement shape again (the renderer is reused) with other types first.
        more = [(6, 60, None, "y", 2.0), (7, 70, "z", None, 3.0)]
        got = await db.run("bulk2", lambda txn: (
            txn.executemany("INSERT INTO bulk (id, n, a, b, f) VALUES (?, ?, ?, ?, ?)", more),
            txn.all("SELECT id, n, a, b, f FROM bulk WHERE id > 5 ORDER BY id"))[1])
        assert [tuple(r) for r in got] == more
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_non_friend_lookup_of_many_pairs_at_once(store):
    """The send batch's friendship check joins a derived table of pairs: 1,500 pairs, some
    friendships and some not, give exactly those that are not."""
    from imserver.store.messages import _not_friends

    def fill(txn):
        txn.executemany("INSERT INTO users (id, username, password_hash, created) VALUES (?, ?, ?, ?)",
                        [(i, f"u{i}", "x", 0) for i in range(1, 101)])
        friends = [(a, b) for a in range(1, 101) for b in range(1, 101) if a != b and (a * b) % 7 == 0]
        txn.executemany("INSERT INTO friends (user_id, friend_id, created) VALUES (?, ?, ?)",
                        [(a, b, 0) for a, b in friends])
        return set(friends)
    friends = await store.db.run("fill", fill)
    asked = {(a, b) for a in range(1, 101) for b in range(1, 16) if a != b}
    assert len(asked) > 1400
    got = await store.db.run("lookup", _not_friends, asked)
    assert got == asked - friends and got and asked & friends


@pytest_twisted.ensureDeferred
async def test_numbered_insert_numbers_its_rows_from_the_first_given(db_url, tmp_path, monkeypatch):
    """``numbered_insert`` prepares rows whose first column is not known yet; ``run(first)``
    inserts them numbered first, first + 1, ... A row whose unique key exists is skipped and
    not counted. With statements capped small (MySQL splits a long insert in several), every
    row still arrives once."""
    monkeypatch.setattr(dialects, "_MAX_STATEMENT", 120)
    db = Database(dialects.from_url(db_url, str(tmp_path)))
    sql = ("INSERT INTO bulk (id, n, a, b, f) VALUES (?, ?, ?, ?, ?) "
           + db.dialect.on_conflict_ignore("a", "id"))
    try:
        def create(txn):
            txn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, n INTEGER, a VARCHAR(200), "
                        "b TEXT, f DOUBLE, UNIQUE (a))")

        def insert(txn, rows, first):
            run = txn.numbered_insert(sql, rows)
            return run(first), txn.all("SELECT id, n, a, b, f FROM bulk ORDER BY id")
        await db.run("create", create)
        rows = [row[1:] for row in ROWS]
        changed, got = await db.run("insert", insert, rows, 100)
        assert changed == len(ROWS)
        assert [tuple(r) for r in got] == [(100 + i, int(n), a, b, f)
                                           for i, (n, a, b, f) in enumerate(rows)]
        # Again: the row whose "a" is taken already is skipped; the others are numbered on.
        again = [(7, "fresh one", None, 0.5), (8, "plain", "dup", 0.25), (9, "fresh two", "y", 1.5)]
        changed, got = await db.run("insert", insert, again, 200)
        assert changed == 2
        assert [tuple(r) for r in got if r[0] >= 200] == [(200, 7, "fresh one", None, 0.5),
                                                          (202, 9, "fresh two", "y", 1.5)]
        assert [r[0] for r in got if r[2] == "plain"] == [100]
    finally:
        db.close()
