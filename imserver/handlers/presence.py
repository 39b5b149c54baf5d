"""Presence: friends hear when a user's first device comes online or last goes, and status changes."""
from twisted.internet import defer
from twisted.logger import Logger

from imserver.dispatch import Str
from imserver.handlers import ops
from imserver.store import friends as friends_store

_log = Logger()
STATUSES = ("online", "away", "busy")


async def _tell_friends(server, user_id):
    friend_ids = await server.read("friend_ids", friends_store.friend_ids, user_id)
    push = {"op": "presence", "user": user_id}
    push.update(server.notifier.status(user_id))
    for friend in friend_ids:
        server.notifier.push(friend, push)


def broadcast(server, user_id):
    return defer.ensureDeferred(_tell_friends(server, user_id)).addErrback(
        lambda f: _log.failure("presence broadcast for {user} failed", f, user=user_id))


@ops.op("presence_set", status=Str(choices=STATUSES), text=Str(required=False, default="", max_len=100))
async def presence_set(ctx, status, text):
    ctx.server.notifier.set_status(ctx.user.user_id, status, text)
    await broadcast(ctx.server, ctx.user.user_id)
    return {}


def install(server):
    server.notifier.add_observer(lambda user_id, online: broadcast(server, user_id))
