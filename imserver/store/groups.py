"""Groups and membership: create, invite, join requests, leave, kick, roles, update, disband.

Functions taking ``positions`` are stream writes (run them through the GroupCommitter). Each
checks ``group_rules`` inside its transaction, so of two admins acting at once exactly one has
the effect and the other gets a clear error. Each returns ``[(recipients, event)]`` to push once
committed. Group-wide events are stored once in ``group_events``; a member sees those inside their
membership span (``joined_pos`` to ``left_pos``, kept in ``group_departures`` after leaving).
"""
import json

from imserver import group_rules as rules
from imserver.errors import ImError
from imserver.store.stream import append_event

GROUP_COLUMNS = "id, name, announcement, join_policy, owner, created"


def placeholders(n):
    """``?, ?, ?`` for n values."""
    return ", ".join("?" * n)


def group_row(txn, group_id):
    row = txn.one(f"SELECT {GROUP_COLUMNS} FROM chat_groups WHERE id = ? AND disbanded = 0", (group_id,))
    if row is None:
        raise ImError("not_found", "no such group")
    return dict(zip(("group", "name", "announcement", "join_policy", "owner", "created"), row))


def role_of(txn, group_id, user_id):
    row = txn.one("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id))
    return row[0] if row else None


def require_role(txn, group_id, user_id, action):
    """The group row and the actor's role, once ``action`` is allowed for them."""
    group = group_row(txn, group_id)
    role = role_of(txn, group_id, user_id)
    if role is None:
        raise ImError("not_member", "you are not a member of this group")
    rules.check(action, role)
    return group, role


def _target_role(txn, group_id, user_id):
    role = role_of(txn, group_id, user_id)
    if role is None:
        raise ImError("not_found", "that user is not a member of this group")
    return role


def member_ids(txn, group_id):
    return [r[0] for r in txn.all("SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id",
                                  (group_id,))]


def staff_ids(txn, group_id):
    return [r[0] for r in txn.all("SELECT user_id FROM group_members WHERE group_id = ? "
                                  "AND role IN ('owner', 'admin') ORDER BY user_id", (group_id,))]


def group_event(txn, positions, group_id, type_, data, ts):
    """Store one event for the whole group; returns the event dict."""
    pos = positions.take()
    txn.execute("INSERT INTO group_events (pos, group_id, type, data, ts) VALUES (?, ?, ?, ?, ?)",
                (pos, group_id, type_, json.dumps(data), ts))
    txn.execute("UPDATE chat_groups SET last_pos = ? WHERE id = ?", (pos, group_id))
    event = {"pos": pos, "type": type_, "ts": ts, "group": group_id}
    event.update(data)
    return event


def _insert_member(txn, group_id, user_id, role, pos, ts):
    txn.execute("INSERT INTO group_members (group_id, user_id, role, joined_pos, read_upto, joined) "
                "VALUES (?, ?, ?, ?, ?, ?)", (group_id, user_id, role, pos, pos, ts))


def _check_size(count, max_members):
    if max_members is not None and count > max_members:
        raise ImError("too_large", f"a group has at most {max_members} members")


def _add_member(txn, positions, group_id, user_id, by, via, ts, max_members):
    if role_of(txn, group_id, user_id) is not None:
        raise ImError("exists", "that user is a member already")
    _check_size(txn.one("SELECT COUNT(*) FROM group_members WHERE group_id = ?", (group_id,))[0] + 1, max_members)
    txn.execute("DELETE FROM group_requests WHERE group_id = ? AND user_id = ?", (group_id, user_id))
    event = group_event(txn, positions, group_id, "group_member_joined",
                        {"user": user_id, "by": by, "via": via}, ts)
    _insert_member(txn, group_id, user_id, "member", event["pos"], ts)
    return [(member_ids(txn, group_id), event)]


def _remove_members(txn, group_id, user_ids, left_pos):
    """End the membership spans of ``user_ids`` at ``left_pos`` (inclusive)."""
    marks = placeholders(len(user_ids))
    rows = txn.all(f"SELECT user_id, joined_pos FROM group_members WHERE group_id = ? AND user_id IN ({marks})",
                   (group_id, *user_ids))
    txn.executemany("INSERT INTO group_departures (group_id, user_id, joined_pos, left_pos) VALUES (?, ?, ?, ?)",
                    [(group_id, uid, joined, left_pos) for uid, joined in rows])
    txn.execute(f"DELETE FROM group_members WHERE group_id = ? AND user_id IN ({marks})", (group_id, *user_ids))


def _require_friends(txn, me, user_ids):
    if not user_ids:
        return
    found = {r[0] for r in txn.all(
        f"SELECT friend_id FROM friends WHERE user_id = ? AND friend_id IN ({placeholders(len(user_ids))})",
        (me, *user_ids))}
    strangers = sorted(set(user_ids) - found)
    if strangers:
        raise ImError("not_friends", "you can only add your friends to a group", users=strangers)


def create(txn, positions, me, name, members, join_policy, ts, max_members=None):
    members = sorted(set(members) - {me})
    _check_size(len(members) + 1, max_members)
    _require_friends(txn, me, members)
    txn.execute("INSERT INTO chat_groups (name, announcement, join_policy, owner, seq, created, disbanded) "
                "VALUES (?, '', ?, ?, 0, ?, 0)", (name, join_policy, me, ts))
    group_id = txn.lastrowid
    event = group_event(txn, positions, group_id, "group_created",
                        {"name": name, "by": me, "members": [me] + members, "join_policy": join_policy}, ts)
    _insert_member(txn, group_id, me, "owner", event["pos"], ts)
    for user_id in members:
        _insert_member(txn, group_id, user_id, "member", event["pos"], ts)
    return group_id, [([me] + members, event)]


def invite(txn, positions, me, group_id, user, ts, max_members=None):
    """Add a friend, or (a plain member in an 'approval' group) ask the admins to."""
    group, role = require_role(txn, group_id, me, "invite")
    if role_of(txn, group_id, user) is not None:
        raise ImError("exists", "that user is a member already")
    _require_friends(txn, me, [user])
    if group["join_policy"] == "open" or rules.allowed("add_directly", role):
        return "joined", _add_member(txn, positions, group_id, user, me, "invite", ts, max_members)
    return "pending", _request(txn, positions, group_id, user, me, "", ts)


def _request(txn, positions, group_id, user, inviter, greeting, ts):
    if role_of(txn, group_id, user) is not None:
        raise ImError("exists", "that user is a member already")
    txn.execute("DELETE FROM group_requests WHERE group_id = ? AND user_id = ?", (group_id, user))
    txn.execute("INSERT INTO group_requests (group_id, user_id, inviter, greeting, created) VALUES (?, ?, ?, ?, ?)",
                (group_id, user, inviter, greeting, ts))
    data = {"group": group_id, "user": user, "by": inviter, "greeting": greeting}
    recipients = set(staff_ids(txn, group_id)) | {user} | ({inviter} if inviter else set())
    return _to_each(txn, positions, recipients, "group_join_requested", data, ts)


def _to_each(txn, positions, user_ids, type_, data, ts):
    """One event in each user's own stream (for those who are not, or not yet, members)."""
    return [([uid], append_event(txn, positions, uid, type_, data, ts)[1]) for uid in sorted(user_ids)]


def join(txn, positions, me, group_id, ts, max_members=None):
    """Join an open group by id."""
    group = group_row(txn, group_id)
    if group["join_policy"] != "open":
        raise ImError("forbidden", "this group needs an admin's approval: use group_join_request")
    return _add_member(txn, positions, group_id, me, None, "join", ts, max_members)


def join_request(txn, positions, me, group_id, greeting, ts, max_members=None):
    """Ask to join; an open group lets you straight in."""
    group = group_row(txn, group_id)
    if group["join_policy"] == "open":
        return "joined", _add_member(txn, positions, group_id, me, None, "join", ts, max_members)
    return "pending", _request(txn, positions, group_id, me, None, greeting, ts)


def _take_request(txn, group_id, user):
    txn.execute("DELETE FROM group_requests WHERE group_id = ? AND user_id = ?", (group_id, user))
    if txn.rowcount == 0:
        raise ImError("not_found", "no pending join request for that user")


def approve(txn, positions, me, group_id, user, ts, max_members=None):
    require_role(txn, group_id, me, "approve")
    _take_request(txn, group_id, user)
    return _add_member(txn, positions, group_id, user, me, "approve", ts, max_members)


def deny(txn, positions, me, group_id, user, ts):
    require_role(txn, group_id, me, "approve")
    _take_request(txn, group_id, user)
    data = {"group": group_id, "user": user, "by": me}
    return _to_each(txn, positions, set(staff_ids(txn, group_id)) | {user}, "group_join_denied", data, ts)


def _depart(txn, positions, group_id, user, type_, data, ts):
    recipients = member_ids(txn, group_id)
    event = group_event(txn, positions, group_id, type_, data, ts)
    _remove_members(txn, group_id, [user], event["pos"])
    return [(recipients, event)]


def leave(txn, positions, me, group_id, ts):
    require_role(txn, group_id, me, "leave")
    return _depart(txn, positions, group_id, me, "group_member_left", {"user": me}, ts)


def kick(txn, positions, me, group_id, user, ts):
    _, role = require_role(txn, group_id, me, "read")
    rules.check("kick", role, _target_role(txn, group_id, user))
    return _depart(txn, positions, group_id, user, "group_member_kicked", {"user": user, "by": me}, ts)


def set_role(txn, positions, me, group_id, user, new_role, ts):
    _, role = require_role(txn, group_id, me, "read")
    current = _target_role(txn, group_id, user)
    rules.check("set_role", role, current)
    if current == new_role:
        return []
    txn.execute("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?", (new_role, group_id, user))
    event = group_event(txn, positions, group_id, "group_role_changed",
                        {"user": user, "role": new_role, "by": me}, ts)
    return [(member_ids(txn, group_id), event)]


def transfer(txn, positions, me, group_id, user, ts):
    _, role = require_role(txn, group_id, me, "read")
    rules.check("transfer", role, _target_role(txn, group_id, user))
    if user == me:
        raise ImError("bad_request", "you own this group already")
    txn.execute("UPDATE group_members SET role = 'admin' WHERE group_id = ? AND user_id = ?", (group_id, me))
    txn.execute("UPDATE group_members SET role = 'owner' WHERE group_id = ? AND user_id = ?", (group_id, user))
    txn.execute("UPDATE chat_groups SET owner = ? WHERE id = ?", (user, group_id))
    event = group_event(txn, positions, group_id, "group_owner_changed", {"user": user, "by": me}, ts)
    return [(member_ids(txn, group_id), event)]


def update(txn, positions, me, group_id, changes, ts):
    """``changes``: some of name, announcement, join_policy (already validated)."""
    group, _ = require_role(txn, group_id, me, "update")
    changes = {k: v for k, v in changes.items() if group[k] != v}
    if not changes:
        return []
    names = sorted(changes)
    txn.execute(f"UPDATE chat_groups SET {', '.join(f'{k} = ?' for k in names)} WHERE id = ?",
                (*(changes[k] for k in names), group_id))
    event = group_event(txn, positions, group_id, "group_updated", dict(changes, by=me), ts)
    return [(member_ids(txn, group_id), event)]


def disband(txn, positions, me, group_id, ts):
    require_role(txn, group_id, me, "disband")
    recipients = member_ids(txn, group_id)
    event = group_event(txn, positions, group_id, "group_disbanded", {"by": me}, ts)
    _remove_members(txn, group_id, recipients, event["pos"])
    txn.execute("DELETE FROM group_requests WHERE group_id = ?", (group_id,))
    txn.execute("UPDATE chat_groups SET disbanded = 1 WHERE id = ?", (group_id,))
    return [(recipients, event)]


def info(txn, me, group_id):
    group = group_row(txn, group_id)
    group["role"] = role_of(txn, group_id, me)
    group["member_count"] = txn.one("SELECT COUNT(*) FROM group_members WHERE group_id = ?", (group_id,))[0]
    return group


def members(txn, me, group_id):
    require_role(txn, group_id, me, "read")
    keys = ("user_id", "username", "nickname", "role", "joined")
    return [dict(zip(keys, r)) for r in txn.all(
        "SELECT u.id, u.username, u.nickname, m.role, m.joined FROM group_members m "
        "JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.id", (group_id,))]


def requests(txn, me, group_id):
    require_role(txn, group_id, me, "approve")
    keys = ("user_id", "inviter", "greeting", "created")
    return [dict(zip(keys, r)) for r in txn.all(
        "SELECT user_id, inviter, greeting, created FROM group_requests WHERE group_id = ? ORDER BY created, user_id",
        (group_id,))]


def my_groups(txn, me):
    """Every group of mine with my role and how many messages from others I have not read."""
    keys = ("group", "name", "announcement", "join_policy", "owner", "role", "read_upto", "unread")
    return [dict(zip(keys, r)) for r in txn.all(
        "SELECT ug.group_id, ug.name, ug.announcement, ug.join_policy, ug.owner, ug.role, ug.read_upto, "
        "(SELECT COUNT(*) FROM group_messages gm WHERE gm.group_id = ug.group_id AND gm.pos > ug.read_upto "
        "AND gm.sender <> ug.user_id) FROM user_groups ug WHERE ug.user_id = ? ORDER BY ug.group_id", (me,))]
