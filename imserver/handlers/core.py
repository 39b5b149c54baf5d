"""Connection-level ops: ``hello`` (version negotiation) and ``ping``."""
from imserver import PROTOCOL_VERSION, __version__
from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.errors import ImError

domain = Domain("core")

SUPPORTED = (PROTOCOL_VERSION,)


@domain.op("hello", auth=False, protocol=Int(required=False), client=Str(required=False, max_len=100))
def hello(ctx, protocol, client):
    if protocol is not None and protocol not in SUPPORTED:
        raise ImError("bad_request", f"protocol {protocol} is not supported; this server speaks "
                                     f"{', '.join(map(str, SUPPORTED))}")
    return {"server": "parley", "server_version": __version__, "protocol": PROTOCOL_VERSION,
            "protocols": list(SUPPORTED), "limits": ctx.server.config.limits()}


@domain.op("ping", auth=False)
def ping(ctx):
    return {"ts": ctx.server.now_ms()}
