"""A bare Twisted relay: the baseline the messaging benchmark compares the server with.

An ``Int32StringReceiver`` per connection, no JSON and no storage. Binary frames:

* ``H`` + user id (4 bytes, big-endian): this connection is that user.
* ``M`` + recipient id (4) + request id (4) + body: relay ``P`` + body to the recipient's
  connection and answer ``A`` + request id to the sender (the server's push and ack, without
  the work in between).

    python bench/relay.py PORT [TLS_PORT CERT KEY]
"""
import struct
import sys

from twisted.internet import reactor, ssl
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver

_ID = struct.Struct(">I")


class Relay(Int32StringReceiver):
    MAX_LENGTH = 1024 * 1024

    def __init__(self, users):
        self.users = users
        self.user = None

    def stringReceived(self, payload):
        kind = payload[:1]
        if kind == b"M":
            peer = self.users.get(payload[1:5])
            if peer is not None:
                peer.sendString(b"P" + payload[9:])
            self.sendString(b"A" + payload[5:9])
        elif kind == b"H":
            self.user = payload[1:5]
            self.users[self.user] = self

    def connectionLost(self, reason):
        if self.user is not None and self.users.get(self.user) is self:
            del self.users[self.user]


class RelayFactory(Factory):
    def __init__(self):
        self.users = {}

    def buildProtocol(self, addr):
        return Relay(self.users)


def main(argv):
    factory = RelayFactory()
    reactor.listenTCP(int(argv[1]), factory, interface="127.0.0.1")
    if len(argv) > 2:
        with open(argv[4], "rb") as k, open(argv[3], "rb") as c:
            cert = ssl.PrivateCertificate.loadPEM(k.read() + c.read())
        reactor.listenSSL(int(argv[2]), factory, cert.options(), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
