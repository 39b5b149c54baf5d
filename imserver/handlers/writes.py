"""The stream write most change ops make: run in the next group commit, answer with ``pos``."""
from imserver.effects import entries, reply_with_pos


def _no_fields(result):
    return {}


async def stream_write(ctx, fn, *args, exclusive=False, reply=_no_fields):
    """Run ``fn(txn, positions, me, *args, now)`` in the next group commit.

    ``fn`` returns the committed ``[(recipients, event)]``, or ``(status, pairs)``;
    ``reply(status, or the pairs)`` makes the reply's fields, to which ``pos`` is added when
    the write reached the acting user's stream. The events become new stream entries.
    ``exclusive``: see ``GroupCommitter.call``."""
    server, me = ctx.server, ctx.user.user_id
    result = await server.write(fn, me, *args, server.now_ms(), exclusive=exclusive)
    status, pairs = result if isinstance(result, tuple) else (result, result)
    return reply_with_pos(reply(status), entries(pairs), me)
