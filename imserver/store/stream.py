"""Each user's ordered stream: appending events and reading everything after a position.

A user's stream is the merge, by position, of several sources: their rows in ``events``
(friend requests, receipts, ...: ``events_source``), 1:1 messages they sent or received
(``message_source``), group messages and events (``store.group_messages``). Each domain
declares its sources; ``read_since`` is given the server's list. A source is
``fn(txn, user_id, since, limit)`` returning up to ``limit`` ``(pos, event_dict)`` pairs after
``since``, in order.
"""
import json

MESSAGE_COLUMNS = "pos, sender, recipient, client_id, kind, body, extra, ts"


def text(value):
    """A client id as read back: MySQL keeps client ids as bytes (VARBINARY, so that they
    compare exactly, trailing spaces included), SQLite as text."""
    return value.decode("utf-8") if type(value) is bytes else value


def message_event(row, tag="type"):
    """A message row as a stream event (``{"type": "message", ...}``); with ``tag="op"``, as the
    ``message`` push, which is the same dict with ``op`` in place of ``type``."""
    pos, sender, recipient, client_id, kind, body, extra, ts = row
    event = {tag: "message", "pos": pos, "msg_id": pos, "from": sender, "to": recipient,
             "body": body, "kind": kind, "ts": ts, "client_id": text(client_id)}
    if extra:
        event.update(json.loads(extra))
    return event


def append_event(txn, positions, user_id, type_, data, ts):
    """Add one event to a user's stream (inside a GroupCommitter batch).

    Returns ``(user_id, event)``: what the caller publishes once the batch has committed."""
    pos = positions.take()
    txn.execute("INSERT INTO events (pos, user_id, type, data, ts) VALUES (?, ?, ?, ?, ?)",
                (pos, user_id, type_, json.dumps(data), ts))
    event = {"pos": pos, "type": type_, "ts": ts}
    event.update(data)
    return user_id, event


def message_source(txn, user_id, since, limit):
    rows = txn.all(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient = ? AND pos > ? "
                   "ORDER BY pos LIMIT ?", (user_id, since, limit))
    rows += txn.all(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND recipient <> ? "
                    "AND pos > ? ORDER BY pos LIMIT ?", (user_id, user_id, since, limit))
    return [(r[0], message_event(r)) for r in rows]


def events_source(txn, user_id, since, limit):
    out = []
    for pos, type_, data, ts in txn.all(
            "SELECT pos, type, data, ts FROM events WHERE user_id = ? AND pos > ? ORDER BY pos LIMIT ?",
            (user_id, since, limit)):
        event = {"pos": pos, "type": type_, "ts": ts}
        event.update(json.loads(data))
        out.append((pos, event))
    return out


def read_since(txn, sources, user_id, since, limit):
    """(events, more): the first ``limit`` events after ``since`` from every source, in order."""
    merged = []
    for source in sources:
        merged.extend(source(txn, user_id, since, limit + 1))
    merged.sort(key=lambda pair: pair[0])
    return [event for _, event in merged[:limit]], len(merged) > limit


def head(txn):
    """The highest position handed out so far (an upper bound of every committed position)."""
    return txn.one("SELECT pos FROM stream_seq WHERE id = 1")[0]
