"""The thin Twisted adapter: a multicast ``DatagramProtocol`` that feeds a ``LanCore``.

``LanChat`` is what the CLI and the desktop app use: build it, ``start()``, ``send(text)``,
``subscribe(callback)`` for events, ``stop()``. Everything but the socket is in ``core``.
"""
import random
import socket
import sys

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from imclient.lan.core import Config, LanCore
from imclient.lan.crypto import Box, derive_key

DEFAULT_GROUP = "239.255.42.99"
DEFAULT_PORT = 5802
RECEIVE_BUFFER = 1 << 20
# <linux/in.h> IP_MULTICAST_ALL, which the socket module does not export.
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL",
                            49 if sys.platform.startswith("linux") else None)


class _MulticastProtocol(DatagramProtocol):
    """Hands every datagram to the core; writes the core's datagrams to the group."""

    _log = Logger()

    def __init__(self, core, group, port, drop_rate, drop_random):
        self._core = core
        self._address = (group, port)
        self._drop_rate = drop_rate
        self._drop_random = drop_random

    def datagramReceived(self, data, addr):
        self._core.receive(data)

    def write(self, data):
        if self.transport is None:
            return
        if self._drop_rate and self._drop_random.random() < self._drop_rate:
            self._core.stats["dropped_on_purpose"] += 1
            return
        try:
            self.transport.write(data, self._address)
        except OSError as e:
            # The reliability layer re-sends; a full socket buffer is just loss.
            self._core.stats["send_failed"] += 1
            self._log.debug("LAN datagram not sent: {error}", error=e)


class LanChat:
    """One member of a LAN chat group on ``group``:``port``.

    ``interface`` is the local address to join the group on and send from ('' lets the
    kernel choose; '127.0.0.1' keeps the traffic on this machine). ``passphrase`` seals every
    datagram. ``drop_rate`` drops that fraction of our outgoing datagrams, for tests and benches.
    """

    def __init__(self, reactor, nickname, group=DEFAULT_GROUP, port=DEFAULT_PORT,
                 passphrase=None, *, interface="", ttl=1, rng=None, config=Config(),
                 drop_rate=0.0):
        rng = rng if rng is not None else random.SystemRandom()
        box = Box(derive_key(passphrase), rng) if passphrase is not None else None
        self._reactor = reactor
        self._group = group
        self._port_number = port
        self._interface = interface
        self._ttl = ttl
        self._port = None
        self.core = LanCore(nickname, reactor, self._write, rng, box, config)
        self._protocol = _MulticastProtocol(self.core, group, port, drop_rate, rng)

    @property
    def id(self):
        return self.core.id.hex()

    @property
    def members(self):
        return self.core.members

    @property
    def stats(self):
        return self.core.stats

    def subscribe(self, callback):
        return self.core.subscribe(callback)

    def on(self, what, callback):
        return self.core.on(what, callback)

    def send(self, text):
        return self.core.send(text)

    @defer.inlineCallbacks
    def start(self):
        """Listen, join the group and announce ourselves; fires when we are in.

        If joining fails the socket is closed again and the Deferred fails with the error.
        """
        self._port = self._reactor.listenMulticast(
            self._port_number, self._protocol, listenMultiple=True)
        try:
            yield self._join()
        except BaseException:
            port, self._port = self._port, None
            yield port.stopListening()
            raise
        self.core.start()

    @defer.inlineCallbacks
    def _join(self):
        # A burst from a whole group overflows the default buffer (~200 KB on Linux); what
        # overflows is loss that costs re-sends. The kernel caps this at net.core.rmem_max.
        self._port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if _IP_MULTICAST_ALL is not None:
            # Linux otherwise hands us every group any socket on the host joined on our port.
            self._port.socket.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        self._port.setTTL(self._ttl)
        self._port.setLoopbackMode(True)
        if self._interface:
            yield self._port.setOutgoingInterface(self._interface)
        yield self._port.joinGroup(self._group, self._interface or "0.0.0.0")

    def stop(self):
        """Say bye and close the socket; fires when it is closed."""
        self.core.stop()
        port, self._port = self._port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    def _write(self, data):
        self._protocol.write(data)
