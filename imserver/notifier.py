"""Fan-out: telling users' devices about new stream entries and ephemeral events.

Handlers never call a notifier directly; their effects reach it through ``Announcer``.
``LocalNotifier`` delivers to the connections of this process. Several processes on one
database put a networked implementation behind the same interface (Redis pub/sub: each process
publishes what it announces and delivers what it hears to its own connections); losing such a
notification costs latency, never data, because ``sync`` reads the database.
"""
from zope.interface import Interface, implementer

from imserver import wire


class INotifier(Interface):
    def new_entries(user_ids, push, exclude=None):
        """``user_ids`` have a new stream entry at ``push["pos"]``; ``push`` is its wire form.
        Every device of theirs except ``exclude`` should hear it."""

    def ephemeral(user_ids, payload, exclude=None):
        """Deliver ``payload`` (not stored) to every device of each user except ``exclude``."""

    def publish(topic, payload, exclude=None):
        """Deliver ``payload`` to every connection subscribed to ``topic`` except ``exclude``."""

    def end_session(user_id, session_id, payload):
        """Tell the connections of one session ``payload``, then close them."""


@implementer(INotifier)
class LocalNotifier:
    """Delivers to this process's connections; each payload is encoded once per fan-out."""

    def __init__(self, connections):
        self.connections = connections
        # Fan-out is the connections' own write: no extra call on the busiest path.
        self.new_entries = self.ephemeral = connections.write_users

    def publish(self, topic, payload, exclude=None):
        return self.connections.write_topic(topic, wire.encode(payload), exclude)

    def end_session(self, user_id, session_id, payload):
        self.connections.end_session(user_id, session_id, wire.encode(payload))
