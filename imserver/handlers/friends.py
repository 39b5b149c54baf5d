"""Friend ops: requests, accept/reject, remove, block/unblock, alias, lists.

Every change is a stream write; its reply carries ``pos`` (the acting user's newest entry) and
the other devices concerned get the entries as pushes. A user who logs in is sent the friend
requests that wait for them.
"""
from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.effects import Direct
from imserver.errors import ImError
from imserver.handlers.writes import stream_write
from imserver.store import friends as store

domain = Domain("friends")


def _not_me(ctx, user):
    if user == ctx.user.user_id:
        raise ImError("bad_request", "that is you")


def _write(ctx, fn, *args, reply=lambda events: {}):
    # Exclusive: a send batch checks friendships before it takes the position lock, so none
    # may overlap a batch that changes them.
    return stream_write(ctx, fn, *args, exclusive=True, reply=reply)


@domain.op("friend_request", user=Int(), greeting=Str(required=False, default="", max_len=255))
def friend_request(ctx, user, greeting):
    _not_me(ctx, user)
    return _write(ctx, store.request, user, greeting, reply=lambda status: {"status": status})


@domain.op("friend_accept", user=Int())
def friend_accept(ctx, user):
    return _write(ctx, store.accept, user)


@domain.op("friend_reject", user=Int())
def friend_reject(ctx, user):
    return _write(ctx, store.reject, user)


@domain.op("friend_remove", user=Int())
def friend_remove(ctx, user):
    return _write(ctx, store.remove, user)


@domain.op("block", user=Int())
def block(ctx, user):
    _not_me(ctx, user)
    return _write(ctx, store.block, user)


@domain.op("unblock", user=Int())
def unblock(ctx, user):
    return _write(ctx, store.unblock, user)


@domain.op("friend_alias", user=Int(), alias=Str(max_len=64))
def friend_alias(ctx, user, alias):
    return _write(ctx, store.set_alias, user, alias)


@domain.op("friends")
async def friends(ctx):
    rows = await ctx.server.read("friends", store.friends, ctx.user.user_id)
    statuses = await ctx.server.presence.statuses([row["user_id"] for row in rows])
    for row in rows:
        row.update(statuses[row["user_id"]])
    return {"friends": rows}


@domain.op("friend_requests")
async def friend_requests(ctx):
    incoming, outgoing = await ctx.server.read("friend_requests", store.pending, ctx.user.user_id)
    return {"incoming": incoming, "outgoing": outgoing}


@domain.op("blocked")
async def blocked(ctx):
    return {"users": await ctx.server.read("blocked", store.blocked, ctx.user.user_id)}


@domain.on_login
async def pending_requests(server, user, peer, device):
    """Requests made while a user was offline are pushed to the connection that logs in."""
    incoming, _ = await server.read("friend_requests", store.pending, user.user_id)
    return [Direct({"op": "friend_request", "from": r["user_id"], "to": user.user_id,
                    "greeting": r["greeting"], "ts": r["created"], "pending": True})
            for r in incoming]
