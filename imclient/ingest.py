"""What each stream event does to the local store, and which records it makes for subscribers.

These are transaction functions: ``StoreWorker.run`` calls them as ``fn(store, ...)`` on the
store's thread, in one transaction, and they return the ``imclient.events`` records the client
then emits on the reactor thread. Nothing here touches the network or the reactor. An event whose
position was handled before yields nothing, so an event reaches subscribers once, whether it came
by push, by sync, or both.
"""
from imclient.events import MessageState, stream_event


def apply_page(store, events, next_pos, me):
    """One ``sync`` page: every event, then the saved position moves to ``next_pos``."""
    out = []
    for event in events:
        out += apply_event(store, event, me)
    store.set_position(next_pos)
    return out


def apply_event(store, event, me):
    """One stream event (``type`` names it; a push's ``op`` is turned into ``type`` first)."""
    if "type" not in event:
        event = {**{k: v for k, v in event.items() if k != "op"}, "type": event["op"]}
    if not store.first_sight(event["pos"]):
        return []
    kind = event["type"]
    apply = _APPLY.get(kind)
    if apply is None and kind.startswith("group_") and "group" in event:
        apply = _group_event
    return apply(store, event, me) if apply is not None else [stream_event(event)]


def pending_request(store, push):
    """A friend request pushed again at login, without a position: reported if new."""
    new = store.add_request(push["from"], push["to"], push.get("greeting", ""), push.get("ts"))
    return [stream_event(push)] if new else []


def queue(store, client_id, to, group, body, extra, now):
    """A new send into the outbox: its ``queued`` record. A client id used before is the same
    send: nothing new while it waits; its ``acked`` (a duplicate) or ``failed`` record again
    if it has ended, so its caller hears how."""
    state = store.message_state(client_id, group)
    if state is None:
        store.outbox_add(client_id, to, body, now, group=group, extra=extra)
        return [MessageState(client_id, "queued", to=to, group=group)]
    if state == "failed":
        row = store.outbox_row(client_id, group)
        code, _, message = row["error"].partition(": ")
        return [MessageState(client_id, "failed", to=row["to"], group=group, code=code,
                             message=message)]
    if state in ("queued", "sent"):
        return []
    msg_id, ts, recipient = store.sent_message(client_id, group)
    return [MessageState(client_id, "acked", to=recipient, group=group, msg_id=msg_id, ts=ts,
                         pos=msg_id, duplicate=True)]


def written(store, row):
    """The send went out on the wire (``sent``), unless it had gone before."""
    if not store.outbox_state(row["client_id"], "sent", row["group"]) or row["state"] == "sent":
        return []
    return [MessageState(row["client_id"], "sent", to=row["to"], group=row["group"])]


def acked(store, row, reply, me):
    """The server has the send (its reply, or the message seen in the stream): stored as my
    message, out of the outbox, ``acked``. Nothing if it was acknowledged already."""
    message = {**row["extra"], "msg_id": reply["msg_id"], "ts": reply["ts"], "from": me,
               "body": row["body"], "client_id": row["client_id"],
               "kind": reply.get("kind", row["extra"].get("kind", "text"))}
    if row["group"] is not None:
        store.add_group_message(dict(message, group=row["group"], seq=reply.get("seq", 0)),
                                state="acked")
    else:
        store.add_message(dict(message, to=row["to"]), me, state="acked")
    if reply.get("pos") is not None:
        store.first_sight(reply["pos"])
    if not store.outbox_remove(row["client_id"], row["group"]):
        return []
    return [MessageState(row["client_id"], "acked", to=row["to"], group=row["group"],
                         msg_id=reply["msg_id"], ts=reply["ts"], pos=reply.get("pos"),
                         duplicate=bool(reply.get("duplicate")))]


def failed(store, row, code, message):
    """The server refused the send for good: kept in the outbox as ``failed``."""
    store.outbox_state(row["client_id"], "failed", row["group"], error=f"{code}: {message}")
    return [MessageState(row["client_id"], "failed", to=row["to"], group=row["group"], code=code,
                         message=message)]


def _queued_row(store, client_id, group):
    row = store.outbox_row(client_id, group)
    return row if row is not None and row["state"] != "failed" else None


def _message(store, event, me):
    if event["from"] == me and event.get("client_id"):
        row = _queued_row(store, event["client_id"], None)
        if row is not None:  # the send's reply was lost, but the stream has it
            return acked(store, row, dict(event, duplicate=True), me)
    state = "acked" if event["from"] == me else None
    return [stream_event(event)] if store.add_message(event, me, state=state) else []


def _receipt(store, event, me):
    out = [stream_event(event)]
    if event["reader"] == me:
        if event["kind"] == "read":
            store.receipt(event["peer"], "my_read_upto", event["msg_id"])
        return out
    reader, upto = event["reader"], event["msg_id"]
    columns = ("read_upto", "delivered_upto") if event["kind"] == "read" else ("delivered_upto",)
    for column in columns:
        store.receipt(reader, column, upto)
    state = "read" if event["kind"] == "read" else "delivered"
    for client_id, msg_id in store.advance_states(reader, me, upto, state):
        out.append(MessageState(client_id, state, to=reader, msg_id=msg_id))
    return out


def _friend_event(store, event, me):
    kind, other = event["type"], event.get("user")
    if kind == "friend_request":
        store.add_request(event["from"], event["to"], event.get("greeting", ""), event.get("ts"))
        return [stream_event(event)]
    store.drop_requests(me, other)
    if kind == "friend_added":
        store.add_friend(other)
    elif kind in ("friend_removed", "blocked"):
        store.remove_friend(other)
    elif kind == "friend_alias":
        store.set_alias(other, event["alias"])
    return [stream_event(event)]


def _group_message(store, event, me):
    if event["from"] == me and event.get("client_id"):
        row = _queued_row(store, event["client_id"], event["group"])
        if row is not None:
            return acked(store, row, dict(event, duplicate=True), me)
    state = "acked" if event["from"] == me else None
    return [stream_event(event)] if store.add_group_message(event, state=state) else []


#: Fields of a group record that a group event sets (docs/protocol.rst, "Group pushes").
_GROUP_FIELDS = ("name", "announcement", "join_policy")


def _group_event(store, event, me):
    """Kept in ``group_events``; the group's record (as ``groups`` lists it) kept current."""
    store.add_group_event(event)
    kind, gid, user, by = event["type"], event["group"], event.get("user"), event.get("by")
    group = store.group(gid) or {"group": gid}
    group.update({k: event[k] for k in _GROUP_FIELDS if k in event})
    if kind in ("group_disbanded",) or (kind in ("group_member_left", "group_member_kicked")
                                        and user == me):
        store.drop_group(gid)
        return [stream_event(event)]
    if kind == "group_created":
        group.update(owner=by, role="owner" if by == me else "member")
    elif kind == "group_member_joined" and user == me:
        group["role"] = "member"
    elif kind == "group_role_changed" and user == me:
        group["role"] = event["role"]
    elif kind == "group_owner_changed":
        group["owner"] = user
        if me in (user, by):
            group["role"] = "owner" if user == me else "admin"
    elif kind == "group_read":
        group["read_upto"] = max(group.get("read_upto") or 0, event["msg_id"])
    store.put_group(group)
    return [stream_event(event)]


_APPLY = {
    "message": _message,
    "receipt": _receipt,
    "friend_request": _friend_event,
    "friend_added": _friend_event,
    "friend_removed": _friend_event,
    "friend_rejected": _friend_event,
    "blocked": _friend_event,
    "unblocked": _friend_event,
    "friend_alias": _friend_event,
    "group_message": _group_message,
}
