"""The chat square: one public room every logged-in user may read and post to.

Posts are stored (the newest ``config.square_history`` are kept) and published live on the
``square`` topic, which a connection subscribes to with ``square_join`` (until it leaves, logs
out or goes). Each user's posting is limited by a token bucket (``config.square_rate`` posts a
second, bursts of ``config.square_burst``) on the server's clock.
"""
import functools
import math

from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.effects import Publish, Reply, Subscribe, Unsubscribe
from imserver.errors import ImError
from imserver.handlers.messages import check_text
from imserver.store import square as store

domain = Domain("square")
TOPIC = "square"
domain.batch("square_send", lambda config: functools.partial(store.post_batch,
                                                             keep=config.square_history),
             configured=True)


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


@domain.on_start
def start(server):
    """The square's state: the posting rate limiter."""
    return TokenBucket(server.clock, server.config.square_rate, server.config.square_burst)


@domain.op("square_join")
def square_join(ctx):
    return Reply({}, [Subscribe(TOPIC)])


@domain.op("square_leave")
def square_leave(ctx):
    return Reply({}, [Unsubscribe(TOPIC)])


@domain.op("square_send", body=Str())
async def square_send(ctx, body):
    server = ctx.server
    check_text(server.config, body)
    server.state[domain.name].take(ctx.user.user_id)
    post = await server.writer.submit("square_send", store.SquarePost(ctx.user.user_id, body, server.now_ms()))
    return Reply({"id": post["id"], "ts": post["ts"]}, [Publish(TOPIC, dict(post, op="square_message"))])


@domain.op("square_history", before=Int(required=False, min=1),
        limit=Int(required=False, default=50, min=1, max=200))
async def square_history(ctx, before, limit):
    before = before if before is not None else 2 ** 62
    posts, more = await ctx.server.read("square_history", store.history, before, limit)
    return {"messages": posts, "more": more}
