"""The chat square's posts: bulk insert for group commit, trimmed to the newest ``keep``; history.

Post ids come from the stream counter (so they grow in commit order), but no user's stream
lists square posts: the square is read with ``square_history`` and heard live by listeners.
"""
from dataclasses import dataclass

COLUMNS = "id, sender, body, ts"


@dataclass(frozen=True)
class SquarePost:
    sender: int
    body: str
    ts: int


def post_event(row):
    post_id, sender, body, ts = row
    return {"id": post_id, "from": sender, "body": body, "ts": ts}


def post_batch(txn, positions, jobs, keep=1000):
    """Insert the batch's posts, then delete all but the newest ``keep``. Returns each post."""
    rows = [(positions.take(), job.sender, job.body, job.ts) for job in jobs]
    txn.executemany(f"INSERT INTO square_posts ({COLUMNS}) VALUES (?, ?, ?, ?)", rows)
    oldest_kept = txn.one("SELECT id FROM square_posts ORDER BY id DESC LIMIT 1 OFFSET ?", (keep - 1,))
    if oldest_kept is not None:
        txn.execute("DELETE FROM square_posts WHERE id < ?", (oldest_kept[0],))
    return [post_event(row) for row in rows]


def history(txn, before, limit):
    """Posts with id < before, newest first."""
    rows = txn.all(f"SELECT {COLUMNS} FROM square_posts WHERE id < ? ORDER BY id DESC LIMIT ?",
                   (before, limit + 1))
    return [post_event(r) for r in rows[:limit]], len(rows) > limit
