"""The chat square: one public room every logged-in user may read and post to.

Posts are stored (the newest ``config.square_history`` are kept) and published live on the
``square`` topic, which a connection subscribes to with ``square_join`` (until it leaves, logs
out or goes). Each user's posting is limited by a token bucket (``config.square_rate`` posts a
second, bursts of ``config.square_burst``) on the server's clock.
"""
import functools

from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.effects import Publish, Reply, Subscribe, Unsubscribe
from imserver.handlers.messages import check_text
from imserver.ratelimit import RateLimiter
from imserver.store import square as store

domain = Domain("square")
TOPIC = "square"
domain.batch("square_send", lambda config: functools.partial(store.post_batch,
                                                             keep=config.square_history),
             configured=True)


@domain.on_start
def start(server):
    """The square's state: the posting rate limiter."""
    return RateLimiter(server.clock, server.config.square_rate, server.config.square_burst,
                       message="you are posting too fast")


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
