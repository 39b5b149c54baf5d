"""Accounts and login sessions: the ``users`` and ``sessions`` tables, as transaction functions.

Each function takes the transaction first and runs on the pool: ``db.run("desc", fn, *args)``.
"""
from imserver.errors import ImError

PUBLIC_FIELDS = ("id", "username", "nickname", "avatar", "remark")
PRIVATE_FIELDS = ("phone", "age", "email", "address", "created")
PROFILE_COLUMNS = PUBLIC_FIELDS + PRIVATE_FIELDS
#: Columns a user may change with profile_set.
EDITABLE = ("nickname", "age", "email", "address", "remark", "avatar")
_TAKEN = "that username or phone number is taken"


def create_user(txn, username, phone, password_hash, nickname, now):
    """The new user's id; ``exists`` if the username or phone number is taken."""
    if txn.one("SELECT id FROM users WHERE username = ? OR (phone IS NOT NULL AND phone = ?)",
               (username, phone)):
        raise ImError("exists", _TAKEN)
    try:
        txn.execute("INSERT INTO users (username, phone, password_hash, nickname, created) "
                    "VALUES (?, ?, ?, ?, ?)", (username, phone, password_hash, nickname, now))
    except txn.dialect.integrity_errors:
        raise ImError("exists", _TAKEN) from None
    return txn.lastrowid


def credentials(txn, username):
    """(user_id, password_hash) for a username or phone number, or None."""
    return txn.one("SELECT id, password_hash FROM users WHERE username = ? OR phone = ?",
                   (username, username))


def password_hash(txn, user_id):
    return (txn.one("SELECT password_hash FROM users WHERE id = ?", (user_id,)) or (None,))[0]


def set_password(txn, user_id, password_hash, keep_session):
    """Store a new hash and end every other session of the user; returns the ended ids."""
    txn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
    ended = [r[0] for r in txn.all("SELECT id FROM sessions WHERE user_id = ? AND id <> ?",
                                   (user_id, keep_session))]
    txn.execute("DELETE FROM sessions WHERE user_id = ? AND id <> ?", (user_id, keep_session))
    return ended


def profile(txn, user_id):
    """Every profile column of the user as a dict, or None."""
    row = txn.one(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM users WHERE id = ?", (user_id,))
    return dict(zip(PROFILE_COLUMNS, row)) if row else None


def update_profile(txn, user_id, changes):
    bad = set(changes) - set(EDITABLE)
    if bad:
        raise ValueError(f"not editable: {sorted(bad)}")
    sets = ", ".join(f"{k} = ?" for k in changes)
    txn.execute(f"UPDATE users SET {sets} WHERE id = ?", (*changes.values(), user_id))


def search(txn, query, limit):
    """Users whose username or nickname contains ``query`` (LIKE wildcards escaped)."""
    pattern = "%" + query.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
    return [dict(zip(PUBLIC_FIELDS, r)) for r in txn.all(
        f"SELECT {', '.join(PUBLIC_FIELDS)} FROM users WHERE username LIKE ? ESCAPE '!' "
        "OR nickname LIKE ? ESCAPE '!' ORDER BY id LIMIT ?", (pattern, pattern, limit))]


def create_session(txn, user_id, token_hash, device, now):
    return txn.execute("INSERT INTO sessions (user_id, token_hash, device, created, last_seen) "
                       "VALUES (?, ?, ?, ?, ?)", (user_id, token_hash, device, now, now)).lastrowid


def session_by_token(txn, token_hash, now):
    """(session_id, user_id, device, username) for a live token, touching last_seen; or None."""
    row = txn.one("SELECT s.id, s.user_id, s.device, u.username FROM sessions s "
                  "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (token_hash,))
    if row:
        txn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, row[0]))
    return row


def sessions(txn, user_id):
    keys = ("session", "device", "created", "last_seen")
    return [dict(zip(keys, r)) for r in txn.all(
        "SELECT id, device, created, last_seen FROM sessions WHERE user_id = ? ORDER BY id",
        (user_id,))]


def delete_session(txn, user_id, session_id):
    """True if the user's session existed and is now gone."""
    return txn.execute("DELETE FROM sessions WHERE id = ? AND user_id = ?",
                       (session_id, user_id)).rowcount > 0
