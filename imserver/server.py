"""What every connection shares, built from a list of domains: config, store, the three announce
parts (local connections, notifier, presence), portal, group committer, clock and op table."""
from twisted.cred.portal import Portal
from twisted.logger import Logger

from imserver import auth
from imserver.announce import Announcer
from imserver.clock import now_ms
from imserver.connections import Connections
from imserver.dispatch import OpTable
from imserver.notifier import LocalNotifier
from imserver.output import Coalescer
from imserver.presence import LocalPresence
from imserver.store.commit import GroupCommitter
from imserver.transfer.engine import FileEngine


class Server:
    """``domains`` (default ``imserver.domains.DEFAULT``) decide which ops, batch kinds, stream
    sources and login hooks exist. ``notifier`` and ``presence`` default to this process's own
    (``LocalNotifier``, ``LocalPresence``); a deployment of several processes passes networked
    ones."""

    _log = Logger()

    def __init__(self, config, store, reactor, domains=None, notifier=None, presence=None,
                 hasher=None):
        if domains is None:
            from imserver.domains import DEFAULT as domains
        self.config = config
        self.store = store
        self.reactor = reactor
        self.clock = reactor
        self.connections = Connections()
        self.notifier = notifier or LocalNotifier(self.connections)
        self.presence = presence or LocalPresence(self.connections)
        self.announcer = Announcer(self.notifier, self.connections)
        self.hasher = hasher or auth.PasswordHasher(reactor)
        self.throttle = auth.LoginThrottle(reactor)
        self.realm = auth.Realm(store.db, self.connections, self.presence, reactor,
                                config.max_connections_per_user)
        self.portal = Portal(self.realm, [auth.PasswordChecker(store.db, self.hasher),
                                          auth.TokenChecker(store.db, reactor)])
        # Output is corked while a batch's results are handed out, so each connection gets
        # its acks and pushes from one batch in one send.
        self.output = Coalescer()
        self.writer = GroupCommitter(store.db, reactor, delivery=self.output.corked_output)
        self.files = FileEngine(config, store, reactor, self.clock, self.announce)
        self.domains = list(domains)
        self.ops = OpTable()
        self.stream_sources = []
        self.login_hooks = []
        for domain in self.domains:
            self._add(domain)
        self.stream_sources = tuple(self.stream_sources)
        self.state = {}
        for domain in self.domains:
            for start in domain.starts:
                state = start(self)
                if state is not None:
                    self.state[domain.name] = state

    def _add(self, domain):
        self.ops.merge(domain.ops)
        for kind, batch in domain.batches.items():
            fn = batch.fn(self.config) if batch.configured else batch.fn
            self.writer.register(kind, fn, reads_first=batch.reads_first)
        self.stream_sources.extend(domain.sources)
        self.login_hooks.extend(domain.login_hooks)

    def now_ms(self):
        return now_ms(self.clock)

    def run(self, desc, fn, *args):
        """Run a transaction function ``fn(txn, *args)`` on the pool, outside the group commit:
        for writes that add nothing to any stream (accounts, profiles, sessions)."""
        return self.store.db.run(desc, fn, *args)

    def read(self, desc, fn, *args):
        """Run a read-only transaction function ``fn(txn, *args)`` on the pool."""
        return self.store.db.run(desc, fn, *args)

    def write(self, fn, *args, exclusive=False):
        """Run a stream-writing function ``fn(txn, positions, *args)`` in the next group commit
        (``exclusive`` for one that changes friendships: see ``GroupCommitter.call``)."""
        return self.writer.call(fn, *args, exclusive=exclusive)

    def announce(self, effects, origin=None):
        """Carry out ``effects`` (``imserver.effects``) for the connection ``origin``."""
        self.announcer.announce(effects, origin)

    def binary_received(self, ctx, payload):
        """A binary frame (file data) from a connection; raises ImError to refuse it."""
        self.files.binary_received(ctx.conn, ctx.user, payload)

    def close_connections(self):
        self.connections.close_all()
