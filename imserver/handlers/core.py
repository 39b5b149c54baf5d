"""Connection-level ops: ``hello`` (version negotiation) and ``ping``."""
from imserver import PROTOCOL_VERSION, __version__
from imserver.dispatch import Int, Str
from imserver.errors import ImError
from imserver.handlers import ops

SUPPORTED = (PROTOCOL_VERSION,)


@ops.op("hello", auth=False, protocol=Int(required=False), client=Str(required=False, max_len=100))
def hello(ctx, protocol, client):
    if protocol is not None and protocol not in SUPPORTED:
        raise ImError("bad_request", f"protocol {protocol} is not supported; this server speaks "
                                     f"{', '.join(map(str, SUPPORTED))}")
    return {"server": "parley", "server_version": __version__, "protocol": PROTOCOL_VERSION,
            "protocols": list(SUPPORTED), "limits": ctx.server.config.limits()}


@ops.op("ping", auth=False)
def ping(ctx):
    return {"ts": ctx.server.now_ms()}
