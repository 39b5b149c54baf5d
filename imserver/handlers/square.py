"""The chat square: one public room every logged-in user may read and post to.

Posts are stored (the newest ``config.square_history`` are kept) and pushed live to the
connections that said ``square_join``. Each user's posting is limited by a token bucket
(``config.square_rate`` posts a second, bursts of ``config.square_burst``) on the server's clock.
"""
import functools
import math
import weakref

from imserver import wire
from imserver.dispatch import Int, Str
from imserver.errors import ImError
from imserver.handlers import ops
from imserver.handlers.messages import check_text
from imserver.store import square as store


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, clock, rate, burst):
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._buckets = {}  # key -> (tokens, when)

    def take(self, key):
        """Spend one token of ``key``'s bucket, or raise ``rate_limited`` saying when to retry."""
        now = self.clock.seconds()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.rate * 1000) / 1000
            raise ImError("rate_limited", "you are posting too fast", retry_after=wait)
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)

    def _forget_full(self, now):
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


class Square:
    """The square's listeners (connections) and rate limiter."""

    def __init__(self, clock, config):
        self.listeners = weakref.WeakKeyDictionary()  # connection -> the session that joined
        self.limiter = TokenBucket(clock, config.square_rate, config.square_burst)

    def broadcast(self, message, exclude=None):
        data = wire.encode(message)
        for conn, user in list(self.listeners.items()):
            if conn.user is not user:  # logged out since joining: the square forgets it
                del self.listeners[conn]
            elif conn is not exclude:
                conn.write_frame(data)


def _square(ctx):
    return ctx.server.square


@ops.op("square_join")
def square_join(ctx):
    _square(ctx).listeners[ctx.conn] = ctx.user
    return {}


@ops.op("square_leave")
def square_leave(ctx):
    _square(ctx).listeners.pop(ctx.conn, None)
    return {}


@ops.op("square_send", body=Str())
async def square_send(ctx, body):
    server, square = ctx.server, _square(ctx)
    check_text(server.config, body)
    square.limiter.take(ctx.user.user_id)
    post = await server.writer.submit("square_send", store.SquarePost(ctx.user.user_id, body, server.now_ms()))
    square.broadcast(dict(post, op="square_message"), exclude=ctx.conn)
    return {"id": post["id"], "ts": post["ts"]}


@ops.op("square_history", before=Int(required=False, min=1),
        limit=Int(required=False, default=50, min=1, max=200))
async def square_history(ctx, before, limit):
    before = before if before is not None else 2 ** 62
    posts, more = await ctx.server.read("square_history", store.history, before, limit)
    return {"messages": posts, "more": more}


def install(server):
    server.square = Square(server.clock, server.config)
    server.writer.register("square_send", functools.partial(store.post_batch, keep=server.config.square_history))
