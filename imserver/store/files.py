"""Files: reference-counted content (``blobs``), user file references (``files``), read grants
(``file_access``) and unfinished uploads (``uploads``).

Every change to a blob's reference count is one statement inside the transaction that adds or
removes the ``files`` row, so the count equals the number of rows under any interleaving; so
is every change to a user's usage counter (``storage_used``: the sizes of their files and
unfinished uploads), which quota checks read instead of summing rows.
The bytes themselves live on disk (``imserver.transfer.blobs``); this module never touches them.
Each function is one transaction: ``db.run("desc", files.fn, *args)``.
"""
from imserver.errors import ImError

FILE_FIELDS = ("id", "owner", "sha256", "name", "mime", "size", "created")
UPLOAD_FIELDS = ("id", "owner", "sha256", "size", "name", "mime", "created", "touched")


def grant(txn, file_id, user_id=None, group_id=None):
    """Let a user (or a group's members) read a file; call inside the transaction that sends it.

    Idempotent. Messaging calls this when a file message is stored, so the recipient may download.
    """
    if (user_id is None) == (group_id is None):
        raise ValueError("grant to exactly one of user_id, group_id")
    column, value = ("user_id", user_id) if user_id is not None else ("group_id", group_id)
    txn.execute(f"{txn.dialect.insert_ignore('file_access')} (file_id, {column}) VALUES (?, ?)",
                (file_id, value))


def readable_file(txn, file_id, user_id):
    """The file's row as a dict if ``user_id`` owns it or was granted it; None if it does not
    exist; raises ``forbidden`` if it exists but is not theirs to read."""
    row = txn.one(f"SELECT {', '.join(FILE_FIELDS)} FROM files WHERE id = ?", (file_id,))
    if row is None:
        return None
    info = dict(zip(FILE_FIELDS, row))
    if info["owner"] != user_id and not txn.one(
            "SELECT 1 FROM file_access WHERE file_id = ? AND user_id = ?", (file_id, user_id)) \
            and not txn.one(
            "SELECT 1 FROM file_access a JOIN group_members m ON m.group_id = a.group_id "
            "WHERE a.file_id = ? AND m.user_id = ?", (file_id, user_id)):
        raise ImError("forbidden", "you have no access to this file")
    return info


def file_summary(txn, file_id):
    """What a message carrying the file shows of it."""
    row = txn.one("SELECT id, name, size, mime, sha256 FROM files WHERE id = ?", (file_id,))
    return dict(zip(("id", "name", "size", "mime", "sha256"), row))


def group_files(txn, group_id, before, limit):
    """Files posted to a group, newest first: ``[{file fields..., "owner"}]``."""
    cols = ", ".join(f"f.{c}" for c in FILE_FIELDS)
    return [dict(zip(FILE_FIELDS, r)) for r in txn.all(
        f"SELECT {cols} FROM file_access a JOIN files f ON f.id = a.file_id "
        "WHERE a.group_id = ? AND f.id < ? ORDER BY f.id DESC LIMIT ?", (group_id, before, limit))]


def _count(txn, owner, delta):
    """Move ``owner``'s usage counter by ``delta`` bytes; the row stays locked until commit."""
    txn.execute("INSERT INTO storage_used (user_id, used_bytes) VALUES (?, ?) "
                + txn.dialect.on_conflict_add("user_id", "used_bytes"), (owner, delta))


def used_bytes(txn, owner, lock=False):
    """Bytes ``owner`` holds in files and unfinished uploads (the counter, not a sum); with
    ``lock``, the counter's row is locked until commit (MySQL)."""
    row = txn.one("SELECT used_bytes FROM storage_used WHERE user_id = ?"
                  + (txn.dialect.for_update if lock else ""), (owner,))
    return int(row[0]) if row else 0


def _reserve(txn, owner, size, quota):
    """Count ``size`` more bytes for ``owner``, or raise ``quota_exceeded`` (the transaction
    rolls back, count and all). Taking the counter's lock first means two transactions of one
    user check one after the other, so they cannot both pass."""
    _count(txn, owner, size)
    if quota and used_bytes(txn, owner, lock=True) > quota:
        raise ImError("quota_exceeded", f"storing {size} more bytes would exceed your quota of "
                                        f"{quota} bytes")


