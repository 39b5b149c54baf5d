"""The client's local store: one SQLite file per account (plain ``sqlite3``; it is local and small).

It keeps what a client must not lose or should not ask for twice: the stream position and the
positions seen since, messages by conversation (with the state of each message I sent), group
messages and events, friends and known users, groups, the outbox of unacknowledged sends, and
unfinished file transfers.

``LocalStore`` is plain blocking SQL on one connection; the client never calls it on the reactor
thread but through ``imclient.worker.StoreWorker``, which runs it on a thread of its own. Each
write notes what it changed (``changes``: ``(table, key)`` pairs) for the worker to announce once
its transaction has committed.

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
    # 2: per-message state; group sends in the outbox (no recipient), failed sends kept; groups'
    # messages and events.
    """
    ALTER TABLE messages ADD COLUMN state TEXT;
    CREATE TABLE outbox_new (seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL,
                             recipient INTEGER, group_id INTEGER, body TEXT NOT NULL,
                             extra TEXT, created INTEGER NOT NULL,
                             state TEXT NOT NULL DEFAULT 'queued', error TEXT);
    INSERT INTO outbox_new (seq, client_id, recipient, body, created)
        SELECT seq, client_id, recipient, body, created FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE UNIQUE INDEX outbox_by_client_id ON outbox (client_id, COALESCE(group_id, 0));
    CREATE TABLE group_messages (
        msg_id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL, seq INTEGER NOT NULL,
        sender INTEGER NOT NULL, body TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
        client_id TEXT, state TEXT, extra TEXT);
    CREATE INDEX group_messages_by_group ON group_messages (group_id, msg_id);
    CREATE TABLE group_events (pos INTEGER PRIMARY KEY, group_id INTEGER NOT NULL,
                               type TEXT NOT NULL, data TEXT NOT NULL);
    """,
]

MESSAGE_FIELDS = ("msg_id", "peer", "from", "to", "body", "kind", "ts", "client_id", "state")
GROUP_MESSAGE_FIELDS = ("msg_id", "group", "seq", "from", "body", "kind", "ts", "client_id", "state")
OUTBOX_FIELDS = ("client_id", "to", "group", "body", "extra", "created", "state", "error")
#: How far each state of a message I sent has come; a state only moves forward.
_STATE_RANK = {None: 0, "queued": 1, "sent": 2, "acked": 3, "delivered": 4, "read": 5}
TRANSFER_FIELDS = ("transfer_id", "direction", "path", "name", "size", "sha256", "upload_id",
                   "file_id", "offset", "state", "created", "updated")
_TRANSFER_UPDATABLE = {"sha256", "upload_id", "file_id", "offset", "state", "updated"}


class LocalStore:
    def __init__(self, path):
        self.path = path
        # The worker thread opens it and is the only thread to use it afterwards.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._depth = 0
        self.changes = []
        self._migrate()

    def _changed(self, table, key=None):
        self.changes.append((table, key))

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
        self._changed("position", pos)

    def first_sight(self, pos):
        """Record that the event at ``pos`` is handled; False if it had been already."""
        if pos <= self.position:
            return False
        return self.db.execute("INSERT OR IGNORE INTO seen (pos) VALUES (?)", (pos,)).rowcount == 1

    # Messages and conversations.
    def add_message(self, event, me, state=None):
        """Store a ``message`` event (a push, a sync event, a history row); False if it was here.
        ``state`` is that of a message I sent (``acked`` once the server has it)."""
        peer = event["to"] if event["from"] == me else event["from"]
        extra = {k: v for k, v in event.items() if k not in _MESSAGE_KEYS}
        with self.batch():
            self.db.execute("INSERT OR IGNORE INTO conversations (peer) VALUES (?)", (peer,))
            new = self.db.execute(
                "INSERT OR IGNORE INTO messages (msg_id, peer, sender, recipient, body, kind, ts, "
                "client_id, state, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event["msg_id"], peer, event["from"], event["to"], event["body"],
                 event.get("kind", "text"), event["ts"], event.get("client_id"), state,
                 json.dumps(extra) if extra else None)).rowcount == 1
        if new:
            self._changed("messages", peer)
        return new

    def message(self, msg_id):
        rows = self._messages("WHERE msg_id = ?", (msg_id,))
        return rows[0] if rows else None

    def history(self, peer, before=None, limit=50):
        """Local messages with ``peer`` older than ``before``, newest first."""
        return self._messages("WHERE peer = ? AND msg_id < ? ORDER BY msg_id DESC LIMIT ?",
                              (peer, before or 2 ** 62, limit))

    def _messages(self, where, args):
        return _rows(MESSAGE_FIELDS, self._all(
            "SELECT msg_id, peer, sender, recipient, body, kind, ts, client_id, state, extra "
            f"FROM messages {where}", args))

    def advance_states(self, peer, me, upto, state):
        """Move my messages to ``peer`` up to ``upto`` forward to ``state`` (``delivered`` or
        ``read``); returns ``[(client_id, msg_id)]`` of those that moved."""
        lower = [k for k, rank in _STATE_RANK.items() if k and rank < _STATE_RANK[state]]
        rows = self._all(
            f"UPDATE messages SET state = ? WHERE peer = ? AND sender = ? AND msg_id <= ? "
            f"AND state IN ({', '.join('?' * len(lower))}) RETURNING client_id, msg_id",
            (state, peer, me, upto, *lower))
        if rows:
            self._changed("messages", peer)
        return sorted(rows, key=lambda r: r[1])

    def sent_message(self, client_id, group=None):
        """``(msg_id, ts, recipient)`` of the stored message I sent with this client id."""
        if group:
            return self._one("SELECT msg_id, ts, NULL FROM group_messages WHERE client_id = ? "
                             "AND group_id = ?", (client_id, group))
        return self._one("SELECT msg_id, ts, recipient FROM messages WHERE client_id = ? "
                         "AND recipient = peer", (client_id,))

    def message_state(self, client_id, group=None):
        """The state of a message I sent, by its client id: from the outbox while it is there,
        else from the stored message; None if unknown."""
        row = self._one("SELECT state FROM outbox WHERE client_id = ? AND COALESCE(group_id, 0) = ?",
                        (client_id, group or 0))
        if row is None:
            table = "group_messages" if group else "messages"
            row = self._one(f"SELECT state FROM {table} WHERE client_id = ?", (client_id,))
        return row and row[0]

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
        self._changed("conversations", peer)

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
        self._changed("users", user_id)

    def user_by_name(self, username):
        row = self._one("SELECT user_id FROM users WHERE username = ?", (username.lower(),))
        return row and row[0]

    def username(self, user_id):
        row = self._one("SELECT username FROM users WHERE user_id = ?", (user_id,))
        return row and row[0]

    def usernames(self):
        """``{user_id: username}`` of every user known here."""
        return dict(self._all("SELECT user_id, username FROM users WHERE username IS NOT NULL"))

    def set_friends(self, friends):
        """Replace the friend list with the server's (``friends`` op rows)."""
        with self.batch():
            self.db.execute("DELETE FROM friends")
            for f in friends:
                self.remember_user(f["user_id"], f.get("username"), f.get("nickname"))
                self.db.execute("INSERT INTO friends (user_id, alias, data) VALUES (?, ?, ?)",
                                (f["user_id"], f.get("alias", ""), json.dumps(f)))
        self._changed("friends")

    def add_friend(self, user_id):
        self.db.execute("INSERT OR IGNORE INTO friends (user_id, data) VALUES (?, ?)",
                        (user_id, json.dumps({"user_id": user_id})))
        self._changed("friends", user_id)

    def set_alias(self, user_id, alias):
        self.db.execute("UPDATE friends SET alias = ? WHERE user_id = ?", (alias, user_id))
        self._changed("friends", user_id)

    def remove_friend(self, user_id):
        self.db.execute("DELETE FROM friends WHERE user_id = ?", (user_id,))
        self._changed("friends", user_id)

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
        new = self.db.execute("INSERT OR IGNORE INTO friend_requests (from_user, to_user, greeting, "
                              "ts) VALUES (?, ?, ?, ?)", (from_user, to_user, greeting, ts)).rowcount == 1
        if new:
            self._changed("friend_requests")
        return new

    def drop_requests(self, a, b):
        self.db.execute("DELETE FROM friend_requests WHERE (from_user = ? AND to_user = ?) "
                        "OR (from_user = ? AND to_user = ?)", (a, b, b, a))
        self._changed("friend_requests")

    # Groups: what the ``groups`` op last said, kept current by the group events.
    def set_groups(self, groups):
        with self.batch():
            self.db.execute("DELETE FROM groups")
            for g in groups:
                self.put_group(g)

    def put_group(self, group):
        gid = group.get("group", group.get("group_id"))
        self.db.execute("INSERT OR REPLACE INTO groups (group_id, name, data) VALUES (?, ?, ?)",
                        (gid, group.get("name", ""), json.dumps(group)))
        self._changed("groups", gid)

    def group(self, group_id):
        row = self._one("SELECT data FROM groups WHERE group_id = ?", (group_id,))
        return row and json.loads(row[0])

    def drop_group(self, group_id):
        self.db.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
        self._changed("groups", group_id)

    def groups(self):
        return [json.loads(r[0]) for r in self._all("SELECT data FROM groups ORDER BY group_id")]

    def add_group_message(self, event, state=None):
        """Store a ``group_message`` event or history row; False if it was here."""
        extra = {k: v for k, v in event.items() if k not in _GROUP_MESSAGE_KEYS}
        new = self.db.execute(
            "INSERT OR IGNORE INTO group_messages (msg_id, group_id, seq, sender, body, kind, ts, "
            "client_id, state, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event["msg_id"], event["group"], event.get("seq", 0), event["from"],
             event.get("body", ""), event.get("kind", "text"), event["ts"],
             event.get("client_id"), state, json.dumps(extra) if extra else None)).rowcount == 1
        if new:
            self._changed("group_messages", event["group"])
        return new

    def group_history(self, group_id, before=None, limit=50):
        """Local messages of a group older than ``before``, newest first."""
        return _rows(GROUP_MESSAGE_FIELDS, self._all(
            "SELECT msg_id, group_id, seq, sender, body, kind, ts, client_id, state, extra "
            "FROM group_messages WHERE group_id = ? AND msg_id < ? ORDER BY msg_id DESC LIMIT ?",
            (group_id, before or 2 ** 62, limit)))

    def add_group_event(self, event):
        self.db.execute("INSERT OR IGNORE INTO group_events (pos, group_id, type, data) "
                        "VALUES (?, ?, ?, ?)", (event["pos"], event["group"], event["type"],
                                                json.dumps(event)))
        self._changed("group_events", event["group"])

    def group_events(self, group_id):
        return [json.loads(r[0]) for r in self._all(
            "SELECT data FROM group_events WHERE group_id = ? ORDER BY pos", (group_id,))]

    # The outbox: sends not yet acknowledged, in the order they were made, and failed ones.
    def outbox_add(self, client_id, recipient, body, created, group=None, extra=None):
        self.db.execute("INSERT OR IGNORE INTO outbox (client_id, recipient, group_id, body, extra, "
                        "created) VALUES (?, ?, ?, ?, ?, ?)",
                        (client_id, recipient, group, body, json.dumps(extra) if extra else None,
                         created))
        self._changed("outbox", client_id)

    def outbox(self, failed=False):
        """Unacknowledged sends, oldest first (with ``failed``: the sends refused for good)."""
        return self._outbox_rows("state = 'failed'" if failed else "state <> 'failed'")

    def _outbox_rows(self, where, args=()):
        out = []
        for row in self._all("SELECT client_id, recipient, group_id, body, extra, created, state, "
                             f"error FROM outbox WHERE {where} ORDER BY seq", args):
            item = dict(zip(OUTBOX_FIELDS, row))
            item["extra"] = json.loads(item["extra"]) if item["extra"] else {}
            out.append(item)
        return out

    def outbox_row(self, client_id, group=None):
        """The outbox's row for this send (waiting or failed), or None."""
        rows = self._outbox_rows("client_id = ? AND COALESCE(group_id, 0) = ?", (client_id, group or 0))
        return rows[0] if rows else None

    def outbox_state(self, client_id, state, group=None, error=None):
        n = self.db.execute("UPDATE outbox SET state = ?, error = ? WHERE client_id = ? "
                            "AND COALESCE(group_id, 0) = ?",
                            (state, error, client_id, group or 0)).rowcount
        self._changed("outbox", client_id)
        return n == 1

    def outbox_remove(self, client_id, group=None):
        n = self.db.execute("DELETE FROM outbox WHERE client_id = ? AND COALESCE(group_id, 0) = ?",
                            (client_id, group or 0)).rowcount
        self._changed("outbox", client_id)
        return n == 1

    # Transfers: enough to offer "continue?" after a crash.
    def transfer_add(self, direction, path, name, size, sha256, now, upload_id=None, file_id=None):
        transfer_id = self.db.execute(
            "INSERT INTO transfers (direction, path, name, size, sha256, upload_id, file_id, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (direction, path, name, size, sha256, upload_id, file_id, now, now)).lastrowid
        self._changed("transfers", transfer_id)
        return transfer_id

    def transfer_update(self, transfer_id, **fields):
        unknown = set(fields) - _TRANSFER_UPDATABLE
        if unknown:
            raise ValueError(f"not transfer fields: {sorted(unknown)}")
        names = sorted(fields)
        self.db.execute(f"UPDATE transfers SET {', '.join(f'{n} = ?' for n in names)} "
                        "WHERE transfer_id = ?", (*(fields[n] for n in names), transfer_id))
        self._changed("transfers", transfer_id)

    def transfer(self, transfer_id):
        row = self._one(f"SELECT {', '.join(TRANSFER_FIELDS)} FROM transfers WHERE transfer_id = ?",
                        (transfer_id,))
        return row and dict(zip(TRANSFER_FIELDS, row))

    def transfers(self, unfinished=True):
        where = "WHERE state NOT IN ('done', 'cancelled', 'failed')" if unfinished else ""
        return [dict(zip(TRANSFER_FIELDS, r)) for r in self._all(
            f"SELECT {', '.join(TRANSFER_FIELDS)} FROM transfers {where} ORDER BY transfer_id")]

    def transfer_remove(self, transfer_id):
        self.db.execute("DELETE FROM transfers WHERE transfer_id = ?", (transfer_id,))
        self._changed("transfers", transfer_id)


_MESSAGE_KEYS = {"msg_id", "from", "to", "body", "kind", "ts", "client_id", "pos", "type", "op",
                 "state"}
_GROUP_MESSAGE_KEYS = {"msg_id", "group", "seq", "from", "body", "kind", "ts", "client_id", "pos",
                       "type", "op", "state"}


def _rows(fields, rows):
    """Message rows as dicts: the named columns, then the wire fields kept in ``extra``."""
    out = []
    for row in rows:
        item = dict(zip(fields, row[:-1]))
        item.update(json.loads(row[-1]) if row[-1] else {})
        out.append(item)
    return out
