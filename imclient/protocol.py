"""The client side of the wire protocol: requests as Deferreds, pushes as callbacks.

``ClientProtocol.request(op, **fields)`` sends ``{"op", "id", ...}`` and fires with the reply dict,
or fails with ``RemoteError(code, message)``. Frames without ``re`` are pushes, handed to every
subscriber; binary frames go to ``on_binary``.
"""
import json
import struct

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.protocols.basic import Int32StringReceiver

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: The frame structs (docs/protocol.rst, "Frames" and "Binary frames"), the only copy in imclient:
#: a frame's length prefix; a binary payload's header (mark 0x00, kind, stream id, offset); and
#: the two packed at once, for the chunk writer's hot path.
LENGTH = struct.Struct(">I")
BINARY_HEADER = struct.Struct(">BBQQ")
PREFIXED_HEADER = struct.Struct(LENGTH.format + BINARY_HEADER.format.lstrip("<>!=@"))
UPLOAD_CHUNK, DOWNLOAD_DATA = 0x01, 0x02


def binary_head(kind, stream, offset, size):
    """The length prefix and binary header of a frame that carries ``size`` data bytes."""
    return PREFIXED_HEADER.pack(BINARY_HEADER.size + size, 0, kind, stream, offset)


class RemoteError(Exception):
    """The server answered ``ok: false``."""

    def __init__(self, code, message, error=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.error = error or {}


class NotConnected(Exception):
    """The client is offline: a request cannot go out now (only sends queue, in the outbox)."""


class ClientProtocol(Int32StringReceiver):
    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self):
        self._pending = {}
        self._next_id = 1
        self._push_handlers = []
        self.on_binary = None
        self.lost = defer.Deferred()
        self.server_info = None

    def subscribe(self, handler):
        """Call ``handler(push_dict)`` for every push; returns a function that unsubscribes."""
        self._push_handlers.append(handler)
        return lambda: self._push_handlers.remove(handler)

    def request(self, op, **fields):
        rid = self._next_id
        self._next_id += 1
        message = {"op": op, "id": rid}
        message.update({k: v for k, v in fields.items() if v is not None})
        d = self._pending[rid] = defer.Deferred()
        self.send_raw(_encoder.encode(message).encode("utf-8"))
        return d

    def send_raw(self, payload):
        """Write one frame whose payload is already encoded (JSON or binary)."""
        self.transport.write(LENGTH.pack(len(payload)) + payload)

    def stringReceived(self, payload):
        if payload[:1] == b"\x00":
            if self.on_binary is not None:
                self.on_binary(payload)
            return
        message = json.loads(payload)
        rid = message.get("re", _NO_RE) if isinstance(message, dict) else _NO_RE
        if rid is _NO_RE:
            for handler in list(self._push_handlers):
                handler(message)
            return
        d = self._pending.pop(rid, None)
        if d is None:
            # A reply to no request of ours (re: null for an undecodable frame): surface it.
            for handler in list(self._push_handlers):
                handler(message)
            return
        if message.get("ok"):
            d.callback(message)
        else:
            error = message.get("error") or {}
            d.errback(RemoteError(error.get("code", "internal"), error.get("message", ""), error))

    def connectionLost(self, reason=ConnectionDone()):
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(reason)
        self.lost_reason = reason
        if not self.lost.called:
            self.lost.callback(None)

    def close(self):
        self.transport.loseConnection()
        return self.lost

    # Convenience wrappers for the foundation ops.
    def hello(self, client="imclient"):
        return self.request("hello", protocol=1, client=client)

    def register(self, username, password, nickname=None, phone=None):
        return self.request("register", username=username, password=password, nickname=nickname,
                            phone=phone)

    def login(self, username, password, device=None):
        return self.request("login", username=username, password=password, device=device)

    def resume(self, token):
        return self.request("resume", token=token)

    def logout(self):
        return self.request("logout")


_NO_RE = object()
