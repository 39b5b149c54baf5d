"""Group messages: bulk insert for group commit (idempotent per sender and client id), history,
read markers, and the stream source that puts group messages and events in members' streams.

A group message is stored once, at a stream position (its ``msg_id``) with a per-group ``seq``.
A user's stream shows it when the position falls inside one of their membership spans: from
``joined_pos`` on for current members, ``[joined_pos, left_pos]`` for past ones.
"""
import json
import re
from dataclasses import dataclass

from imserver.errors import ImError
from imserver.store import files, stream
from imserver.store.groups import group_row, placeholders, require_role

COLUMNS = "pos, group_id, seq, sender, client_id, body, mentions, ts, extra"
_MENTION = re.compile(r"(?<![\w@])@(\d{1,18})\b")


@dataclass(frozen=True)
class GroupSend:
    sender: int
    group: int
    client_id: str
    body: str
    ts: int
    file: dict | None = None  # {"id", "kind", "duration"?}: a file message

    def mention_candidates(self):
        return {int(m) for m in _MENTION.findall(self.body)} - {self.sender}


def message_event(row):
    pos, group_id, seq, sender, client_id, body, mentions, ts, extra = row
    event = {"pos": pos, "type": "group_message", "msg_id": pos, "group": group_id, "seq": seq,
             "from": sender, "body": body, "client_id": stream.text(client_id), "kind": "text",
             "mentions": json.loads(mentions) if mentions else [], "ts": ts}
    if extra:
        event.update(json.loads(extra))
    return event


def _members_of(txn, group_ids, user_ids=None):
    """{group_id: [user_id, ...]} for the groups (only ``user_ids`` among them, if given)."""
    sql = f"SELECT group_id, user_id FROM group_members WHERE group_id IN ({placeholders(len(group_ids))})"
    args = list(group_ids)
    if user_ids is not None:
        sql += f" AND user_id IN ({placeholders(len(user_ids))})"
        args += list(user_ids)
    out = {}
    for group_id, user_id in txn.all(sql + " ORDER BY group_id, user_id", args):
        out.setdefault(group_id, []).append(user_id)
    return out


def _refusal(txn, group_id):
    try:
        group_row(txn, group_id)
    except ImError as e:
        return e
    return ImError("not_member", "you are not a member of this group")


def send_batch(txn, positions, jobs):
    """The group-commit function for ``group_send`` jobs: one idempotency query, one membership
    query, one bulk insert. Returns, per job, ``(event, duplicate, recipients)`` or an ImError;
    ``recipients`` are the group's members as of this commit (empty for a duplicate)."""
    senders = sorted({j.sender for j in jobs})
    client_ids = sorted({j.client_id for j in jobs})
    existing = {(r[3], stream.text(r[4])): r for r in txn.all(
        f"SELECT {COLUMNS} FROM group_messages WHERE sender IN ({placeholders(len(senders))}) "
        f"AND client_id IN ({placeholders(len(client_ids))})", (*senders, *client_ids))}
    senders_in = _members_of(txn, sorted({j.group for j in jobs}), senders)
    fresh, outcome = {}, []
    for job in jobs:
        key = (job.sender, job.client_id)
        if key in existing:
            outcome.append(("ready", (message_event(existing[key]), True, ())))
        elif key in fresh:
            outcome.append(("repeat", key))  # the same send twice in one batch: stored once
        elif job.sender not in senders_in.get(job.group, ()):
            outcome.append(("ready", _refusal(txn, job.group)))
        elif job.file and isinstance(error := _check_file(txn, job), ImError):
            outcome.append(("ready", error))
        else:
            fresh[key] = job
            outcome.append(("new", key))
    inserted = _insert(txn, positions, list(fresh.values())) if fresh else {}
    results = []
    for tag, value in outcome:
        if tag == "ready":
            results.append(value)
        else:
            event, members = inserted[value]
            results.append((event, False, members) if tag == "new" else (event, True, ()))
    return results


def _check_file(txn, job):
    """None if the sender may share the file in the group (which is then granted it), else the error."""
    try:
        info = files.readable_file(txn, job.file["id"], job.sender)
    except ImError as e:
        return e
    if info is None:
        return ImError("not_found", "no such file")
    files.grant(txn, info["id"], group_id=job.group)
    return None


def _file_extra(txn, job):
    info = files.file_summary(txn, job.file["id"])
    info.update({k: v for k, v in job.file.items() if k in ("kind", "duration")})
    return json.dumps({"kind": job.file["kind"], "file": info})


