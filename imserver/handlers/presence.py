"""Presence: friends hear when a user's first device comes online or last goes, and status changes."""
from twisted.internet import defer
from twisted.logger import Logger

from imserver.dispatch import Str
from imserver.handlers import ops
from imserver.store import friends as friends_store

STATUSES = ("online", "away", "busy")


class Broadcaster:
    """Tells a user's friends their presence, as it is when the friend list has been read.

    The list comes from a pool thread, so two broadcasts close together (a device connecting
    and the last one leaving) may finish in either order; each sends the status current when
    it finishes, so the last push a friend gets is never stale."""

    _log = Logger()

    def __init__(self, server):
        self.server = server

    def __call__(self, user_id):
        d = defer.ensureDeferred(self._send(user_id))
        return d.addErrback(lambda f: self._log.failure("presence broadcast for {user} failed", f,
                                                        user=user_id))

    async def _send(self, user_id):
        friend_ids = await self.server.read("friend_ids", friends_store.friend_ids, user_id)
        push = {"op": "presence", "user": user_id}
        push.update(self.server.notifier.status(user_id))
        for friend in friend_ids:
            self.server.notifier.push(friend, push)


@ops.op("presence_set", status=Str(choices=STATUSES), text=Str(required=False, default="", max_len=100))
async def presence_set(ctx, status, text):
    ctx.server.notifier.set_status(ctx.user.user_id, status, text)
    await ctx.server.presence(ctx.user.user_id)
    return {}


def install(server):
    server.presence = Broadcaster(server)
    server.notifier.add_observer(lambda user_id, online: server.presence(user_id))
