"""The connection protocol on a StringTransport: framing, dispatch, errors, limits, backpressure."""
import json
import struct

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from imserver import wire
from imserver.config import Config
from imserver.dispatch import Int, OpTable, Str
from imserver.errors import ImError
from imserver.output import Coalescer
from imserver.protocol import ImProtocol
from imserver.announce import Announcer
from imserver.connections import Connections
from imserver.notifier import LocalNotifier


class FakeServer:
    def __init__(self, ops, **config):
        self.config = Config(**config)
        self.ops = ops
        self.connections = Connections()
        self.announcer = Announcer(LocalNotifier(self.connections), self.connections)
        self.output = Coalescer()
        self.clock = task.Clock()
        self.binary = []

    def binary_received(self, ctx, payload):
        self.binary.append(payload)

    def announce(self, effects, origin=None):
        self.announcer.announce(effects, origin)


def make_ops():
    ops = OpTable()

    @ops.op("echo", auth=False, text=Str(max_len=10), n=Int(required=False, default=1, min=0))
    def echo(ctx, text, n):
        return {"text": text * n}

    @ops.op("secret")
    def secret(ctx):
        return {"ok_for": ctx.user}

    @ops.op("fail", auth=False)
    def fail(ctx):
        raise ImError("exists", "already there")

    @ops.op("crash", auth=False)
    def crash(ctx):
        raise RuntimeError("database password is hunter2")

    return ops


def connect(**config):
    server = FakeServer(make_ops(), **config)
    proto = ImProtocol(server)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def frames(transport):
    data = transport.value()
    transport.clear()
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        out.append(json.loads(data[4:4 + n]))
        data = data[4 + n:]
    return out


def feed(proto, obj_or_bytes, one_byte_at_a_time=False):
    payload = obj_or_bytes if isinstance(obj_or_bytes, bytes) else wire.dumps(obj_or_bytes)
    data = wire.frame(payload)
    if one_byte_at_a_time:
        for i in range(len(data)):
            proto.dataReceived(data[i:i + 1])
    else:
        proto.dataReceived(data)


def test_request_reply():
    proto, t = connect()
    feed(proto, {"op": "echo", "id": 1, "text": "ab", "n": 2})
    assert frames(t) == [{"re": 1, "ok": True, "text": "abab"}]


def test_byte_at_a_time_and_pipelined():
    proto, t = connect()
    feed(proto, {"op": "echo", "id": "a", "text": "x"}, one_byte_at_a_time=True)
    data = wire.encode({"op": "echo", "id": 2, "text": "y"}) + wire.encode({"op": "echo", "id": 3, "text": "z"})
    proto.dataReceived(data)
    assert [f["re"] for f in frames(t)] == ["a", 2, 3]


@pytest.mark.parametrize("payload, needle", [
    (b'{"op": "echo", "id": 1, "text": "\xff"}', "UTF-8"),
    (b'{"op": ', "JSON"),
    (b"[1, 2]", "JSON object"),
])
def test_bad_payload_is_bad_request_and_connection_stays_usable(payload, needle):
    proto, t = connect()
    feed(proto, payload)
    [reply] = frames(t)
    assert reply["ok"] is False and reply["re"] is None
    assert reply["error"]["code"] == "bad_request" and needle in reply["error"]["message"]
    feed(proto, {"op": "echo", "id": 2, "text": "ok"})
    assert frames(t)[0]["text"] == "ok"
    assert not t.disconnecting


@pytest.mark.parametrize("request_, code, needle", [
    ({"id": 1}, "bad_request", "'op'"),
    ({"op": "echo", "text": "x"}, "bad_request", "'id'"),
    ({"op": "echo", "id": True, "text": "x"}, "bad_request", "'id'"),
    ({"op": "echo", "id": 1}, "bad_request", "missing field 'text'"),
    ({"op": "echo", "id": 1, "text": 5}, "bad_request", "'text' must be a string"),
    ({"op": "echo", "id": 1, "text": "x", "n": True}, "bad_request", "'n' must be an integer"),
    ({"op": "echo", "id": 1, "text": "x", "n": -1}, "bad_request", "at least 0"),
    ({"op": "echo", "id": 1, "text": "x" * 11}, "bad_request", "longer than 10"),
    ({"op": "nope", "id": 1}, "unknown_op", "nope"),
    ({"op": "secret", "id": 1}, "not_authenticated", "secret"),
    ({"op": "fail", "id": 1}, "exists", "already there"),
])
def test_errors_have_codes(request_, code, needle):
    proto, t = connect()
    feed(proto, request_)
    [reply] = frames(t)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert needle in reply["error"]["message"]


