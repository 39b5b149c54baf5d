"""What every connection shares: config, store, online registry, portal, clock and the op table."""
from twisted.cred.portal import Portal

from imserver import auth
from imserver.handlers import ops as default_ops
from imserver.registry import LocalRegistry
from imserver.transfer.engine import FileEngine


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
        self.files = FileEngine(config, store, reactor, self.clock, self.notifier)

    def now_ms(self):
        return auth.now_ms(self.clock)

    def binary_received(self, ctx, payload):
        self.files.binary_received(ctx.conn, payload)

    def connection_lost(self, ctx):
        pass

    def close_connections(self):
        for conn in list(self.connections):
            conn.close()
