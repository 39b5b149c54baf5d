"""Presence: friends hear when a user's first device comes online or last goes, and status changes.

The state lives in the server's ``IPresence`` (``imserver/presence.py``); this domain sets it
(``presence_set``) and, as the presence object's observer, tells the user's friends.
"""
from twisted.internet import defer
from twisted.logger import Logger

from imserver.dispatch import Str
from imserver.domain import Domain
from imserver.effects import Ephemeral
from imserver.store import friends as friends_store

domain = Domain("presence")
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
        server = self.server
        friend_ids = await server.read("friend_ids", friends_store.friend_ids, user_id)
        if not friend_ids:
            return
        push = {"op": "presence", "user": user_id}
        push.update(await server.presence.status(user_id))
        server.announce([Ephemeral(tuple(friend_ids), push)])


@domain.on_start
def start(server):
    server.presence.add_observer(Broadcaster(server))


@domain.op("presence_set", status=Str(choices=STATUSES), text=Str(required=False, default="", max_len=100))
async def presence_set(ctx, status, text):
    await ctx.server.presence.set_status(ctx.user.user_id, status, text)
    return {}
