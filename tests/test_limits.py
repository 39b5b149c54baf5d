"""Limits over real loopback sockets: huge declared frames, and clients that stop reading."""
import json
import resource
import socket
import struct

import pytest_twisted
from twisted.internet import defer, reactor, task

from imserver import wire


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest_twisted.ensureDeferred
async def test_three_gigabyte_declared_length_is_refused_without_buffering(running):
    before = rss_mb()
    s = socket.create_connection(("127.0.0.1", running.port))
    s.setblocking(False)
    s.send(struct.pack(">I", 3 * 1024 ** 3))
    sent = 0
    chunk = b"{" * 65536
    for _ in range(40):  # offer up to 2.5 MiB more; the server must not keep any of it
        try:
            sent += s.send(chunk)
        except (BlockingIOError, ConnectionError):
            pass
        await task.deferLater(reactor, 0.005, lambda: None)
    data = b""
    for _ in range(200):
        try:
            part = s.recv(65536)
        except BlockingIOError:
            await task.deferLater(reactor, 0.01, lambda: None)
            continue
        except ConnectionError:
            break
        if not part:
            break  # closed by the server
        data += part
    s.close()
    (n,) = struct.unpack(">I", data[:4])
    reply = json.loads(data[4:4 + n])
    assert reply["ok"] is False and reply["error"]["code"] == "too_large"
    assert len(data) == 4 + n  # nothing after the error frame: closed
    assert rss_mb() - before < 64
    # The server is still fine for everyone else.
    c = await running.client()
    assert (await c.request("ping"))["ok"]


@pytest_twisted.ensureDeferred
async def test_slow_reader_is_dropped_while_others_are_served(running):
    running.server.config.max_pending_output = 256 * 1024
    for conn in list(running.server.connections.all):
        conn.guard.limit = 256 * 1024
    slow = await running.client()
    fast = await running.client()
    server_side = [p for p in running.server.connections.all if p.peer.port == slow.transport.getHost().port]
    assert len(server_side) == 1
    server_conn = server_side[0]
    server_conn.guard.limit = 256 * 1024
    # Small kernel buffers so the server's own buffer fills quickly; then stop reading.
    server_conn.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.transport.pauseProducing()
    ping = wire.encode({"op": "ping", "id": 0})
    slow.transport.write(ping * 60000)  # ~2.6 MB of replies that will never be read

    for _ in range(300):
        assert (await fast.request("ping"))["ok"]  # served throughout
        if not server_conn.connected:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert not server_conn.connected, "the slow reader was not disconnected"
    assert server_conn.guard.pending > 256 * 1024
    assert (await fast.request("ping"))["ok"]
    slow.transport.resumeProducing()
    await slow.lost
