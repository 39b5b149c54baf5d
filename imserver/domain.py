"""A domain: one area of the server's rules (friends, groups, files, ...) as one explicit object.

A ``Domain`` holds what its module declares: its ops, its batch kinds for the group committer,
its sources of stream events, its login hooks and its start-up function. Declaring them fills
only the domain object; nothing is registered anywhere until ``Server`` is built from a list of
domains (``imserver.domains.DEFAULT``), so a server runs exactly the domains it is given.
"""
from dataclasses import dataclass

from imserver.dispatch import OpTable


@dataclass(frozen=True)
class BatchKind:
    """``fn(txn, positions, jobs) -> [result or ImError per job]`` (see ``GroupCommitter``);
    with ``configured``, ``fn(config)`` returns that function."""
    fn: object
    reads_first: bool = False
    configured: bool = False


class Domain:
    def __init__(self, name):
        self.name = name
        self.ops = OpTable()
        self.batches = {}  # kind -> BatchKind
        self.sources = []  # fn(txn, user_id, since, limit) -> [(pos, event)]
        self.login_hooks = []  # async fn(server, user, peer, device) -> effects
        self.starts = []  # fn(server) -> the domain's state (``server.state[name]``), or None

    def __repr__(self):
        return f"<Domain {self.name}: {len(self.ops.ops)} ops>"

    def op(self, name, /, auth=True, answers=False, **fields):
        """Declare an op (a decorator; see ``OpTable.op``)."""
        return self.ops.op(name, auth=auth, answers=answers, **fields)

    def batch(self, kind, fn, reads_first=False, configured=False):
        self.batches[kind] = BatchKind(fn, reads_first, configured)

    def source(self, fn):
        """Declare a source of stream events (a decorator)."""
        self.sources.append(fn)
        return fn

    def on_login(self, fn):
        """Declare a login hook (a decorator): ``fn(server, user, peer, device)``, an
        ``async def`` or a plain function, runs after each login or resume; the effects it
        returns are announced for the connection that logged in (if it is still logged in as
        that user). A hook that fails is logged and does not undo the login."""
        self.login_hooks.append(fn)
        return fn

    def on_start(self, fn):
        """Declare a start-up function (a decorator): ``fn(server)`` runs once when a Server is
        built; what it returns is kept as ``server.state[domain.name]``."""
        self.starts.append(fn)
        return fn
