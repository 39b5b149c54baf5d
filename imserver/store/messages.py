"""1:1 messages: bulk insert for group commit (idempotent by client id), history, receipts."""
import json
from typing import NamedTuple

from imserver.errors import ImError
from imserver.store import files
from imserver.store.stream import MESSAGE_COLUMNS, append_event, message_event


class Send(NamedTuple):
    """One ``send`` job (a tuple: built once per message, so it must be cheap to make)."""
    sender: int
    recipient: int
    client_id: str
    body: str
    kind: str
    extra: dict | None
    ts: int
    file: dict | None = None  # {"id", "kind", "duration"?}: a file message


def _placeholders(n):
    return ", ".join("?" * n)


def send_batch(txn, positions, jobs):
    """The group-commit function for ``send`` jobs: one friendship query and one bulk insert.
    Returns, per job, ``(push, duplicate)`` or an ImError; ``push`` is the message's ``message``
    push (its stream event with ``op`` for ``type``), built here once.

    Idempotency rests on the unique ``(sender, client_id)`` key: rows whose key exists are
    skipped by the insert itself, and only when the insert reports fewer rows than it was given
    (a client resending after a lost ack, rare) are the earlier messages looked up. A send's
    position taken for a row that turned out to be a duplicate is left unused: positions only
    ever grow, and a reader never relies on them being consecutive."""
    strangers = _not_friends(txn, {(j.sender, j.recipient) for j in jobs})
    missing_users = _missing_users(txn, {recipient for _, recipient in strangers})
    results, accepted, seen = [], [], set()
    for job in jobs:
        key = (job.sender, job.client_id)
        if key in seen:
            results.append(key)  # a resend inside this batch: answered below with the first
        elif job.recipient in missing_users:
            results.append(ImError("not_found", "no such user"))
        elif (job.sender, job.recipient) in strangers:
            results.append(ImError("not_friends", "you can only message your friends"))
        else:
            file = None
            if job.file:  # may the sender share it? (a read: no lock taken yet)
                try:
                    file = files.readable_file(txn, job.file["id"], job.sender)
                except ImError as e:
                    results.append(e)
                    continue
                if file is None:
                    results.append(ImError("not_found", "no such file"))
                    continue
            seen.add(key)
            accepted.append((job, file))
            results.append(None)
    # Everything the insert needs except the positions is made now, while the batch before
    # may still hold the position lock. Then the first position takes that lock until this
    # batch commits: from there on only the writes run.
    rows, fresh = [], {}  # fresh: (sender, client_id) -> the push, in the order of rows
    for job, file in accepted:
        extra = _file_extra(job, file) if file else job.extra
        row = (None, job.sender, job.recipient, job.client_id, job.kind, job.body,
               json.dumps(extra) if extra else None, job.ts)
        rows.append(row[1:])
        fresh[(job.sender, job.client_id)] = message_event(row, "op")
    duplicates = set()
    if rows:
        insert = txn.numbered_insert(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            + txn.dialect.on_conflict_ignore("sender, client_id", "pos"), rows)
        first = positions.reserve(len(rows))
        for pos, event in enumerate(fresh.values(), first):
            event["pos"] = event["msg_id"] = pos
        for job, file in accepted:
            if file:  # let the recipient read the file
                files.grant(txn, file["id"], user_id=job.recipient)
        inserted = insert(first)
        if inserted != len(rows):
            duplicates = _earlier_sends(txn, fresh, len(rows) - inserted)
    out = []
    for job, result in zip(jobs, results):
        key = (job.sender, job.client_id)
        if result is None:
            out.append((fresh[key], key in duplicates))
        elif type(result) is tuple:
            out.append((fresh[key], True))
        else:
            out.append(result)
    return out


