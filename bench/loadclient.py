"""The load driver's worker process: asyncio connections that pipeline sends and time deliveries
(on uvloop's event loop when it is installed).

A worker owns some sender/receiver pairs. The parent (``bench/load.py``) sends it commands over a
pipe (set up accounts, connect, run one measured point, close) and gets plain dicts back. On the
hot path nothing is JSON-decoded: acks are recognised by their prefix and the send time is read
out of the pushed body, so one worker handles a few hundred thousand frames a second.
"""
import asyncio
import json
import ssl
import struct
import time
from array import array

try:
    import uvloop  # the bench extra: pip install -e '.[bench]'
except ImportError:
    uvloop = None

#: The open loop's tick: each message is written within about this long after the time it is
#: due (and stamped with), which is libuv's timer resolution; asyncio's is finer.
TICK = 0.001
_LEN = struct.Struct(">I")
_ID = struct.Struct(">I")
BODY = b" hello from the load driver"


class Conn(asyncio.Protocol):
    """One connection: length-prefixed frames in; JSON replies to futures while setting up, and
    ``on_frame(payload, now_ns)`` on the hot path, then ``after()`` once per read."""

    def __init__(self):
        self.transport = None
        self.buf = b""
        self.replies = {}
        self.next_id = 1
        self.on_frame = self._setup_frame
        self.after = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        on_frame, now = self.on_frame, time.monotonic_ns()
        while end - pos >= 4:
            stop = pos + 4 + _LEN.unpack_from(buf, pos)[0]
            if stop > end:
                break
            on_frame(buf[pos + 4:stop], now)
            pos = stop
        self.buf = buf[pos:]
        if self.after is not None:
            self.after()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)
        for f in self.replies.values():
            if not f.done():
                f.set_exception(ConnectionError("connection lost"))

    def write_frame(self, payload):
        self.transport.write(_LEN.pack(len(payload)) + payload)

    def _setup_frame(self, payload, now):
        message = json.loads(payload)
        f = self.replies.pop(message.get("re"), None)
        if f is not None and not f.done():
            f.set_result(message)

    async def request(self, op, **fields):
        rid, self.next_id = self.next_id, self.next_id + 1
        f = self.replies[rid] = asyncio.get_running_loop().create_future()
        self.write_frame(json.dumps({"op": op, "id": rid, **fields}).encode())
        reply = await asyncio.wait_for(f, 120)
        if not reply.get("ok"):
            raise RuntimeError(f"{op} failed: {reply.get('error')}")
        return reply


class ParleyCodec:
    """The server's wire format: ``send`` requests, ``{"re":..,"ok":true`` acks, message pushes."""

    def send(self, pair, rid, ts):
        payload = b'{"op":"send","id":%d,"to":%d,"body":"%d%s","client_id":"%s%d"}' % (
            rid, pair.receiver_id, ts, BODY, pair.run_tag, rid)
        return _LEN.pack(len(payload)) + payload

    @staticmethod
    def ack(payload):
        """None when not a reply; True for ok, False for an error reply."""
        if not payload.startswith(b'{"re":'):
            return None
        return payload.find(b'"ok":true', 6, 40) > 0

    @staticmethod
    def push_ts(payload):
        if not payload.startswith(b'{"op":"message"'):
            return None
        i = payload.find(b'"body":"') + 8
        return int(payload[i:payload.find(b" ", i)])


class RelayCodec:
    """``bench/relay.py``'s binary frames."""

    def send(self, pair, rid, ts):
        payload = b"M%s%s%d%s" % (pair.receiver_key, _ID.pack(rid & 0xFFFFFFFF), ts, BODY)
        return _LEN.pack(len(payload)) + payload

    @staticmethod
    def ack(payload):
        return True if payload[:1] == b"A" else None

    @staticmethod
    def push_ts(payload):
        if payload[:1] != b"P":
            return None
        return int(payload[1:payload.find(b" ", 1)])