def _insert(txn, positions, jobs):
    """Insert fresh sends in order; {(sender, client_id): (event, group members)}."""
    first = positions.take()  # locks stream_seq, so the group seq read below is ours alone
    groups = sorted({job.group for job in jobs})
    seqs = dict(txn.all(f"SELECT id, seq FROM chat_groups WHERE id IN ({placeholders(len(groups))})"
                        f"{txn.dialect.for_update}", groups))
    members = {g: tuple(ids) for g, ids in _members_of(txn, groups).items()}
    rows, out = [], {}
    for job in jobs:
        pos = first if not rows else positions.take()
        seqs[job.group] += 1
        candidates = job.mention_candidates()  # usually empty: no set of 200 members per message
        mentions = sorted(candidates & set(members[job.group])) if candidates else []
        row = (pos, job.group, seqs[job.group], job.sender, job.client_id, job.body,
               json.dumps(mentions) if mentions else None, job.ts,
               _file_extra(txn, job) if job.file else None)
        rows.append(row)
        out[(job.sender, job.client_id)] = (message_event(row), members[job.group])
    txn.executemany(f"INSERT INTO group_messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    last = {job.group: row[0] for job, row in zip(jobs, rows)}
    txn.executemany("UPDATE chat_groups SET seq = ?, last_pos = ? WHERE id = ?",
                    [(seqs[g], last[g], g) for g in groups])
    return out


def _joined_pos(txn, me, group_id):
    require_role(txn, group_id, me, "read")
    return txn.one("SELECT joined_pos FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, me))[0]


def history(txn, me, group_id, before, limit):
    """A member's view of the group's messages with position < before, newest first (nothing
    from before they joined)."""
    joined = _joined_pos(txn, me, group_id)
    rows = txn.all(f"SELECT {COLUMNS} FROM group_messages WHERE group_id = ? AND pos >= ? AND pos < ? "
                   "ORDER BY pos DESC LIMIT ?", (group_id, joined, before, limit + 1))
    return [message_event(r) for r in rows[:limit]], len(rows) > limit


def mark_read(txn, positions, me, group_id, msg_id, ts):
    """Move my read marker in a group forward to ``msg_id``; None when it did not move."""
    _joined_pos(txn, me, group_id)
    if txn.one("SELECT 1 FROM group_messages WHERE pos = ? AND group_id = ?", (msg_id, group_id)) is None:
        raise ImError("not_found", "no such message in this group")
    txn.execute("UPDATE group_members SET read_upto = ? WHERE group_id = ? AND user_id = ? AND read_upto < ?",
                (msg_id, group_id, me, msg_id))
    if txn.rowcount == 0:
        return None
    user_id, event = stream.append_event(txn, positions, me, "group_read", {"group": group_id, "msg_id": msg_id}, ts)
    return [([user_id], event)]


def _spans(txn, user_id, since):
    """``[(group_id, after, upto)]``: the user's membership spans with anything after ``since``
    (``chat_groups.last_pos`` skips the quiet groups), as exclusive/inclusive position bounds."""
    current = txn.all("SELECT m.group_id, m.joined_pos FROM group_members m JOIN chat_groups g ON g.id = m.group_id "
                      "WHERE m.user_id = ? AND g.last_pos > ?", (user_id, since))
    past = txn.all("SELECT group_id, joined_pos, left_pos FROM group_departures WHERE user_id = ? AND left_pos > ?",
                   (user_id, since))
    return ([(g, max(since, joined - 1), _NO_END) for g, joined in current]
            + [(g, max(since, joined - 1), left) for g, joined, left in past])


_NO_END = 2 ** 62
_SOURCE_QUERIES = (
    (f"SELECT {COLUMNS} FROM group_messages WHERE group_id = ? AND pos > ? AND pos <= ? ORDER BY pos LIMIT ?",
     "message"),
    ("SELECT pos, group_id, type, data, ts FROM group_events WHERE group_id = ? AND pos > ? AND pos <= ? "
     "ORDER BY pos LIMIT ?", "event"),
)


def _source_event(user_id, kind, row):
    if kind == "message":
        event = message_event(row)
        if user_id in event["mentions"]:
            event["mentioned"] = True
        return event
    pos, group_id, type_, data, ts = row
    event = {"pos": pos, "type": type_, "ts": ts, "group": group_id}
    event.update(json.loads(data))
    return event


def stream_source(txn, user_id, since, limit):
    """Stream source: group messages and group events inside the user's membership spans.

    One indexed range query per active span and table; once ``limit`` events are in hand, later
    queries stop at the ``limit``-th position, so a page never reads more than it can return."""
    out, bound = [], _NO_END
    for group_id, after, upto in _spans(txn, user_id, since):
        for sql, kind in _SOURCE_QUERIES:
            rows = txn.all(sql, (group_id, after, min(upto, bound), limit))
            out.extend((row[0], _source_event(user_id, kind, row)) for row in rows)
            if len(out) >= limit:
                out.sort(key=lambda pair: pair[0])
                del out[limit:]
                bound = out[-1][0]
    return out
