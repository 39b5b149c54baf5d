"""Friend ops: requests, accept/reject, remove, block/unblock, alias, lists."""
from twisted.internet import defer
from twisted.logger import Logger

from imserver.dispatch import Int, Str
from imserver.errors import ImError
from imserver.handlers import ops
from imserver.store import friends as store

_log = Logger()


def _not_me(ctx, user):
    if user == ctx.user.user_id:
        raise ImError("bad_request", "that is you")


async def _write(ctx, fn, *args):
    """Run a friends write in the next group commit and publish its events after the commit."""
    server = ctx.server
    # Exclusive: a send batch checks friendships before it takes the position lock, so none
    # may overlap a batch that changes them.
    result = await server.write(fn, ctx.user.user_id, *args, server.now_ms(), exclusive=True)
    events = result[1] if isinstance(result, tuple) else result
    server.publish(events, exclude=ctx.conn)
    return result


@ops.op("friend_request", user=Int(), greeting=Str(required=False, default="", max_len=255))
async def friend_request(ctx, user, greeting):
    _not_me(ctx, user)
    status, _ = await _write(ctx, store.request, user, greeting)
    return {"status": status}


@ops.op("friend_accept", user=Int())
async def friend_accept(ctx, user):
    await _write(ctx, store.accept, user)
    return {}


@ops.op("friend_reject", user=Int())
async def friend_reject(ctx, user):
    await _write(ctx, store.reject, user)
    return {}


@ops.op("friend_remove", user=Int())
async def friend_remove(ctx, user):
    await _write(ctx, store.remove, user)
    return {}


@ops.op("block", user=Int())
async def block(ctx, user):
    _not_me(ctx, user)
    await _write(ctx, store.block, user)
    return {}


@ops.op("unblock", user=Int())
async def unblock(ctx, user):
    await _write(ctx, store.unblock, user)
    return {}


@ops.op("friend_alias", user=Int(), alias=Str(max_len=64))
async def friend_alias(ctx, user, alias):
    await _write(ctx, store.set_alias, user, alias)
    return {}


@ops.op("friends")
async def friends(ctx):
    rows = await ctx.server.read("friends", store.friends, ctx.user.user_id)
    for row in rows:
        row.update(ctx.server.notifier.status(row["user_id"]))
    return {"friends": rows}


@ops.op("friend_requests")
async def friend_requests(ctx):
    incoming, outgoing = await ctx.server.read("friend_requests", store.pending, ctx.user.user_id)
    return {"incoming": incoming, "outgoing": outgoing}


@ops.op("blocked")
async def blocked(ctx):
    return {"users": await ctx.server.read("blocked", store.blocked, ctx.user.user_id)}


async def _push_pending_requests(ctx, user):
    incoming, _ = await ctx.server.read("friend_requests", store.pending, user.user_id)
    for request in incoming:
        ctx.conn.send({"op": "friend_request", "from": request["user_id"], "to": user.user_id,
                       "greeting": request["greeting"], "ts": request["created"], "pending": True})


def install(server):
    """Requests made while a user was offline are pushed to them when they log in."""
    def on_login(ctx, user):
        defer.ensureDeferred(_push_pending_requests(ctx, user)).addErrback(
            lambda f: _log.failure("pushing pending friend requests failed", f))
    server.login_hooks.append(on_login)
