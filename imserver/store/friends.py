"""Friendships (one row per direction), friend requests and blocks.

Functions taking ``positions`` are stream writes: run them through the GroupCommitter. Each adds
or removes both directions of a friendship in the one transaction it runs in.
"""
from imserver.errors import ImError
from imserver.store.stream import append_event


def _exists(txn, sql, args):
    return txn.one(sql, args) is not None


def are_friends(txn, a, b):
    return _exists(txn, "SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?", (a, b))


def _require_user(txn, user_id):
    if not _exists(txn, "SELECT 1 FROM users WHERE id = ?", (user_id,)):
        raise ImError("not_found", "no such user")


def _befriend(txn, positions, a, b, ts):
    for x, y in ((a, b), (b, a)):
        txn.execute("INSERT INTO friends (user_id, friend_id, alias, created) VALUES (?, ?, '', ?)", (x, y, ts))
    txn.execute("DELETE FROM friend_requests WHERE (from_user = ? AND to_user = ?) OR (from_user = ? AND to_user = ?)",
                (a, b, b, a))
    return [append_event(txn, positions, a, "friend_added", {"user": b}, ts),
            append_event(txn, positions, b, "friend_added", {"user": a}, ts)]


def request(txn, positions, sender, target, greeting, ts):
    """Ask ``target`` for friendship; if they had asked ``sender`` already, this accepts it."""
    _require_user(txn, target)
    if are_friends(txn, sender, target):
        raise ImError("exists", "you are friends already")
    if _exists(txn, "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?", (target, sender)):
        raise ImError("forbidden", "this user does not accept friend requests from you")
    if _exists(txn, "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?", (sender, target)):
        # Otherwise the blocked user could accept, and message the blocker through the block.
        raise ImError("forbidden", "you have blocked this user: unblock them first")
    if _exists(txn, "SELECT 1 FROM friend_requests WHERE from_user = ? AND to_user = ?", (target, sender)):
        return "accepted", _befriend(txn, positions, sender, target, ts)
    txn.execute("DELETE FROM friend_requests WHERE from_user = ? AND to_user = ?", (sender, target))
    txn.execute("INSERT INTO friend_requests (from_user, to_user, greeting, created) VALUES (?, ?, ?, ?)",
                (sender, target, greeting, ts))
    data = {"from": sender, "to": target, "greeting": greeting}
    return "pending", [append_event(txn, positions, target, "friend_request", data, ts),
                       append_event(txn, positions, sender, "friend_request", data, ts)]


def accept(txn, positions, me, requester, ts):
    if not _exists(txn, "SELECT 1 FROM friend_requests WHERE from_user = ? AND to_user = ?", (requester, me)):
        raise ImError("not_found", "no pending friend request from that user")
    return _befriend(txn, positions, me, requester, ts)


def reject(txn, positions, me, requester, ts):
    txn.execute("DELETE FROM friend_requests WHERE from_user = ? AND to_user = ?", (requester, me))
    if txn.rowcount == 0:
        raise ImError("not_found", "no pending friend request from that user")
    # The requester gets no push; the request leaves their outgoing list, as it does when the
    # target blocks them, so they cannot tell a rejection from a block.
    return [append_event(txn, positions, me, "friend_rejected", {"user": requester}, ts)]


def _unfriend(txn, positions, a, b, ts):
    txn.execute("DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                (a, b, b, a))
    if txn.rowcount == 0:
        return []
    return [append_event(txn, positions, a, "friend_removed", {"user": b}, ts),
            append_event(txn, positions, b, "friend_removed", {"user": a}, ts)]


def remove(txn, positions, me, other, ts):
    events = _unfriend(txn, positions, me, other, ts)
    if not events:
        raise ImError("not_found", "not your friend")
    return events


def block(txn, positions, me, other, ts):
    _require_user(txn, other)
    if not _exists(txn, "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?", (me, other)):
        txn.execute("INSERT INTO blocks (user_id, blocked_id, created) VALUES (?, ?, ?)", (me, other, ts))
    txn.execute("DELETE FROM friend_requests WHERE (from_user = ? AND to_user = ?) OR (from_user = ? AND to_user = ?)",
                (me, other, other, me))
    return _unfriend(txn, positions, me, other, ts) + [
        append_event(txn, positions, me, "blocked", {"user": other}, ts)]


def unblock(txn, positions, me, other, ts):
    txn.execute("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", (me, other))
    if txn.rowcount == 0:
        raise ImError("not_found", "that user is not blocked")
    return [append_event(txn, positions, me, "unblocked", {"user": other}, ts)]


def set_alias(txn, positions, me, other, alias, ts):
    """Set ``me``'s private name for a friend; the event reaches ``me``'s other devices."""
    txn.execute("UPDATE friends SET alias = ? WHERE user_id = ? AND friend_id = ?", (alias, me, other))
    if txn.rowcount == 0 and not are_friends(txn, me, other):
        raise ImError("not_found", "not your friend")
    return [append_event(txn, positions, me, "friend_alias", {"user": other, "alias": alias}, ts)]


def friends(txn, me):
    keys = ("user_id", "username", "nickname", "avatar", "remark", "alias", "since")
    return [dict(zip(keys, r)) for r in txn.all(
        "SELECT u.id, u.username, u.nickname, u.avatar, u.remark, f.alias, f.created "
        "FROM friends f JOIN users u ON u.id = f.friend_id WHERE f.user_id = ? ORDER BY u.id", (me,))]


def friend_ids(txn, me):
    return [r[0] for r in txn.all("SELECT friend_id FROM friends WHERE user_id = ?", (me,))]


def pending(txn, me):
    keys = ("user_id", "username", "nickname", "greeting", "created")
    incoming = [dict(zip(keys, r)) for r in txn.all(
        "SELECT u.id, u.username, u.nickname, r.greeting, r.created FROM friend_requests r "
        "JOIN users u ON u.id = r.from_user WHERE r.to_user = ? ORDER BY r.created", (me,))]
    outgoing = [dict(zip(keys, r)) for r in txn.all(
        "SELECT u.id, u.username, u.nickname, r.greeting, r.created FROM friend_requests r "
        "JOIN users u ON u.id = r.to_user WHERE r.from_user = ? ORDER BY r.created", (me,))]
    return incoming, outgoing


def blocked(txn, me):
    return [r[0] for r in txn.all("SELECT blocked_id FROM blocks WHERE user_id = ? ORDER BY blocked_id", (me,))]
