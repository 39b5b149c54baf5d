"""The stream: ``sync`` reads everything after a position from every domain's sources.

Each domain declares the sources of its events (``Domain.source``); this domain owns the
generic ``events`` table (friend events, receipts, ...) as one of them.
"""
from imserver.dispatch import Int
from imserver.domain import Domain
from imserver.store import stream

domain = Domain("stream")
domain.source(stream.events_source)


@domain.op("sync", since=Int(min=0), limit=Int(required=False, default=100, min=1, max=1000))
async def sync(ctx, since, limit):
    server = ctx.server
    events, more = await server.read("sync", stream.read_since, server.stream_sources,
                                     ctx.user.user_id, since, limit)
    return {"events": events, "next": events[-1]["pos"] if events else since, "more": more}
