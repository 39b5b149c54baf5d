"""Accounts and login sessions: the ``users`` and ``sessions`` tables."""
from imserver.errors import ImError

PUBLIC_FIELDS = ("id", "username", "nickname", "avatar", "remark")
PRIVATE_FIELDS = ("phone", "age", "email", "address", "created")
PROFILE_COLUMNS = PUBLIC_FIELDS + PRIVATE_FIELDS
#: Columns a user may change with profile_set.
EDITABLE = ("nickname", "age", "email", "address", "remark", "avatar")


def _profile(row):
    return dict(zip(PROFILE_COLUMNS, row))


class Accounts:
    def __init__(self, db):
        self.db = db

    def create_user(self, username, phone, password_hash, nickname, now):
        return self.db.run("create_user", self._create_user_txn, username, phone, password_hash,
                           nickname, now)

    def _create_user_txn(self, txn, username, phone, password_hash, nickname, now):
        taken = txn.one("SELECT id FROM users WHERE username = ? OR (phone IS NOT NULL AND phone = ?)",
                        (username, phone))
        if taken:
            raise ImError("exists", "that username or phone number is taken")
        try:
            txn.execute("INSERT INTO users (username, phone, password_hash, nickname, created) "
                        "VALUES (?, ?, ?, ?, ?)", (username, phone, password_hash, nickname, now))
        except self.db.dialect.integrity_errors:
            raise ImError("exists", "that username or phone number is taken") from None
        return txn.lastrowid

    def credentials(self, username):
        """(user_id, password_hash) for a username or phone number, or None."""
        return self.db.run("credentials", lambda txn: txn.one(
            "SELECT id, password_hash FROM users WHERE username = ? OR phone = ?",
            (username, username)))

    def password_hash(self, user_id):
        return self.db.run("password_hash", lambda txn: (txn.one(
            "SELECT password_hash FROM users WHERE id = ?", (user_id,)) or (None,))[0])

    def set_password(self, user_id, password_hash, keep_session):
        """Store a new hash and end every other session of the user; returns the ended ids."""
        def txn_fn(txn):
            txn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            ended = [r[0] for r in txn.all(
                "SELECT id FROM sessions WHERE user_id = ? AND id <> ?", (user_id, keep_session))]
            txn.execute("DELETE FROM sessions WHERE user_id = ? AND id <> ?", (user_id, keep_session))
            return ended
        return self.db.run("set_password", txn_fn)

    def profile(self, user_id):
        cols = ", ".join(PROFILE_COLUMNS)
        return self.db.run("profile", lambda txn: (lambda row: row and _profile(row))(
            txn.one(f"SELECT {cols} FROM users WHERE id = ?", (user_id,))))

    def update_profile(self, user_id, changes):
        bad = set(changes) - set(EDITABLE)
        if bad:
            raise ValueError(f"not editable: {sorted(bad)}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        return self.db.run("update_profile", lambda txn: txn.execute(
            f"UPDATE users SET {sets} WHERE id = ?", (*changes.values(), user_id)))

    def search(self, query, limit):
        pattern = "%" + query.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        cols = ", ".join(PUBLIC_FIELDS)
        return self.db.run("user_search", lambda txn: [dict(zip(PUBLIC_FIELDS, r)) for r in txn.all(
            f"SELECT {cols} FROM users WHERE username LIKE ? ESCAPE '!' OR nickname LIKE ? ESCAPE '!' "
            "ORDER BY id LIMIT ?", (pattern, pattern, limit))])

    def create_session(self, user_id, token_hash, device, now):
        return self.db.run("create_session", lambda txn: txn.execute(
            "INSERT INTO sessions (user_id, token_hash, device, created, last_seen) VALUES (?, ?, ?, ?, ?)",
            (user_id, token_hash, device, now, now)).lastrowid)

    def session_by_token(self, token_hash, now):
        """(session_id, user_id, device, username) for a live token, touching last_seen; or None."""
        def txn_fn(txn):
            row = txn.one("SELECT s.id, s.user_id, s.device, u.username FROM sessions s "
                          "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (token_hash,))
            if row:
                txn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, row[0]))
            return row
        return self.db.run("session_by_token", txn_fn)

    def sessions(self, user_id):
        keys = ("session", "device", "created", "last_seen")
        return self.db.run("sessions", lambda txn: [dict(zip(keys, r)) for r in txn.all(
            "SELECT id, device, created, last_seen FROM sessions WHERE user_id = ? ORDER BY id",
            (user_id,))])

    def delete_session(self, user_id, session_id):
        """True if the user's session existed and is now gone."""
        return self.db.run("delete_session", lambda txn: txn.execute(
            "DELETE FROM sessions WHERE id = ? AND user_id = ?", (session_id, user_id)).rowcount > 0)
