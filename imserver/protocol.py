"""One client connection: frames in, requests dispatched, replies and pushes out.

``ImProtocol`` turns length-prefixed frames into decoded requests and reply dicts into frames; it
knows no SQL and no op's rules. It guards its output: when the peer stops reading and pending
output passes the configured limit, the connection is dropped so no one else waits on it.
"""
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from zope.interface import implementer

from imserver import wire
from imserver.dispatch import dispatch
from imserver.errors import ImError
from imserver.output import send_now


class Context:
    """What a handler sees of its connection: the server's services, the logged-in user, the
    peer's address, and logging the connection in and out. Handlers never write to the connection:
    they return effects, which ``announce`` hands to the server's announcer for it.

    ``conn`` is the connection as an opaque handle for the file engine, which streams a
    download's bytes to it."""

    __slots__ = ("server", "conn")

    def __init__(self, server, conn):
        self.server = server
        self.conn = conn

    @property
    def user(self):
        return self.conn.user

    @property
    def peer(self):
        return self.conn.peer

    @property
    def peer_host(self):
        return getattr(self.conn.peer, "host", "?")

    @property
    def connected(self):
        return bool(self.conn.connected)

    def announce(self, effects):
        self.server.announcer.announce(effects, self.conn)

    def log_in(self, user, logout):
        """This connection is now ``user``'s session; ``logout()`` ends it (the realm's)."""
        self.conn.set_session(user, logout)

    def log_out(self):
        self.conn.clear_session()


@implementer(IPushProducer)
class OutputGuard:
    """Registered with the transport to learn when the peer stops reading.

    While the transport is paused (its buffer is full), every byte we write is counted; past the
    limit the connection is aborted. Producers of bulk output (downloads) register here too, and
    are paused and resumed with the transport.
    """

    def __init__(self, limit):
        self.limit = limit
        self.paused = False
        self.pending = 0
        self.producers = []

    def pauseProducing(self):
        self.paused = True
        for p in list(self.producers):
            p.pauseProducing()

    def resumeProducing(self):
        self.paused = False
        self.pending = 0
        for p in list(self.producers):
            p.resumeProducing()

    def stopProducing(self):
        for p in list(self.producers):
            p.stopProducing()
        self.producers.clear()

    def wrote(self, nbytes):
        """Count a write; False once the peer has left more than ``limit`` bytes unread."""
        if self.paused:
            self.pending += nbytes
        return self.pending <= self.limit


class ImProtocol(Int32StringReceiver):
    _log = Logger()
    #: Requests one connection may have in flight; past it we stop reading from that client
    #: (its requests wait in TCP buffers), so one client cannot queue unbounded work.
    max_inflight = 256

    def __init__(self, server):
        self.server = server
        self.MAX_LENGTH = server.config.max_frame
        self.user = None
        self._logout = None
        self._closing = False
        self._inflight = 0
        self._pause_reasons = set()
        self._reader = wire.FrameReader()
        self.guard = OutputGuard(server.config.max_pending_output)
        self.ctx = Context(server, self)

    def connectionMade(self):
        self.transport.registerProducer(self.guard, True)
        if hasattr(self.transport, "bufferSize"):
            # Read (and buffer output) up to 256 KiB a turn, not 64 KiB: a file chunk frame plus
            # its header then costs a quarter of a reactor turn instead of two.
            self.transport.bufferSize = 256 * 1024
        self.peer = self.transport.getPeer()
        self.server.connections.opened(self)

    def dataReceived(self, data):
        # Replaces Int32StringReceiver's parser (its sendString, pauseProducing and
        # resumeProducing stay): binary frames reach the server as memoryviews of the read.
        if self._closing:
            return
        reader = self._reader
        reader.feed(data)
        while not self.paused:
            try:
                payload = reader.next(self.MAX_LENGTH)
            except wire.FrameTooLarge as e:
                self.lengthLimitExceeded(e.length)
                return
            if payload is None:
                return
            self.stringReceived(payload)

    def stringReceived(self, payload):
        """One payload (bytes or a memoryview): binary frames go to the server as they are."""
        if wire.is_binary(payload):
            try:
                self.server.binary_received(self.ctx, payload)
            except ImError as e:
                self.send_error(None, e)
            return
        try:
            request = wire.decode(payload)
        except wire.WireError as e:
            self.send_error(None, ImError("bad_request", str(e)))
            return
        self._inflight += 1
        if self._inflight == self.max_inflight:
            self.pause_reading("requests")
        dispatch(self.server.ops, self.ctx, request, self._replied)

    def _replied(self, reply):
        self._inflight -= 1
        self.send(reply)
        if self._inflight == self.max_inflight // 2:
            self.resume_reading("requests")

    def pause_reading(self, reason):
        """Stop reading from this client until every reason given here has been resumed."""
        if not self._pause_reasons and self.connected:
            self.pauseProducing()
        self._pause_reasons.add(reason)

    def resume_reading(self, reason):
        if reason in self._pause_reasons:
            self._pause_reasons.discard(reason)
            if not self._pause_reasons and self.connected:
                self.resumeProducing()

    def lengthLimitExceeded(self, length):
        # Refused from the 4-byte header alone: nothing of the payload is ever buffered.
        self._closing = True
        self._log.info("frame of {length} bytes from {peer} refused; closing", length=length,
                       peer=self.peer)
        self.send_error(None, ImError("too_large",
                                      f"frame of {length} bytes exceeds the limit of {self.MAX_LENGTH}"))
        self.close()

    def send(self, message):
        self.write_frame(wire.encode(message))

    def send_error(self, rid, error):
        self.send({"re": rid, "ok": False, "error": error.to_wire()})

    def write_frame(self, data):
        """Write one already-encoded frame (pushes are encoded once for all recipients).

        While the server's output is corked (a batch's results are being handed out) the frame
        is held, and leaves with the others for this connection in one ``write_held``."""
        if self.transport is None or not self.connected:
            return
        if self.server.output.hold(self, data):
            return
        self.transport.write(data)
        self._check_guard(len(data))

    def write_held(self, chunks):
        """Write the frames held for this connection while output was corked, as one send."""
        if self.transport is None or not self.connected:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        send_now(self.transport, data)
        self._check_guard(len(data))

    def release_output(self):
        """Write out any frames held for this connection now, before writing around them."""
        self.server.output.release(self)

    def _check_guard(self, nbytes):
        if not self.guard.wrote(nbytes):
            self._log.warn("{peer} stopped reading ({pending} bytes pending); disconnecting",
                           peer=self.peer, pending=self.guard.pending)
            self.transport.abortConnection()

    def set_session(self, user, logout):
        self.user, self._logout = user, logout

    def clear_session(self):
        logout, self.user, self._logout = self._logout, None, None
        if logout is not None:
            logout()

    def close(self):
        if self.connected:
            self.release_output()  # frames written just before closing still leave
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.connected = 0
        self.server.connections.closed(self)
        self.guard.stopProducing()
        self.clear_session()


class ImFactory(Factory):
    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        p = ImProtocol(self.server)
        p.factory = self
        return p
