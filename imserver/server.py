"""What every connection shares: config, store, online registry, portal, writer, clock, op table."""
from twisted.cred.portal import Portal
from twisted.logger import Logger

from imserver import auth
from imserver.handlers import install_hooks, ops as default_ops
from imserver.output import Coalescer
from imserver.registry import LocalRegistry
from imserver.store import messages
from imserver.store.commit import GroupCommitter
from imserver.transfer.engine import FileEngine


class Server:
    _log = Logger()

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
        # Output is corked while a batch's results are handed out, so each connection gets
        # its acks and pushes from one batch in one send.
        self.output = Coalescer()
        self.writer = GroupCommitter(store.db, reactor, delivery=self.output.corked_output)
        self.writer.register("send", messages.send_batch, reads_first=True)
        self.connections = set()
        self.login_hooks = []  # fn(ctx, user) after a login or resume succeeds
        install_hooks(self)
        self.files = FileEngine(config, store, reactor, self.clock, self.notifier)

    def now_ms(self):
        return auth.now_ms(self.clock)

    def read(self, desc, fn, *args):
        """Run a read-only transaction function ``fn(txn, *args)`` on the pool."""
        return self.store.db.run(desc, fn, *args)

    def write(self, fn, *args, exclusive=False):
        """Run a stream-writing function ``fn(txn, positions, *args)`` in the next group commit
        (``exclusive`` for one that changes friendships: see ``GroupCommitter.call``)."""
        return self.writer.call(fn, *args, exclusive=exclusive)

    def publish(self, events, exclude=None):
        """Push committed stream events, ``[(user_id, event)]``, to their users' devices."""
        for user_id, event in events:
            push = {"op": event["type"]}
            push.update(event)
            del push["type"]
            self.notifier.push(user_id, push, exclude=exclude)

    def binary_received(self, ctx, payload):
        self.files.binary_received(ctx.conn, payload)

    def connection_lost(self, ctx):
        pass

    def close_connections(self):
        for conn in list(self.connections):
            conn.close()