def _insert_file(txn, owner, sha256, size, name, mime, now):
    txn.execute("INSERT INTO files (owner, sha256, name, mime, size, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (owner, sha256, name, mime, size, now))
    return txn.lastrowid


def owned_file(txn, owner, sha256, size):
    """The id of a file of ``owner`` with this content, or None."""
    return (txn.one("SELECT id FROM files WHERE owner = ? AND sha256 = ? AND size = ? "
                    "ORDER BY id LIMIT 1", (owner, sha256, size)) or (None,))[0]


def blob_exists(txn, sha256, size):
    return txn.one("SELECT 1 FROM blobs WHERE sha256 = ? AND size = ? AND refcount > 0",
                   (sha256, size)) is not None


def add_reference(txn, owner, sha256, size, name, mime, now, quota=0):
    """A new file of ``owner`` on existing content (instant upload); None if the content was
    deleted meanwhile."""
    if txn.execute("UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ? AND size = ? "
                   "AND refcount > 0", (sha256, size)).rowcount != 1:
        return None
    file_id = _insert_file(txn, owner, sha256, size, name, mime, now)
    _reserve(txn, owner, size, quota)  # last, as in every change: the blob's lock comes first
    return file_id


def add_blob_reference(txn, owner, sha256, size, name, mime, now, upload_id=None):
    """A new file on content just stored on disk (the blob row is created or counted up); the
    finished upload's row, if any, goes in the same transaction."""
    txn.execute("INSERT INTO blobs (sha256, size, refcount, created) VALUES (?, ?, 1, ?) "
                + txn.dialect.on_conflict_increment("sha256", "refcount"), (sha256, size, now))
    file_id = _insert_file(txn, owner, sha256, size, name, mime, now)
    if upload_id is not None:
        delete_upload(txn, upload_id)
    _count(txn, owner, size)
    return file_id


class _Gone(Exception):
    """The row went away under a concurrent transaction: roll back and report nothing done."""


def delete(txn, owner, file_id):
    """Remove the owner's file. Returns (sha256, last) — ``last`` when the content has no
    reference left and its bytes should go — or None if the owner has no such file.

    Run it with ``run_delete``, which turns a concurrent delete's rollback into None.
    """
    row = txn.one("SELECT sha256, size FROM files WHERE id = ? AND owner = ?", (file_id, owner))
    if row is None:
        return None
    sha256, size = row
    # The blob row first, as every other change of its files does: taking the files index
    # locks first deadlocks against a concurrent insert of the same content.
    txn.execute("UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ?", (sha256,))
    if txn.execute("DELETE FROM files WHERE id = ? AND owner = ?",
                   (file_id, owner)).rowcount != 1:
        raise _Gone()  # deleted meanwhile: roll the count back with the transaction
    last = txn.execute("DELETE FROM blobs WHERE sha256 = ? AND refcount <= 0",
                       (sha256,)).rowcount > 0
    _count(txn, owner, -size)
    return sha256, last


def run_delete(db, owner, file_id):
    """Run ``delete`` on ``db``: a Deferred of its result, None when it had to roll back."""
    d = db.run("file_delete", delete, owner, file_id)
    d.addErrback(lambda f: f.trap(_Gone) and None)
    return d


def list_files(txn, owner, limit):
    cols = ", ".join(FILE_FIELDS)
    return [dict(zip(FILE_FIELDS, r)) for r in txn.all(
        f"SELECT {cols} FROM files WHERE owner = ? ORDER BY id DESC LIMIT ?", (owner, limit))]


def refcount(txn, sha256):
    """(refcount, number of files rows) for a content hash; for checks and tests."""
    return ((txn.one("SELECT refcount FROM blobs WHERE sha256 = ?", (sha256,)) or (0,))[0],
            txn.one("SELECT COUNT(*) FROM files WHERE sha256 = ?", (sha256,))[0])


def begin_upload(txn, owner, sha256, size, name, mime, now, quota):
    """(upload_id, resumed): this user's unfinished upload of the same content, or a new one."""
    row = txn.one("SELECT id FROM uploads WHERE owner = ? AND sha256 = ? AND size = ? "
                  "ORDER BY id LIMIT 1", (owner, sha256, size))
    if row:
        txn.execute("UPDATE uploads SET touched = ? WHERE id = ?", (now, row[0]))
        return row[0], True
    _reserve(txn, owner, size, quota)
    txn.execute("INSERT INTO uploads (owner, sha256, size, name, mime, created, touched) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (owner, sha256, size, name, mime, now, now))
    return txn.lastrowid, False


def upload(txn, upload_id):
    """The unfinished upload's row as a dict, or None."""
    row = txn.one(f"SELECT {', '.join(UPLOAD_FIELDS)} FROM uploads WHERE id = ?", (upload_id,))
    return row and dict(zip(UPLOAD_FIELDS, row))


def touch_uploads(txn, touched):
    """Record the last activity (``{upload_id: ms}``) of uploads open in this process."""
    return txn.executemany("UPDATE uploads SET touched = ? WHERE id = ? AND touched < ?",
                           [(ms, i, ms) for i, ms in touched.items()])


def expired_uploads(txn, before):
    return [r[0] for r in txn.all("SELECT id FROM uploads WHERE touched < ? ORDER BY id",
                                  (before,))]


def delete_upload(txn, upload_id):
    """Remove an unfinished upload's row (cancelled, expired or finished); False if it was gone."""
    row = txn.one("SELECT owner, size FROM uploads WHERE id = ?" + txn.dialect.for_update,
                  (upload_id,))
    if row is None or txn.execute("DELETE FROM uploads WHERE id = ?",
                                  (upload_id,)).rowcount != 1:
        return False
    _count(txn, row[0], -row[1])
    return True
