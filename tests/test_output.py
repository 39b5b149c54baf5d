"""Coalesced output (imserver/output.py): frames held while corked, one send per connection,
order kept, and the direct send falling back to the transport's buffer on real TCP sockets."""
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.testing import StringTransport

from imserver import wire
from imserver.output import Coalescer, send_now
from imserver.protocol import ImProtocol
from imserver.store.commit import GroupCommitter
from tests.test_commit import FakeDB, FakeTxn, Reactor
from tests.test_protocol import FakeServer, make_ops


class Conn:
    def __init__(self):
        self.written = []

    def write_held(self, chunks):
        self.written.append(list(chunks))


def test_frames_are_held_while_corked_and_written_once_per_connection_in_order():
    out, a, b = Coalescer(), Conn(), Conn()
    assert not out.hold(a, b"early")  # not corked: the caller writes it itself
    with out.corked_output():
        assert out.corked
        for conn, data in ((a, b"1"), (b, b"x"), (a, b"2"), (a, b"3"), (b, b"y")):
            assert out.hold(conn, data)
        assert a.written == b.written == []
    assert not out.corked
    assert a.written == [[b"1", b"2", b"3"]]
    assert b.written == [[b"x", b"y"]]


def test_nested_cork_writes_only_when_the_outer_block_ends():
    out, a = Coalescer(), Conn()
    with out.corked_output():
        with out.corked_output():
            out.hold(a, b"1")
        assert a.written == []
        out.hold(a, b"2")
    assert a.written == [[b"1", b"2"]]


def test_release_writes_one_connection_at_once_and_only_once():
    out, a, b = Coalescer(), Conn(), Conn()
    with out.corked_output():
        out.hold(a, b"1")
        out.hold(b, b"x")
        out.release(a)
        assert a.written == [[b"1"]]
        out.release(a)  # nothing more held
        out.hold(a, b"2")
    assert a.written == [[b"1"], [b"2"]]
    assert b.written == [[b"x"]]


def test_cork_is_lifted_when_the_block_raises():
    out, a = Coalescer(), Conn()
    try:
        with out.corked_output():
            out.hold(a, b"1")
            raise ValueError("a result handler failed")
    except ValueError:
        pass
    assert not out.corked and a.written == [[b"1"]]


def test_a_connection_that_fails_to_write_does_not_hold_back_the_others():
    class Broken(Conn):
        def write_held(self, chunks):
            raise OSError("gone")

    out, a, broken, b = Coalescer(), Conn(), Broken(), Conn()
    with out.corked_output():
        for conn in (a, broken, b):
            out.hold(conn, b"x")
    assert a.written == b.written == [[b"x"]]
    assert not out.corked


def _connect():
    server = FakeServer(make_ops())
    proto = ImProtocol(server)
    transport = StringTransport()
    proto.makeConnection(transport)
    return server, proto, transport


def test_protocol_holds_frames_while_corked_and_writes_them_together():
    server, proto, transport = _connect()
    writes = []
    transport.write = lambda data, real=transport.write: (writes.append(data), real(data))
    with server.output.corked_output():
        proto.write_frame(wire.frame(b'{"op":"a"}'))
        proto.write_frame(wire.frame(b'{"op":"b"}'))
        assert transport.value() == b""
    assert writes == [wire.frame(b'{"op":"a"}') + wire.frame(b'{"op":"b"}')]


def test_frames_held_for_a_connection_leave_before_it_closes():
    server, proto, transport = _connect()
    with server.output.corked_output():
        proto.write_frame(wire.frame(b'{"op":"bye"}'))
        proto.close()
        assert transport.value() == wire.frame(b'{"op":"bye"}')
        assert transport.disconnecting


def test_a_batch_is_answered_inside_the_delivery_block():
    reactor_, db = Reactor(), FakeDB()
    db.dialect = FakeTxn.dialect
    out, conn = Coalescer(), Conn()
    writer = GroupCommitter(db, reactor_, concurrency=1, delivery=out.corked_output)
    writer.register("w", lambda txn, positions, jobs: [positions.take() for _ in jobs])
    seen = []

    def on_result(pos):
        seen.append((pos, out.corked))
        out.hold(conn, b"%d" % pos)

    for i in range(3):
        writer.enqueue("w", i, on_result)
    reactor_.advance(0)
    db.run_now(0)
    assert seen == [(1, True), (2, True), (3, True)]
    assert conn.written == [[b"1", b"2", b"3"]]


# send_now on real loopback TCP connections

class Collect(protocol.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.waiting = []

    def dataReceived(self, data):
        self.data += data
        for n, d in list(self.waiting):
            if len(self.data) >= n:
                self.waiting.remove((n, d))
                d.callback(bytes(self.data))

    def until(self, n):
        d = defer.Deferred()
        self.waiting.append((n, d))
        self.dataReceived(b"")
        return d


@defer.inlineCallbacks
def _pair():
    accepted = defer.Deferred()

    class Server(protocol.Protocol):
        def connectionMade(self):
            accepted.callback(self.transport)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    client = Collect()
    yield protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port.getHost().port)
    transport = yield accepted
    return port, transport, client


@pytest_twisted.inlineCallbacks
def test_send_now_sends_at_once_when_nothing_is_buffered(tcp_pair):
    transport, client = tcp_pair
    send_now(transport, b"hello")
    # Sent by the call itself: nothing was left to the reactor's write loop.
    assert not transport.dataBuffer and not transport._tempDataBuffer
    assert (yield client.until(5)) == b"hello"