def test_unexpected_exception_is_internal_without_details(caplog):
    proto, t = connect()
    feed(proto, {"op": "crash", "id": 9})
    [reply] = frames(t)
    assert reply == {"re": 9, "ok": False, "error": {"code": "internal", "message": "internal server error"}}
    assert "hunter2" not in json.dumps(reply)


def test_oversized_length_refused_before_buffering():
    proto, t = connect(max_frame=1000)
    # Declare 3 GB; send only the header and a little: nothing is buffered, error then close.
    proto.dataReceived(struct.pack(">I", 3 * 1024 ** 3) + b"{" * 100)
    [reply] = frames(t)
    assert reply["error"]["code"] == "too_large"
    assert t.disconnecting
    assert proto._reader.pending() <= 104
    proto.dataReceived(b"x" * 10000)  # ignored once closing
    assert proto._reader.pending() <= 104


def test_binary_frames_go_to_the_server_hook():
    proto, t = connect()
    proto.dataReceived(wire.frame(b"\x00\x01chunk"))
    assert proto.server.binary == [b"\x00\x01chunk"]


def test_slow_reader_is_disconnected_past_the_limit():
    proto, t = connect(max_pending_output=1000)
    proto.guard.pauseProducing()  # what the transport does when its buffer is full
    proto.write_frame(b"x" * 600)
    assert not t.disconnecting
    proto.write_frame(b"x" * 600)
    assert t.disconnecting  # StringTransport.abortConnection sets this


def test_resumed_reader_is_not_disconnected():
    proto, t = connect(max_pending_output=1000)
    proto.guard.pauseProducing()
    proto.write_frame(b"x" * 600)
    proto.guard.resumeProducing()
    proto.write_frame(b"x" * 600)
    assert not t.disconnecting


def test_too_many_requests_in_flight_pause_reading():
    from twisted.internet import defer

    server = FakeServer(make_ops())
    waiting = []

    @server.ops.op("slow", auth=False)
    def slow(ctx):
        d = defer.Deferred()
        waiting.append(d)
        return d

    proto = ImProtocol(server)
    proto.max_inflight = 4
    t = StringTransport()
    proto.makeConnection(t)
    data = b"".join(wire.encode({"op": "slow", "id": i}) for i in range(6))
    proto.dataReceived(data)
    assert len(waiting) == 4 and t.producerState == "paused"  # two requests wait, unread
    waiting[0].callback({})
    waiting[1].callback({})
    assert len(waiting) == 6  # reading resumed: the two waiting requests were read...
    assert t.producerState == "paused"  # ...which makes four in flight again
    for d in waiting[2:]:
        d.callback({})
    assert t.producerState == "producing"
    assert [f["re"] for f in frames(t)] == [0, 1, 2, 3, 4, 5]


def test_reading_resumes_only_when_every_reason_is_resumed():
    proto, t = connect()
    proto.pause_reading("upload")
    proto.pause_reading("requests")
    assert t.producerState == "paused"
    proto.resume_reading("upload")
    assert t.producerState == "paused"  # still too many requests in flight
    proto.resume_reading("requests")
    assert t.producerState == "producing"
    proto.resume_reading("requests")  # resuming twice is harmless
    assert t.producerState == "producing"


def answering_ops():
    """Ops in the ``answers`` form, answered later through the callables they were given."""
    ops = OpTable()
    pending = []

    @ops.op("later", auth=False, answers=True, text=Str())
    def later(ctx, answer, text):
        if text == "bad":
            raise ImError("bad_request", "refused before answering")
        pending.append(answer)

    return ops, pending


