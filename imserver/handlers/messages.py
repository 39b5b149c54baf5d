"""1:1 messaging ops: send, history, receipts, unread counts; messages in the users' streams."""
from functools import partial

from imserver.dispatch import Int, Obj, Str
from imserver.domain import Domain
from imserver.effects import Entries
from imserver.errors import ImError
from imserver.handlers.writes import stream_write
from imserver.store import messages as store
from imserver.store import stream

domain = Domain("messages")
domain.source(stream.message_source)
domain.batch("send", store.send_batch, reads_first=True)

FILE_KINDS = ("file", "image", "voice")


def check_text(config, body, client_id=None, allow_empty=False):
    """The checks every kind of send makes on its body (and client id, where it has one)."""
    if (not body or body.isspace()) and not allow_empty:
        raise ImError("empty_body", "the message body is empty")
    if len(body) > config.max_body:
        raise ImError("too_large", f"the body is longer than {config.max_body} characters")
    if client_id is not None and not client_id:
        raise ImError("bad_request", "field 'client_id' is empty")


def file_reference(file):
    """Validate a message's ``file`` field: ``{"id", "kind", "duration"?}``."""
    if file is None:
        return None
    file_id, kind, duration = file.get("id"), file.get("kind", "file"), file.get("duration")
    if isinstance(file_id, bool) or not isinstance(file_id, int):
        raise ImError("bad_request", "field 'file.id' must be an integer")
    if kind not in FILE_KINDS:
        raise ImError("bad_request", f"field 'file.kind' must be one of {', '.join(FILE_KINDS)}")
    ref = {"id": file_id, "kind": kind}
    if kind == "voice":
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= 3600:
            raise ImError("bad_request", "a voice message needs 'file.duration' in seconds (0-3600)")
        ref["duration"] = duration
    return ref


@domain.op("send", answers=True, to=Int(), body=Str(required=False, default=""),
           client_id=Str(max_len=64), file=Obj(required=False))
def send(ctx, answer, to, body, client_id, file):
    # The op the server runs most: it answers from the batch's completion, with no Deferred or
    # coroutine per message (a bad request raises here, and dispatch answers with the error).
    server, me = ctx.server, ctx.user.user_id
    file = file_reference(file)
    if to == me:
        raise ImError("self_send", "you cannot send a message to yourself")
    check_text(server.config, body, client_id, allow_empty=file is not None)
    job = store.Send(me, to, client_id, body, file["kind"] if file else "text", None,
                     server.now_ms(), file)
    server.writer.enqueue("send", job, partial(_sent, ctx, me, to, answer))


def _sent(ctx, me, to, answer, result):
    """The batch holding this send has committed (``result`` is ``(push, duplicate)``) or it
    was refused (``result`` is an ImError): announce the message as a new entry in both users'
    streams (unless it is a resend), then answer. This is what dispatch does with a returned
    ``Reply``, done here without the Reply object: the op runs tens of thousands of times a
    second, and that object and its check were a tenth of its cost of delivery."""
    if isinstance(result, ImError):
        answer(result)
        return
    push, duplicate = result
    if not duplicate:
        ctx.server.announcer.announce([Entries((to, me), push)], ctx.conn)
    answer({"msg_id": push["msg_id"], "ts": push["ts"], "pos": push["pos"], "duplicate": duplicate})


@domain.op("history", peer=Int(), before=Int(required=False, min=1),
           limit=Int(required=False, default=50, min=1, max=200))
async def history(ctx, peer, before, limit):
    before = before if before is not None else 2 ** 62
    messages, more = await ctx.server.read("history", store.history, ctx.user.user_id, peer, before, limit)
    return {"messages": messages, "more": more}


def _mark(ctx, peer, msg_id, kind):
    return stream_write(ctx, store.mark, peer, msg_id, kind,
                        reply=lambda events: {"moved": bool(events)})


@domain.op("mark_delivered", peer=Int(), msg_id=Int(min=1))
def mark_delivered(ctx, peer, msg_id):
    return _mark(ctx, peer, msg_id, "delivered")


@domain.op("mark_read", peer=Int(), msg_id=Int(min=1))
def mark_read(ctx, peer, msg_id):
    return _mark(ctx, peer, msg_id, "read")


@domain.op("unread")
async def unread(ctx):
    counts = await ctx.server.read("unread", store.unread_counts, ctx.user.user_id)
    return {"unread": [{"peer": peer, "count": n} for peer, n in sorted(counts.items())]}