class Stats:
    """Counts and latencies of one point; only deliveries inside [start, stop) are measured."""

    def __init__(self, start, stop):
        self.start, self.stop = start, stop
        self.sent = self.acked = self.delivered = self.errors = 0
        self.measured = 0
        self.latencies = array("q")  # microseconds

    def deliver(self, ts, now):
        self.delivered += 1
        if self.start <= now < self.stop:
            self.measured += 1
            self.latencies.append((now - ts) // 1000)

    def result(self):
        return {"sent": self.sent, "acked": self.acked, "delivered": self.delivered,
                "errors": self.errors, "measured": self.measured,
                "latencies": self.latencies.tobytes()}


class Pair:
    """A sender and its friend the receiver, with the ids the codecs need."""

    def __init__(self, index):
        self.index = index
        self.sender = self.receiver = None
        self.sender_id = self.receiver_id = None
        self.receiver_key = _ID.pack(2 * index + 2)
        self.tokens = None
        self.run_tag = b""
        self.next_rid = 1
        self.inflight = self.credit = 0


async def _connect(host, port, tls):
    loop = asyncio.get_running_loop()
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # loopback benchmark; the tests check pinning
    _, conn = await loop.create_connection(Conn, host, port, ssl=context)
    return conn


class Worker:
    def __init__(self, index, nworkers):
        self.index = index
        self.nworkers = nworkers
        self.pairs = []
        self.codec = None
        self.stats = None
        self.running = False

    def my_pairs(self, n):
        return [p for p in self.pairs if p.index < n]

    async def setup(self, host, port, total_pairs, prefix):
        """Register and log in this worker's share of the pairs and make each pair friends."""
        self.pairs = [Pair(i) for i in range(self.index, total_pairs, self.nworkers)]
        await asyncio.gather(*(self._setup_pair(p, host, port, prefix) for p in self.pairs))
        return len(self.pairs)

    async def _setup_pair(self, pair, host, port, prefix):
        pair.sender, pair.receiver = await _connect(host, port, False), await _connect(host, port, False)
        names = (f"{prefix}s{pair.index}", f"{prefix}r{pair.index}")
        ids, tokens = [], []
        for conn, name in zip((pair.sender, pair.receiver), names):
            await conn.request("register", username=name, password="load driver password")
            reply = await conn.request("login", username=name, password="load driver password")
            ids.append(reply["user_id"])
            tokens.append(reply["token"])
        pair.sender_id, pair.receiver_id = ids
        pair.tokens = tokens
        await pair.sender.request("friend_request", user=pair.receiver_id)
        await pair.receiver.request("friend_accept", user=pair.sender_id)

    async def connect(self, host, port, tls, kind, total_pairs):
        """Open the pairs' connections: ``parley`` resumes the set-up sessions, ``relay`` says hello."""
        if kind == "relay":
            self.pairs = [Pair(i) for i in range(self.index, total_pairs, self.nworkers)]
        self.codec = RelayCodec() if kind == "relay" else ParleyCodec()
        for pair in self.pairs:
            if pair.sender is not None:
                continue
            pair.sender, pair.receiver = await _connect(host, port, tls), await _connect(host, port, tls)
            if kind == "relay":
                pair.sender.write_frame(b"H" + _ID.pack(2 * pair.index + 1))
                pair.receiver.write_frame(b"H" + pair.receiver_key)
            else:
                await pair.sender.request("resume", token=pair.tokens[0])
                await pair.receiver.request("resume", token=pair.tokens[1])
        await asyncio.sleep(0.2)  # let hellos and presence pushes settle
        return len(self.pairs)

    async def close(self):
        for pair in self.pairs:
            for conn in (pair.sender, pair.receiver):
                if conn is not None:
                    conn.transport.close()
                    await asyncio.wait_for(conn.lost, 10)
            pair.sender = pair.receiver = None
        return True

    def _arm(self, pairs, start, stop, tag):
        stats = self.stats = Stats(start, stop)
        codec = self.codec
        for pair in pairs:
            pair.run_tag = tag
            pair.inflight = pair.credit = 0
            pair.sender.on_frame = self._sender_frame(pair, stats, codec)
            pair.receiver.on_frame = self._receiver_frame(stats, codec)
        return stats

    def _sender_frame(self, pair, stats, codec):
        ack = codec.ack

        def on_frame(payload, now):
            ok = ack(payload)
            if ok is None:
                return
            stats.acked += 1
            pair.inflight -= 1
            if not ok:
                stats.errors += 1
                if stats.errors == 1:
                    print(f"worker {self.index}: error reply {payload[:200]!r}", flush=True)
            if self.running:
                pair.credit += 1
        return on_frame

    @staticmethod
    def _receiver_frame(stats, codec):
        push_ts = codec.push_ts

        def on_frame(payload, now):
            ts = push_ts(payload)
            if ts is not None:
                stats.deliver(ts, now)
        return on_frame

    def _send(self, pair, stamps):
        """Write one send per stamp (the time it counts from), all in one write."""
        codec = self.codec
        rid = pair.next_rid
        pair.next_rid += len(stamps)
        pair.sender.transport.write(b"".join([codec.send(pair, rid + i, stamp)
                                             for i, stamp in enumerate(stamps)]))
        pair.inflight += len(stamps)
        self.stats.sent += len(stamps)

    async def closed(self, npairs, window, t0, warmup, duration, tag):
        """Each sender keeps ``window`` sends in flight; a fresh send goes out per ack."""
        pairs = self.my_pairs(npairs)
        stats = self._arm(pairs, t0 + warmup, t0 + warmup + duration, tag)
        for pair in pairs:
            pair.sender.after = self._refill(pair)
        await _sleep_until(t0)
        self.running = True
        for pair in pairs:
            self._send(pair, [time.monotonic_ns()] * window)
        await _sleep_until(t0 + warmup + duration)
        self.running = False
        return await self._drain(pairs, stats)

    def _refill(self, pair):
        def after():
            if pair.credit:
                n, pair.credit = pair.credit, 0
                self._send(pair, [time.monotonic_ns()] * n)
        return after

    async def open(self, npairs, rate, t0, warmup, duration, tag):
        """The whole load sends on a fixed schedule: message ``k`` is due at ``t0 + k / rate``
        and goes from sender ``k % npairs``, stamped with that time, so a slow server shows up
        as latency. Each worker walks the one schedule and sends the messages of its own
        senders that are due (the cost is per message, not per sender per tick)."""
        pairs = self.my_pairs(npairs)
        stats = self._arm(pairs, t0 + warmup, t0 + warmup + duration, tag)
        gap = 1e9 / rate  # ns between two messages of the whole load
        mine = {pair.index: pair for pair in pairs}
        for pair in pairs:
            pair.sender.after = None
        stop = t0 + warmup + duration
        await _sleep_until(t0)
        k = 0  # the next message of the schedule
        while True:
            now = time.monotonic_ns()
            if now >= stop:
                break
            due = int((now - t0) / gap) + 1  # messages before this one are due by now
            stamps = {}
            for i in range(k, due):
                pair = mine.get(i % npairs)
                if pair is not None:
                    stamps.setdefault(pair, []).append(t0 + int(i * gap))
            k = max(k, due)
            for pair, times in stamps.items():
                self._send(pair, times)
            await asyncio.sleep(TICK)
        return await self._drain(pairs, stats)

    async def _drain(self, pairs, stats, limit=30.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if stats.acked >= stats.sent and stats.delivered + stats.errors >= stats.sent:
                break
            await asyncio.sleep(0.01)
        result = stats.result()
        result["drained"] = stats.acked >= stats.sent and stats.delivered + stats.errors >= stats.sent
        return result


async def _sleep_until(t_ns):
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def main(pipe, index, nworkers):
    """The worker's loop: one command at a time from the parent, its result sent back."""
    # uvloop runs the event loop in C: it halves the driver's CPU time per message against the
    # bare relay (bench/README.md), which leaves more of this machine to the server measured.
    loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(index, nworkers)
    while True:
        command = pipe.recv()
        if command is None:
            break
        name, args = command
        try:
            result = loop.run_until_complete(getattr(worker, name)(*args))
        except Exception as e:  # reported to the parent, which stops the run
            result = {"failed": f"{type(e).__name__}: {e}"}
        pipe.send(result)
    loop.close()
