"""Coalesced output: what one batch of results writes to a connection leaves in one ``send``.

When a group-commit batch is answered, each of its messages writes an ack to its sender and a
push to its recipient. Twisted's transports buffer every ``write`` and send at the reactor's
next turn, but each connection with new output costs an ``epoll_ctl`` to watch for
writability, a wake-up, the ``send`` and another ``epoll_ctl`` to stop watching. Under load
those system calls, each of which also gives up the GIL, were a sixth of the reactor thread's
time (``py-spy``, ``bench/load.py`` open loop).

While a ``Coalescer`` is corked, connections hold their frames; when it is uncorked each
connection's frames are joined and written with ``send_now``, which sends at once when nothing
is queued before them; on a TLS connection it encrypts them at once and sends the records the
same way. Anything the socket does not take, and anything on a connection that is not in its
plain open state, goes through the transport's ``write`` as usual, so ordering, back-pressure
and producers are untouched.
"""
from contextlib import contextmanager

from OpenSSL import SSL
from twisted.internet import tcp
from twisted.logger import Logger
from twisted.protocols import tls

_log = Logger()
# Why private attributes: Twisted has no public way to ask "is anything queued before me?" or
# "is this TLS connection plainly open?", and the answer decides whether bytes may skip the
# queue without reordering. These are the attributes read, on Twisted 26.x; each is checked by
# tests/test_output.py on real connections (test_the_private_state_send_now_reads_exists), so
# a Twisted release that renames one fails that test instead of quietly reordering output.
# Where an attribute is missing at run time the code takes the transport's own write path.
TCP_STATE = ("_writeDisconnected", "dataBuffer", "_tempDataBuffer")
TLS_STATE = ("_tlsConnection", "_aggregator", "_lostTLSConnection", "_appSendBuffer",
             "_handshakeDone", "_aborted")
#: Plaintext per TLS record (the protocol's maximum); Twisted's TLS transport cuts writes so too.
_RECORD = 2 ** 14


def send_now(transport, data):
    """Write ``data`` to ``transport``, sending it at once if nothing is queued before it.

    A plain TCP connection whose output buffer is empty gets the bytes with one ``send``
    (``writeSomeData``, the method its own ``doWrite`` uses); whatever the socket does not take,
    and anything on any other transport, is handed to ``transport.write``. A TLS connection
    encrypts them now (see ``_encrypt_now``)."""
    if isinstance(transport, tls.TLSMemoryBIOProtocol):
        _encrypt_now(transport, data)
        return
    if (isinstance(transport, tcp.Connection) and transport.connected
            and not transport.disconnecting and not getattr(transport, "_writeDisconnected", True)
            and not getattr(transport, "dataBuffer", True)
            and not getattr(transport, "_tempDataBuffer", True)):
        sent = transport.writeSomeData(data)
        if not isinstance(sent, int):
            # The connection is gone: the transport's own write path notices and closes it.
            transport.write(data)
            return
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def _encrypt_now(transport, data):
    """Encrypt ``data`` on a TLS connection now and ``send_now`` the records to its socket.

    Twisted's TLS transport holds small writes until the next reactor turn (a ``callLater``
    per connection) and then hands the records to the socket's buffer, which costs an
    ``epoll_ctl`` pair and a wake-up per connection per batch: the cost the corked output
    removes for plain TCP. The frames are coalesced already, so they are encrypted at once.
    This reads the TLS transport's connection state, so it only runs while that is plain
    (handshake done, nothing of its own buffered, not closing); any other time, and for any
    part that OpenSSL does not take (it wants to read first), the transport's own ``write``
    does the work in its own way, after what was sent here."""
    conn = getattr(transport, "_tlsConnection", None)
    aggregator = getattr(transport, "_aggregator", None)
    if (conn is None or transport.disconnecting or transport.transport is None
            or getattr(transport, "_lostTLSConnection", True)
            or getattr(transport, "_appSendBuffer", True)
            or not getattr(transport, "_handshakeDone", False)
            or getattr(transport, "_aborted", True)):
        transport.write(data)
        return
    if aggregator is not None:
        aggregator.flush()  # anything written before, through the usual path, goes first
    records, sent = [], 0
    view = memoryview(data)
    try:
        while sent < len(data):
            sent += conn.send(view[sent:sent + _RECORD])
            _drain(conn, records)
    except SSL.Error:
        pass  # WantReadError or worse: the transport's own write retries and handles it
    if records:
        send_now(transport.transport, b"".join(records))
    if sent < len(data):
        tls.TLSMemoryBIOProtocol.write(transport, bytes(view[sent:]))


def _drain(conn, records):
    """Move what OpenSSL has written to its outgoing memory BIO into ``records``."""
    while True:
        try:
            chunk = conn.bio_read(2 * _RECORD)
        except SSL.WantReadError:
            return  # nothing (more) there
        records.append(chunk)
        if len(chunk) < 2 * _RECORD:
            return  # a short read emptied it: no need to be told so by an exception


class Coalescer:
    """Holds the frames written to connections while corked; writes them out when uncorked.

    A connection calls ``hold(conn, data)`` instead of writing; it returns False when not
    corked (the caller writes as usual). On uncorking, ``conn.write_held(chunks)`` is called
    once per connection, in the order the connections first wrote.
    """

    def __init__(self):
        self._held = None  # {conn: [frame, ...]} while corked

    @property
    def corked(self):
        return self._held is not None

    def hold(self, conn, data):
        held = self._held
        if held is None:
            return False
        chunks = held.get(conn)
        if chunks is None:
            held[conn] = [data]
        else:
            chunks.append(data)
        return True

    def release(self, conn):
        """Write out what ``conn`` holds now (before it closes, or writes around us)."""
        if self._held is not None:
            chunks = self._held.pop(conn, None)
            if chunks:
                conn.write_held(chunks)

    @contextmanager
    def corked_output(self):
        if self._held is not None:  # already corked: the outer block writes everything
            yield
            return
        self._held = {}
        try:
            yield
        finally:
            held, self._held = self._held, None
            for conn, chunks in held.items():
                try:
                    conn.write_held(chunks)
                except Exception:
                    # One connection's failure must not keep the others' frames back.
                    _log.failure("writing held output to {conn} failed", conn=conn)
