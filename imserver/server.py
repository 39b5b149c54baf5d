"""What every connection shares: config, store, online registry, portal, clock and the op table."""
from twisted.cred.portal import Portal

from imserver import auth
from imserver.errors import ImError
from imserver.handlers import ops as default_ops
from imserver.registry import LocalRegistry


class Server:
    def __init__(self, config, store, reactor, notifier=None, hasher=None, ops=None):
        self.config = config
        self.store = store
        self.reactor = reactor
        self.clock = reactor
        self.notifier = notifier or LocalRegistry()
        self.hasher = hasher or auth.PasswordHasher(reactor)
        self.ops = ops or default_ops
        self.throttle = auth.LoginThrottle(reactor)
        self.realm = auth.Realm(store.accounts, self.notifier, reactor,
                                config.max_connections_per_user)
        self.portal = Portal(self.realm, [auth.PasswordChecker(store.accounts, self.hasher),
                                          auth.TokenChecker(store.accounts, reactor)])
        self.connections = set()

    def now_ms(self):
        return auth.now_ms(self.clock)

    def binary_received(self, ctx, payload):
        ctx.conn.send_error(None, ImError("bad_request", "unexpected binary frame"))

    def connection_lost(self, ctx):
        pass

    def close_connections(self):
        for conn in list(self.connections):
            conn.close()
