"""Group ops: create, membership, roles, settings, and group messages (send, history, read).

Every change is a stream write through the GroupCommitter; once it has committed, its events are
new entries in the streams of the members it concerns (the acting connection gets the reply,
with ``pos``, instead of a push). Group messages and events reach members' streams through this
domain's stream source. Who may do what is ``imserver.group_rules``.
"""
import functools

from imserver.dispatch import Int, List, Obj, Str
from imserver.domain import Domain
from imserver.effects import Entries, Reply, as_push
from imserver.errors import ImError
from imserver.group_rules import POLICIES
from imserver.handlers.messages import check_text, file_reference
from imserver.handlers.writes import stream_write
from imserver.store import group_messages as messages_store
from imserver.store import files as files_store
from imserver.store import groups as store

domain = Domain("groups")
domain.source(messages_store.stream_source)
domain.batch("group_send", messages_store.send_batch)
NAME = dict(max_len=64)
ANNOUNCEMENT = dict(max_len=1000)


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


@domain.op("group_create", name=Str(**NAME), members=List(required=False, default=[]),
           join_policy=Str(required=False, default="approval", choices=POLICIES))
async def group_create(ctx, name, members, join_policy):
    return await stream_write(ctx, _sized(ctx, store.create), _name(name), _user_ids(members),
                              join_policy, reply=lambda group_id: {"group_id": group_id})


@domain.op("group_info", group=Int())
async def group_info(ctx, group):
    return {"group": await ctx.server.read("group_info", store.info, ctx.user.user_id, group)}


@domain.op("groups")
async def groups(ctx):
    return {"groups": await ctx.server.read("groups", store.my_groups, ctx.user.user_id)}


@domain.op("group_members", group=Int())
async def group_members(ctx, group):
    rows = await ctx.server.read("group_members", store.members, ctx.user.user_id, group)
    statuses = await ctx.server.presence.statuses([row["user_id"] for row in rows])
    for row in rows:
        row.update(statuses[row["user_id"]])
    return {"members": rows}


@domain.op("group_requests", group=Int())
async def group_requests(ctx, group):
    return {"requests": await ctx.server.read("group_requests", store.requests, ctx.user.user_id, group)}


@domain.op("group_invite", group=Int(), user=Int())
async def group_invite(ctx, group, user):
    return await stream_write(ctx, _sized(ctx, store.invite), group, user, reply=_status)


@domain.op("group_join", group=Int())
async def group_join(ctx, group):
    return await stream_write(ctx, _sized(ctx, store.join), group)


@domain.op("group_join_request", group=Int(), greeting=Str(required=False, default="", max_len=255))
async def group_join_request(ctx, group, greeting):
    return await stream_write(ctx, _sized(ctx, store.join_request), group, greeting, reply=_status)


@domain.op("group_approve", group=Int(), user=Int())
async def group_approve(ctx, group, user):
    return await stream_write(ctx, _sized(ctx, store.approve), group, user)


@domain.op("group_deny", group=Int(), user=Int())
async def group_deny(ctx, group, user):
    return await stream_write(ctx, store.deny, group, user)


@domain.op("group_leave", group=Int())
async def group_leave(ctx, group):
    return await stream_write(ctx, store.leave, group)


@domain.op("group_kick", group=Int(), user=Int())
async def group_kick(ctx, group, user):
    return await stream_write(ctx, store.kick, group, user)


@domain.op("group_set_role", group=Int(), user=Int(), role=Str(choices=("admin", "member")))
async def group_set_role(ctx, group, user, role):
    return await stream_write(ctx, store.set_role, group, user, role,
                              reply=lambda pairs: {"changed": bool(pairs)})


@domain.op("group_transfer", group=Int(), user=Int())
async def group_transfer(ctx, group, user):
    return await stream_write(ctx, store.transfer, group, user)


@domain.op("group_update", group=Int(), name=Str(required=False, **NAME),
           announcement=Str(required=False, **ANNOUNCEMENT),
           join_policy=Str(required=False, choices=POLICIES))
async def group_update(ctx, group, name, announcement, join_policy):
    changes = {k: v for k, v in (("name", name), ("announcement", announcement),
                                 ("join_policy", join_policy)) if v is not None}
    if not changes:
        raise ImError("bad_request", "give at least one of: name, announcement, join_policy")
    if "name" in changes:
        changes["name"] = _name(changes["name"])
    return await stream_write(ctx, store.update, group, changes, reply=lambda pairs: {
        "changed": sorted(k for k in pairs[0][1] if k in changes) if pairs else []})


@domain.op("group_disband", group=Int())
async def group_disband(ctx, group):
    return await stream_write(ctx, store.disband, group)


@domain.op("group_send", group=Int(), body=Str(required=False, default=""), client_id=Str(max_len=64),
           file=Obj(required=False))
async def group_send(ctx, group, body, client_id, file):
    server, me = ctx.server, ctx.user.user_id
    file = file_reference(file)
    check_text(server.config, body, client_id, allow_empty=file is not None)
    job = messages_store.GroupSend(me, group, client_id, body, server.now_ms(), file)
    event, duplicate, members = await server.writer.submit("group_send", job)
    effects = []
    if not duplicate:
        push = as_push(event)
        mentioned = event["mentions"]
        if mentioned:
            effects.append(Entries(tuple(mentioned), dict(push, mentioned=True)))
            members = tuple(m for m in members if m not in mentioned)
        effects.append(Entries(members, push))
    return Reply({"msg_id": event["msg_id"], "seq": event["seq"], "pos": event["pos"],
                  "ts": event["ts"], "duplicate": duplicate}, effects)


@domain.op("group_files", group=Int(), before=Int(required=False, min=1),
           limit=Int(required=False, default=50, min=1, max=200))
async def group_files(ctx, group, before, limit):
    def txn_fn(txn):
        store.require_role(txn, group, ctx.user.user_id, "read")
        return files_store.group_files(txn, group, before or 2 ** 62, limit)
    return {"files": await ctx.server.read("group_files", txn_fn)}


@domain.op("group_history", group=Int(), before=Int(required=False, min=1),
           limit=Int(required=False, default=50, min=1, max=200))
async def group_history(ctx, group, before, limit):
    before = before if before is not None else 2 ** 62
    messages, more = await ctx.server.read("group_history", messages_store.history, ctx.user.user_id,
                                           group, before, limit)
    return {"messages": messages, "more": more}


@domain.op("group_mark_read", group=Int(), msg_id=Int(min=1))
async def group_mark_read(ctx, group, msg_id):
    return await stream_write(ctx, messages_store.mark_read, group, msg_id,
                              reply=lambda pairs: {"moved": bool(pairs)})


def _status(status):
    return {"status": status}