def _earlier_sends(txn, fresh, expected):
    """Replace in ``fresh`` the events of sends the insert skipped because their client id was
    used before, with the messages stored then; returns their keys."""
    args = [x for key in fresh for x in key]
    columns = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
    stored = txn.all(f"SELECT {columns} FROM {txn.dialect.pairs(len(fresh))} p "
                     "JOIN messages m ON m.sender = p.a AND m.client_id = p.b", args)
    duplicates = set()
    for row in stored:
        event = message_event(row, "op")
        key = (event["from"], event["client_id"])
        if event["pos"] != fresh[key]["pos"]:
            fresh[key] = event
            duplicates.add(key)
    if len(duplicates) != expected:
        # Only the (sender, client_id) key may make the insert skip a row: anything else
        # (a position taken twice) would lose a message, so the whole batch fails instead.
        raise RuntimeError(f"the insert skipped {expected} rows but {len(duplicates)} were "
                           "earlier sends")
    return duplicates


def _file_extra(job, info):
    """The extra of a message carrying the file ``info`` (which the sender may share)."""
    attached = {k: info[k] for k in ("id", "name", "size", "mime", "sha256")}
    attached.update({k: v for k, v in job.file.items() if k in ("kind", "duration")})
    return {"file": attached}


def _not_friends(txn, pairs):
    """Which of the ``(user, friend)`` pairs are not friendships: one indexed lookup each.

    Asked this way round, the answer is almost always empty, so the pool thread (which needs
    the GIL for every row it reads) has nothing to read back."""
    pairs = sorted(pairs)
    args = [x for pair in pairs for x in pair]
    return set(txn.all(f"SELECT p.a, p.b FROM {txn.dialect.pairs(len(pairs))} p "
                       "LEFT JOIN friends f ON f.user_id = p.a AND f.friend_id = p.b "
                       "WHERE f.user_id IS NULL", args))


def _missing_users(txn, user_ids):
    if not user_ids:
        return set()
    ids = sorted(user_ids)
    found = {r[0] for r in txn.all(f"SELECT id FROM users WHERE id IN ({_placeholders(len(ids))})", ids)}
    return set(ids) - found


def history(txn, user_id, peer, before, limit):
    """Messages between two users with position < before, newest first."""
    rows = []
    for a, b in ((user_id, peer), (peer, user_id)):
        rows += txn.all(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND recipient = ? "
                        "AND pos < ? ORDER BY pos DESC LIMIT ?", (a, b, before, limit + 1))
    rows.sort(key=lambda r: r[0], reverse=True)
    return [message_event(r) for r in rows[:limit]], len(rows) > limit


def mark(txn, positions, reader, peer, msg_id, kind, ts):
    """Record that ``reader`` has received (``delivered``) or read (``read``) ``peer``'s messages up
    to ``msg_id``; append a receipt event to both users' streams. Returns the events, or None
    when the marker did not move forward."""
    row = txn.one("SELECT pos FROM messages WHERE pos = ? AND sender = ? AND recipient = ?",
                  (msg_id, peer, reader))
    if row is None:
        raise ImError("not_found", "no such message from that user")
    current = txn.one("SELECT delivered_upto, read_upto FROM receipts WHERE user_id = ? AND peer_id = ?",
                      (reader, peer))
    if current is None:
        txn.execute("INSERT INTO receipts (user_id, peer_id, delivered_upto, read_upto) VALUES (?, ?, 0, 0)",
                    (reader, peer))
        current = (0, 0)
    delivered, read = current
    if kind == "read":
        if msg_id <= read:
            return None
        read, delivered = msg_id, max(delivered, msg_id)
    else:
        if msg_id <= delivered:
            return None
        delivered = msg_id
    txn.execute("UPDATE receipts SET delivered_upto = ?, read_upto = ? WHERE user_id = ? AND peer_id = ?",
                (delivered, read, reader, peer))
    data = {"kind": kind, "reader": reader, "peer": peer, "msg_id": msg_id}
    return [append_event(txn, positions, peer, "receipt", data, ts),
            append_event(txn, positions, reader, "receipt", data, ts)]


def unread_counts(txn, user_id):
    """{peer: number of messages from peer after my read marker}."""
    rows = txn.all(
        "SELECT m.sender, COUNT(*) FROM messages m LEFT JOIN receipts r "
        "ON r.user_id = m.recipient AND r.peer_id = m.sender "
        "WHERE m.recipient = ? AND m.pos > COALESCE(r.read_upto, 0) GROUP BY m.sender", (user_id,))
    return {sender: count for sender, count in rows}
