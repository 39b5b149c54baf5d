"""1:1 messaging ops: send, sync, history, receipts, unread counts."""
from imserver.dispatch import Int, Str
from imserver.errors import ImError
from imserver.handlers import ops
from imserver.store import messages as store
from imserver.store import stream

KINDS = ("text",)


def message_push(event):
    push = {"op": "message"}
    push.update(event)
    del push["type"]
    return push


@ops.op("send", to=Int(), body=Str(), client_id=Str(max_len=64))
def send(ctx, to, body, client_id):
    # A Deferred chain, not a coroutine: this is the op the server runs most.
    server, me = ctx.server, ctx.user.user_id
    if to == me:
        raise ImError("self_send", "you cannot send a message to yourself")
    if not body.strip():
        raise ImError("empty_body", "the message body is empty")
    if len(body) > server.config.max_body:
        raise ImError("too_large", f"the body is longer than {server.config.max_body} characters")
    if not client_id:
        raise ImError("bad_request", "field 'client_id' is empty")
    job = store.Send(me, to, client_id, body, "text", None, server.now_ms())
    return server.writer.submit("send", job).addCallback(_sent, ctx, me, to)


def _sent(result, ctx, me, to):
    event, duplicate = result
    if not duplicate:
        notifier = ctx.server.notifier
        push = message_push(event)
        notifier.push(to, push)
        if notifier.connection_count(me) > 1:
            notifier.push(me, push, exclude=ctx.conn)
    return {"msg_id": event["msg_id"], "ts": event["ts"], "pos": event["pos"], "duplicate": duplicate}


@ops.op("sync", since=Int(min=0), limit=Int(required=False, default=100, min=1, max=1000))
async def sync(ctx, since, limit):
    events, more = await ctx.server.read("sync", stream.read_since, ctx.user.user_id, since, limit)
    return {"events": events, "next": events[-1]["pos"] if events else since, "more": more}


@ops.op("history", peer=Int(), before=Int(required=False, min=1),
        limit=Int(required=False, default=50, min=1, max=200))
async def history(ctx, peer, before, limit):
    before = before if before is not None else 2 ** 62
    messages, more = await ctx.server.read("history", store.history, ctx.user.user_id, peer, before, limit)
    return {"messages": messages, "more": more}


async def _mark(ctx, peer, msg_id, kind):
    server = ctx.server
    events = await server.write(store.mark, ctx.user.user_id, peer, msg_id, kind, server.now_ms())
    if events:
        server.publish(events, exclude=ctx.conn)
    return {"moved": bool(events)}


@ops.op("mark_delivered", peer=Int(), msg_id=Int(min=1))
def mark_delivered(ctx, peer, msg_id):
    return _mark(ctx, peer, msg_id, "delivered")


@ops.op("mark_read", peer=Int(), msg_id=Int(min=1))
def mark_read(ctx, peer, msg_id):
    return _mark(ctx, peer, msg_id, "read")


@ops.op("unread")
async def unread(ctx):
    counts = await ctx.server.read("unread", store.unread_counts, ctx.user.user_id)
    return {"unread": [{"peer": peer, "count": n} for peer, n in sorted(counts.items())]}