def test_answering_op_replies_when_it_answers():
    ops, pending = answering_ops()
    proto = ImProtocol(FakeServer(ops))
    t = StringTransport()
    proto.makeConnection(t)
    proto.dataReceived(wire.encode({"op": "later", "id": 1, "text": "a"}) +
                       wire.encode({"op": "later", "id": 2, "text": "b"}) +
                       wire.encode({"op": "later", "id": 3, "text": "c"}) +
                       wire.encode({"op": "later", "id": 4, "text": "d"}))
    assert frames(t) == [] and proto._inflight == 4
    pending[1]({"n": 2})
    pending[0](ImError("not_friends", "no"))
    pending[2](RuntimeError("secret detail"))
    pending[3](None)
    pending[3]({"n": "again"})  # a second answer is ignored
    replies = frames(t)
    assert replies[0] == {"re": 2, "ok": True, "n": 2}
    assert replies[1] == {"re": 1, "ok": False, "error": {"code": "not_friends", "message": "no"}}
    assert replies[2] == {"re": 3, "ok": False, "error": {"code": "internal",
                                                          "message": "internal server error"}}
    assert replies[3] == {"re": 4, "ok": True}
    assert len(replies) == 4 and proto._inflight == 0


def test_answering_op_that_raises_is_answered_with_the_error():
    ops, pending = answering_ops()
    proto = ImProtocol(FakeServer(ops))
    t = StringTransport()
    proto.makeConnection(t)
    feed(proto, {"op": "later", "id": 7, "text": "bad"})
    feed(proto, {"op": "later", "id": 8})
    assert frames(t) == [
        {"re": 7, "ok": False, "error": {"code": "bad_request", "message": "refused before answering"}},
        {"re": 8, "ok": False, "error": {"code": "bad_request", "message": "missing field 'text'"}}]
    assert pending == [] and proto._inflight == 0


def _mixed_stream():
    chunks = [b"\x00\x01" + bytes([i]) * (300 + i) for i in range(3)]
    data = (wire.frame(chunks[0]) + wire.frame(chunks[1])
            + wire.encode({"op": "echo", "id": 7, "text": "mid"}) + wire.frame(chunks[2]))
    return chunks, data


def test_binary_frames_split_at_every_byte_boundary_with_json_between():
    chunks, data = _mixed_stream()
    for cut in range(len(data) + 1):
        proto, t = connect()
        proto.dataReceived(data[:cut])
        proto.dataReceived(data[cut:])
        assert [bytes(p) for p in proto.server.binary] == chunks, cut
        assert frames(t) == [{"re": 7, "ok": True, "text": "mid"}]


def test_several_binary_frames_in_one_read_and_byte_at_a_time():
    chunks, data = _mixed_stream()
    proto, t = connect()
    proto.dataReceived(data + data)
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert [bytes(p) for p in proto.server.binary] == chunks * 3
    assert [f["re"] for f in frames(t)] == [7, 7, 7]


def test_oversized_binary_frame_is_refused_from_its_header_between_good_frames():
    chunks, data = _mixed_stream()
    proto, t = connect(max_frame=1000)
    proto.dataReceived(data + struct.pack(">I", 1001) + b"\x00\x01" + b"x" * 10)
    assert [bytes(p) for p in proto.server.binary] == chunks
    replies = frames(t)
    assert [r["re"] for r in replies] == [7, None] and replies[1]["error"]["code"] == "too_large"
    assert t.disconnecting
    proto.dataReceived(wire.frame(b"\x00\x01late"))  # ignored once closing
    assert len(proto.server.binary) == 3


def test_paused_connection_delivers_no_frame_until_resumed():
    chunks, data = _mixed_stream()
    proto, t = connect()
    proto.server.binary_received = lambda ctx, payload: (proto.server.binary.append(payload),
                                                        proto.pause_reading("upload"))
    proto.dataReceived(data)
    assert [bytes(p) for p in proto.server.binary] == chunks[:1] and t.producerState == "paused"
    proto.resume_reading("upload")
    assert [bytes(p) for p in proto.server.binary] == chunks[:2]
    proto.resume_reading("upload")
    assert [bytes(p) for p in proto.server.binary] == chunks
    assert [f["re"] for f in frames(t)] == [7]
