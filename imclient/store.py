"""The client's local store: one SQLite file per account (plain ``sqlite3``; it is local and small).

It keeps what a client must not lose or should not ask for twice: the stream position and the
positions seen since, messages by conversation, friends and known users, groups, the outbox of
unacknowledged sends, and unfinished file transfers.

History completeness: for each conversation, ``floor`` says "every message of this conversation
with ``msg_id > floor`` is here". The stream is synced from position 0, so a conversation's floor
starts at 0 (all of it); ``prune`` drops old messages and raises the floor, and history fetched
from the server lowers it again.
"""
import contextlib
import json
import sqlite3

_SCHEMA = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE seen (pos INTEGER PRIMARY KEY);
    CREATE TABLE messages (
        msg_id INTEGER PRIMARY KEY, peer INTEGER NOT NULL, sender INTEGER NOT NULL,
        recipient INTEGER NOT NULL, body TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
        client_id TEXT, extra TEXT);
    CREATE INDEX messages_by_peer ON messages (peer, msg_id);
    CREATE TABLE conversations (
        peer INTEGER PRIMARY KEY, floor INTEGER NOT NULL DEFAULT 0,
        delivered_upto INTEGER NOT NULL DEFAULT 0, read_upto INTEGER NOT NULL DEFAULT 0,
        my_read_upto INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE users (user_id INTEGER PRIMARY KEY, username TEXT, nickname TEXT);
    CREATE INDEX users_by_name ON users (username);
    CREATE TABLE friends (user_id INTEGER PRIMARY KEY, alias TEXT NOT NULL DEFAULT '',
                          data TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE friend_requests (from_user INTEGER NOT NULL, to_user INTEGER NOT NULL,
                                  greeting TEXT NOT NULL DEFAULT '', ts INTEGER,
                                  PRIMARY KEY (from_user, to_user));
    CREATE TABLE groups (group_id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
                         data TEXT NOT NULL DEFAULT '{}');
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE,
                         recipient INTEGER NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE transfers (
        transfer_id INTEGER PRIMARY KEY AUTOINCREMENT, direction TEXT NOT NULL,
        path TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT,
        upload_id INTEGER, file_id INTEGER, offset INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'active', created INTEGER NOT NULL, updated INTEGER NOT NULL);
    """,
]

MESSAGE_FIELDS = ("msg_id", "peer", "from", "to", "body", "kind", "ts", "client_id")
TRANSFER_FIELDS = ("transfer_id", "direction", "path", "name", "size", "sha256", "upload_id",
                   "file_id", "offset", "state", "created", "updated")
_TRANSFER_UPDATABLE = {"sha256", "upload_id", "file_id", "offset", "state", "updated"}


class LocalStore:
    def __init__(self, path):
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._depth = 0
        self._migrate()

    def _migrate(self):
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_SCHEMA[version:], start=version + 1):
            with self.batch():
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    def close(self):
        self.db.close()

    @contextlib.contextmanager
    def batch(self):
        """One transaction around several writes (nested batches join the outer one)."""
        if self._depth == 0:
            self.db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    def _all(self, sql, args=()):
        return self.db.execute(sql, args).fetchall()

    def _one(self, sql, args=()):
        return self.db.execute(sql, args).fetchone()

    # Meta and the stream position.
    def get(self, key, default=None):
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else json.loads(row[0])

    def set(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def position(self):
        """Every stream event at or below this position has been handled."""
        return self.get("position", 0)

    def set_position(self, pos):
        with self.batch():
            self.set("position", pos)
            self.db.execute("DELETE FROM seen WHERE pos <= ?", (pos,))

    def first_sight(self, pos):
        """Record that the event at ``pos`` is handled; False if it had been already."""
        if pos <= self.position:
            return False
        return self.db.execute("INSERT OR IGNORE INTO seen (pos) VALUES (?)", (pos,)).rowcount == 1

    # Messages and conversations.
    def add_message(self, event, me):
        """Store a ``message`` event (a push, a sync event, a history row); False if it was here."""
        peer = event["to"] if event["from"] == me else event["from"]
        extra = {k: v for k, v in event.items() if k not in _MESSAGE_KEYS}
        with self.batch():
            self.db.execute("INSERT OR IGNORE INTO conversations (peer) VALUES (?)", (peer,))
            return self.db.execute(
                "INSERT OR IGNORE INTO messages (msg_id, peer, sender, recipient, body, kind, ts, "
                "client_id, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event["msg_id"], peer, event["from"], event["to"], event["body"],
                 event.get("kind", "text"), event["ts"], event.get("client_id"),
                 json.dumps(extra) if extra else None)).rowcount == 1

    def message(self, msg_id):
        rows = self._messages("WHERE msg_id = ?", (msg_id,))
        return rows[0] if rows else None

    def history(self, peer, before=None, limit=50):
        """Local messages with ``peer`` older than ``before``, newest first."""
        return self._messages("WHERE peer = ? AND msg_id < ? ORDER BY msg_id DESC LIMIT ?",
                              (peer, before or 2 ** 62, limit))

    def _messages(self, where, args):
        out = []
        for row in self._all("SELECT msg_id, peer, sender, recipient, body, kind, ts, client_id, "
                             f"extra FROM messages {where}", args):
            message = dict(zip(MESSAGE_FIELDS, row[:-1]))
            message.update(json.loads(row[-1]) if row[-1] else {})
            out.append(message)
        return out

    def floor(self, peer):
        row = self._one("SELECT floor FROM conversations WHERE peer = ?", (peer,))
        return 0 if row is None else row[0]

    def set_floor(self, peer, floor):
        with self.batch():
            self.db.execute("INSERT OR IGNORE INTO conversations (peer) VALUES (?)", (peer,))
            self.db.execute("UPDATE conversations SET floor = ? WHERE peer = ?", (floor, peer))

    def prune(self, peer, keep):
        """Drop all but the newest ``keep`` messages with ``peer``; history will fetch them again."""
        kept = self.history(peer, limit=keep)
        if len(kept) < keep:
            return 0
        oldest = kept[-1]["msg_id"] if kept else 2 ** 62
        with self.batch():
            n = self.db.execute("DELETE FROM messages WHERE peer = ? AND msg_id < ?", (peer, oldest)).rowcount
            self.set_floor(peer, max(self.floor(peer), oldest - 1))
        return n

    def conversations(self):
        """``[{peer, last_msg_id, last_ts, count, unread}]``, most recent first."""
        keys = ("peer", "last_msg_id", "last_ts", "count", "unread")
        return [dict(zip(keys, r)) for r in self._all(
            "SELECT m.peer, MAX(m.msg_id), MAX(m.ts), COUNT(*), "
            "SUM(CASE WHEN m.recipient <> m.peer AND m.msg_id > c.my_read_upto THEN 1 ELSE 0 END) "
            "FROM messages m JOIN conversations c ON c.peer = m.peer "
            "GROUP BY m.peer ORDER BY MAX(m.msg_id) DESC")]

    def receipt(self, peer, column, msg_id):
        """Move a receipt marker (``delivered_upto``/``read_upto``: the peer's, about my messages;
        ``my_read_upto``: mine) forward; markers never go back."""
        assert column in ("delivered_upto", "read_upto", "my_read_upto")
        with self.batch():
            self.db.execute("INSERT OR IGNORE INTO conversations (peer) VALUES (?)", (peer,))
            self.db.execute(f"UPDATE conversations SET {column} = MAX({column}, ?) WHERE peer = ?",
                            (msg_id, peer))

    def receipts(self, peer):
        row = self._one("SELECT delivered_upto, read_upto, my_read_upto FROM conversations "
                        "WHERE peer = ?", (peer,))
        return dict(zip(("delivered_upto", "read_upto", "my_read_upto"), row or (0, 0, 0)))

    # People.
    def remember_user(self, user_id, username=None, nickname=None):
        self.db.execute("INSERT INTO users (user_id, username, nickname) VALUES (?, ?, ?) "
                        "ON CONFLICT (user_id) DO UPDATE SET username = COALESCE(excluded.username, "
                        "username), nickname = COALESCE(excluded.nickname, nickname)",
                        (user_id, username, nickname))

    def user_by_name(self, username):
        row = self._one("SELECT user_id FROM users WHERE username = ?", (username.lower(),))
        return row and row[0]

    def username(self, user_id):
        row = self._one("SELECT username FROM users WHERE user_id = ?", (user_id,))
        return row and row[0]

    def set_friends(self, friends):
        """Replace the friend list with the server's (``friends`` op rows)."""
        with self.batch():
            self.db.execute("DELETE FROM friends")
            for f in friends:
                self.remember_user(f["user_id"], f.get("username"), f.get("nickname"))
                self.db.execute("INSERT INTO friends (user_id, alias, data) VALUES (?, ?, ?)",
                                (f["user_id"], f.get("alias", ""), json.dumps(f)))

    def add_friend(self, user_id):
        self.db.execute("INSERT OR IGNORE INTO friends (user_id, data) VALUES (?, ?)",
                        (user_id, json.dumps({"user_id": user_id})))

    def set_alias(self, user_id, alias):
        self.db.execute("UPDATE friends SET alias = ? WHERE user_id = ?", (alias, user_id))

    def remove_friend(self, user_id):
        self.db.execute("DELETE FROM friends WHERE user_id = ?", (user_id,))

    def friends(self):
        out = []
        for user_id, alias, data, username in self._all(
                "SELECT f.user_id, f.alias, f.data, u.username FROM friends f "
                "LEFT JOIN users u ON u.user_id = f.user_id ORDER BY f.user_id"):
            friend = json.loads(data)
            friend.update(user_id=user_id, alias=alias, username=friend.get("username") or username)
            out.append(friend)
        return out

    def add_request(self, from_user, to_user, greeting, ts):
        """Remember a pending friend request; False if it was known."""
        return self.db.execute("INSERT OR IGNORE INTO friend_requests (from_user, to_user, greeting, ts) "
                               "VALUES (?, ?, ?, ?)", (from_user, to_user, greeting, ts)).rowcount == 1

    def drop_requests(self, a, b):
        self.db.execute("DELETE FROM friend_requests WHERE (from_user = ? AND to_user = ?) "
                        "OR (from_user = ? AND to_user = ?)", (a, b, b, a))

    # Groups: what the ``groups`` op last said.
    def set_groups(self, groups):
        with self.batch():
            self.db.execute("DELETE FROM groups")
            for g in groups:
                gid = g.get("group_id", g.get("group", g.get("id")))
                self.db.execute("INSERT OR REPLACE INTO groups (group_id, name, data) VALUES (?, ?, ?)",
                                (gid, g.get("name", ""), json.dumps(g)))

    def groups(self):
        return [json.loads(r[0]) for r in self._all("SELECT data FROM groups ORDER BY group_id")]

    # The outbox: sends not yet acknowledged, in the order they were made.
    def outbox_add(self, client_id, recipient, body, created):
        self.db.execute("INSERT OR IGNORE INTO outbox (client_id, recipient, body, created) "
                        "VALUES (?, ?, ?, ?)", (client_id, recipient, body, created))

    def outbox(self):
        keys = ("client_id", "to", "body", "created")
        return [dict(zip(keys, r)) for r in self._all(
            "SELECT client_id, recipient, body, created FROM outbox ORDER BY seq")]

    def outbox_remove(self, client_id):
        return self.db.execute("DELETE FROM outbox WHERE client_id = ?", (client_id,)).rowcount == 1

    # Transfers: enough to offer "continue?" after a crash.
    def transfer_add(self, direction, path, name, size, sha256, now, upload_id=None, file_id=None):
        return self.db.execute(
            "INSERT INTO transfers (direction, path, name, size, sha256, upload_id, file_id, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (direction, path, name, size, sha256, upload_id, file_id, now, now)).lastrowid

    def transfer_update(self, transfer_id, **fields):
        unknown = set(fields) - _TRANSFER_UPDATABLE
        if unknown:
            raise ValueError(f"not transfer fields: {sorted(unknown)}")
        names = sorted(fields)
        self.db.execute(f"UPDATE transfers SET {', '.join(f'{n} = ?' for n in names)} "
                        "WHERE transfer_id = ?", (*(fields[n] for n in names), transfer_id))

    def transfers(self, unfinished=True):
        where = "WHERE state <> 'done'" if unfinished else ""
        return [dict(zip(TRANSFER_FIELDS, r)) for r in self._all(
            f"SELECT {', '.join(TRANSFER_FIELDS)} FROM transfers {where} ORDER BY transfer_id")]

    def transfer_remove(self, transfer_id):
        self.db.execute("DELETE FROM transfers WHERE transfer_id = ?", (transfer_id,))


_MESSAGE_KEYS = {"msg_id", "from", "to", "body", "kind", "ts", "client_id", "pos", "type", "op"}
