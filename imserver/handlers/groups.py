"""Group ops: create, membership, roles, settings, and group messages (send, history, read).

Every change is a stream write through the GroupCommitter; once it has committed, its events are
pushed to the members it concerns (the acting connection gets the reply instead). Who may do
what is ``imserver.group_rules``.
"""
import functools

from imserver.dispatch import Int, List, Obj, Str
from imserver.errors import ImError
from imserver.group_rules import POLICIES
from imserver.handlers import ops
from imserver.handlers.messages import check_text, file_reference
from imserver.store import group_messages as messages_store
from imserver.store import files as files_store
from imserver.store import groups as store

NAME = dict(max_len=64)
ANNOUNCEMENT = dict(max_len=1000)


def as_push(event):
    push = {"op": event["type"]}
    push.update(event)
    del push["type"]
    return push


def publish(ctx, pairs):
    """Push committed ``[(recipients, event)]`` to every recipient's devices, encoding each once."""
    for recipients, event in pairs or ():
        ctx.server.notifier.push_many(recipients, as_push(event), exclude=ctx.conn)


async def _write(ctx, fn, *args):
    server = ctx.server
    result = await server.write(fn, ctx.user.user_id, *args, server.now_ms())
    if isinstance(result, tuple):
        status, pairs = result
        publish(ctx, pairs)
        return status
    publish(ctx, result)
    return result


def _sized(ctx, fn):
    """A write that adds members, bounded by ``config.max_group_members``."""
    return functools.partial(fn, max_members=ctx.server.config.max_group_members)


def _name(name):
    name = name.strip()
    if not name:
        raise ImError("bad_request", "field 'name' is empty")
    return name


def _user_ids(members):
    if any(isinstance(m, bool) or not isinstance(m, int) for m in members):
        raise ImError("bad_request", "field 'members' must be a list of user ids")
    return members


@ops.op("group_create", name=Str(**NAME), members=List(required=False, default=[]),
        join_policy=Str(required=False, default="approval", choices=POLICIES))
async def group_create(ctx, name, members, join_policy):
    group_id = await _write(ctx, _sized(ctx, store.create), _name(name), _user_ids(members), join_policy)
    return {"group_id": group_id}


@ops.op("group_info", group=Int())
async def group_info(ctx, group):
    return {"group": await ctx.server.read("group_info", store.info, ctx.user.user_id, group)}


@ops.op("groups")
async def groups(ctx):
    return {"groups": await ctx.server.read("groups", store.my_groups, ctx.user.user_id)}


@ops.op("group_members", group=Int())
async def group_members(ctx, group):
    rows = await ctx.server.read("group_members", store.members, ctx.user.user_id, group)
    for row in rows:
        row.update(ctx.server.notifier.status(row["user_id"]))
    return {"members": rows}


@ops.op("group_requests", group=Int())
async def group_requests(ctx, group):
    return {"requests": await ctx.server.read("group_requests", store.requests, ctx.user.user_id, group)}


@ops.op("group_invite", group=Int(), user=Int())
async def group_invite(ctx, group, user):
    return {"status": await _write(ctx, _sized(ctx, store.invite), group, user)}


@ops.op("group_join", group=Int())
async def group_join(ctx, group):
    await _write(ctx, _sized(ctx, store.join), group)
    return {}


@ops.op("group_join_request", group=Int(), greeting=Str(required=False, default="", max_len=255))
async def group_join_request(ctx, group, greeting):
    return {"status": await _write(ctx, _sized(ctx, store.join_request), group, greeting)}


@ops.op("group_approve", group=Int(), user=Int())
async def group_approve(ctx, group, user):
    await _write(ctx, _sized(ctx, store.approve), group, user)
    return {}


@ops.op("group_deny", group=Int(), user=Int())
async def group_deny(ctx, group, user):
    await _write(ctx, store.deny, group, user)
    return {}


@ops.op("group_leave", group=Int())
async def group_leave(ctx, group):
    await _write(ctx, store.leave, group)
    return {}


@ops.op("group_kick", group=Int(), user=Int())
async def group_kick(ctx, group, user):
    await _write(ctx, store.kick, group, user)
    return {}


@ops.op("group_set_role", group=Int(), user=Int(), role=Str(choices=("admin", "member")))
async def group_set_role(ctx, group, user, role):
    return {"changed": bool(await _write(ctx, store.set_role, group, user, role))}


@ops.op("group_transfer", group=Int(), user=Int())
async def group_transfer(ctx, group, user):
    await _write(ctx, store.transfer, group, user)
    return {}


@ops.op("group_update", group=Int(), name=Str(required=False, **NAME),
        announcement=Str(required=False, **ANNOUNCEMENT),
        join_policy=Str(required=False, choices=POLICIES))
async def group_update(ctx, group, name, announcement, join_policy):
    changes = {k: v for k, v in (("name", name), ("announcement", announcement),
                                 ("join_policy", join_policy)) if v is not None}
    if not changes:
        raise ImError("bad_request", "give at least one of: name, announcement, join_policy")
    if "name" in changes:
        changes["name"] = _name(changes["name"])
    pairs = await _write(ctx, store.update, group, changes)
    return {"changed": sorted(k for k in pairs[0][1] if k in changes) if pairs else []}


@ops.op("group_disband", group=Int())
async def group_disband(ctx, group):
    await _write(ctx, store.disband, group)
    return {}


@ops.op("group_send", group=Int(), body=Str(required=False, default=""), client_id=Str(max_len=64),
        file=Obj(required=False))
async def group_send(ctx, group, body, client_id, file):
    server, me = ctx.server, ctx.user.user_id
    file = file_reference(file)
    check_text(server.config, body, client_id, allow_empty=file is not None)
    job = messages_store.GroupSend(me, group, client_id, body, server.now_ms(), file)
    event, duplicate, members = await server.writer.submit("group_send", job)
    if not duplicate:
        push = as_push(event)
        mentioned = event["mentions"]
        notifier = server.notifier
        if mentioned:
            notifier.push_many(mentioned, dict(push, mentioned=True), exclude=ctx.conn)
            members = [m for m in members if m not in mentioned]
        notifier.push_many(members, push, exclude=ctx.conn)
    return {"msg_id": event["msg_id"], "seq": event["seq"], "pos": event["pos"], "ts": event["ts"],
            "duplicate": duplicate}


@ops.op("group_files", group=Int(), before=Int(required=False, min=1),
        limit=Int(required=False, default=50, min=1, max=200))
async def group_files(ctx, group, before, limit):
    def txn_fn(txn):
        store.require_role(txn, group, ctx.user.user_id, "read")
        return files_store.group_files(txn, group, before or 2 ** 62, limit)
    return {"files": await ctx.server.read("group_files", txn_fn)}


@ops.op("group_history", group=Int(), before=Int(required=False, min=1),
        limit=Int(required=False, default=50, min=1, max=200))
async def group_history(ctx, group, before, limit):
    before = before if before is not None else 2 ** 62
    messages, more = await ctx.server.read("group_history", messages_store.history, ctx.user.user_id,
                                           group, before, limit)
    return {"messages": messages, "more": more}


@ops.op("group_mark_read", group=Int(), msg_id=Int(min=1))
async def group_mark_read(ctx, group, msg_id):
    return {"moved": bool(await _write(ctx, messages_store.mark_read, group, msg_id))}


def install(server):
    server.writer.register("group_send", messages_store.send_batch)