@pytest_twisted.inlineCallbacks
def test_send_now_queues_behind_buffered_output_so_order_is_kept(tcp_pair):
    transport, client = tcp_pair
    transport.write(b"first,")  # buffered until the reactor's next turn
    send_now(transport, b"second")
    assert (yield client.until(12)) == b"first,second"


@pytest_twisted.inlineCallbacks
def test_send_now_hands_what_the_socket_refuses_to_the_transport(tcp_pair):
    transport, client = tcp_pair
    client.transport.pauseProducing()  # the peer stops reading: the socket buffers fill up
    size = 32 * 1024 * 1024
    data = b"".join(struct.pack(">I", i) for i in range(size // 4))
    send_now(transport, data)
    assert transport._tempDataLen > 0  # the part the kernel did not take waits in Twisted
    client.transport.resumeProducing()
    assert (yield client.until(size)) == data


# send_now on real loopback TLS connections (a real handshake, then application data)

@defer.inlineCallbacks
def _tls_pair(tmp_path):
    from twisted.internet import ssl

    from imserver import tls

    cert_path, key_path, _ = tls.ensure(str(tmp_path))
    with open(key_path, "rb") as k, open(cert_path, "rb") as c:
        cert = ssl.PrivateCertificate.loadPEM(k.read() + c.read())
    accepted = defer.Deferred()

    class Server(protocol.Protocol):
        def dataReceived(self, data):  # the client's first bytes: the handshake is done
            if not accepted.called:
                accepted.callback(self.transport)

    port = reactor.listenSSL(0, protocol.Factory.forProtocol(Server), cert.options(),
                             interface="127.0.0.1")
    client = Collect()
    yield protocol.ClientCreator(reactor, lambda: client).connectSSL(
        "127.0.0.1", port.getHost().port, ssl.CertificateOptions(verify=False))
    client.transport.write(b"hi")
    transport = yield accepted
    # ``accepted`` fires inside the server's dataReceived, before Twisted writes out what
    # OpenSSL produced meanwhile (TLS 1.3 session tickets): let the reactor send that, so
    # that each test starts with nothing queued.
    for _ in range(500):
        yield task.deferLater(reactor, 0.001, lambda: None)
        if not transport.transport.dataBuffer and not transport.transport._tempDataBuffer:
            break
    return port, transport, client


def _closed_after(pair):
    """A pair's ``(transport, client)`` for the test; afterwards the connection and the port close."""
    port, transport, client = pytest_twisted.blockon(pair)
    yield transport, client
    transport.loseConnection()
    pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def tcp_pair():
    yield from _closed_after(_pair())


@pytest.fixture
def tls_pair(tmp_path):
    yield from _closed_after(_tls_pair(tmp_path))


@pytest_twisted.inlineCallbacks
def test_send_now_on_tls_encrypts_and_sends_at_once(tls_pair):
    transport, client = tls_pair
    send_now(transport, b"hello")
    # No flush left for the next reactor turn, nothing left in the socket's buffer.
    assert transport._aggregator._scheduled is None
    assert not transport.transport.dataBuffer and not transport.transport._tempDataBuffer
    assert (yield client.until(5)) == b"hello"


@pytest_twisted.inlineCallbacks
def test_send_now_on_tls_keeps_order_with_ordinary_writes_around_it(tls_pair):
    transport, client = tls_pair
    transport.write(b"first,")  # held by Twisted's TLS transport until the next turn
    send_now(transport, b"second,")
    transport.write(b"third")
    assert (yield client.until(18)) == b"first,second,third"


@pytest_twisted.inlineCallbacks
def test_send_now_on_tls_delivers_many_records_to_a_paused_peer(tls_pair):
    transport, client = tls_pair
    client.transport.pauseProducing()  # the socket buffers fill up: the rest waits in Twisted
    size = 8 * 1024 * 1024
    data = b"".join(struct.pack(">I", i) for i in range(size // 4))
    send_now(transport, data)
    assert transport.transport._tempDataLen > 0
    client.transport.resumeProducing()
    assert (yield client.until(size)) == data


@pytest_twisted.inlineCallbacks
def test_send_now_on_a_closing_tls_connection_leaves_it_to_the_transport(tls_pair):
    transport, client = tls_pair
    lost = defer.Deferred()
    client.connectionLost = lambda reason: lost.callback(None)
    transport.write(b"last words")
    transport.loseConnection()
    send_now(transport, b" and more")  # after loseConnection: dropped, as write drops it
    yield lost
    assert bytes(client.data) == b"last words"


def test_the_private_state_send_now_reads_exists(tcp_pair, tls_pair):
    """output.py reads Twisted's private transport state (TCP_STATE, TLS_STATE, and why there):
    this fails, naming the attribute, on a Twisted release that renames one."""
    from imserver.output import TCP_STATE, TLS_STATE

    tcp_transport, _ = tcp_pair
    tls_transport, _ = tls_pair
    missing = [f"tcp.Connection.{a}" for a in TCP_STATE if not hasattr(tcp_transport, a)]
    missing += [f"TLSMemoryBIOProtocol.{a}" for a in TLS_STATE if not hasattr(tls_transport, a)]
    missing += [f"(TLS's socket) tcp.Connection.{a}" for a in TCP_STATE
                if not hasattr(tls_transport.transport, a)]
    assert missing == []
    # And they mean what send_now takes them to mean on an open, idle connection.
    assert not tcp_transport._writeDisconnected and not tcp_transport.dataBuffer
    assert tls_transport._handshakeDone and not tls_transport._lostTLSConnection
    assert not tls_transport._appSendBuffer and not tls_transport._aborted
