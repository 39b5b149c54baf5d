"""The live connections of this process: who is logged in on which connection, and topics.

This is the only place that knows connections. ``Connections`` maps each user to the
connections of their logged-in sessions (one per device), writes already-encoded frames to
them, keeps the topic subscriptions (the chat square's listeners), and tells observers when a
user's first device connects here or their last one leaves. It answers for this process only:
what other processes hold is the ``INotifier``'s and ``IPresence``'s business.
"""
from twisted.logger import Logger

from imserver import wire


class Connections:
    _log = Logger()

    def __init__(self):
        self.all = set()  # every open connection, logged in or not (closed at shutdown)
        self._users = {}  # user_id -> {connection: User}
        self._topics = {}  # topic -> {connection: None} (insertion-ordered)
        self._observers = []

    # Open connections.
    def opened(self, connection):
        self.all.add(connection)

    def closed(self, connection):
        self.all.discard(connection)

    def close_all(self):
        for connection in list(self.all):
            connection.close()

    # Logged-in sessions.
    def attach(self, user, connection):
        """A logged-in session of ``user`` is live on ``connection``."""
        devices = self._users.setdefault(user.user_id, {})
        first = not devices
        devices[connection] = user
        if first:
            self._notify(user.user_id, True)

    def detach(self, user, connection):
        """That session has ended (logout, or the connection is gone); its topics go with it."""
        for topic in list(self._topics):
            self.unsubscribe(connection, topic)
        devices = self._users.get(user.user_id)
        if not devices or devices.pop(connection, None) is None:
            return
        if not devices:
            del self._users[user.user_id]
            self._notify(user.user_id, False)

    def add_observer(self, observer):
        """``observer(user_id, online)`` when a user's first device connects here or last leaves."""
        self._observers.append(observer)

    def _notify(self, user_id, online):
        for observer in list(self._observers):
            try:
                observer(user_id, online)
            except Exception:
                self._log.failure("connection observer failed for {user_id}", user_id=user_id)

    def count(self, user_id):
        return len(self._users.get(user_id, ()))

    def sessions(self, user_id):
        """The ``User`` avatars live here for ``user_id``."""
        return list(self._users.get(user_id, {}).values())

    # Writing.
    def write(self, connection, data):
        """Write one frame to ``connection`` if it is still open; False if it is not."""
        if connection is None or not connection.connected:
            return False
        connection.write_frame(data)
        return True

    def write_users(self, user_ids, message, exclude=None):
        """Write ``message`` (a dict) to every connection of each user except ``exclude``.

        It is encoded once for the whole fan-out, and not at all when none of the users is
        connected here. Returns how many connections got it."""
        data = None
        sent = 0
        users = self._users
        for user_id in user_ids:
            devices = users.get(user_id)
            if not devices:
                continue
            if data is None:
                data = wire.encode(message)
            # No copy of ``devices``: a write never detaches a connection at once (a connection
            # that must be dropped is aborted, and Twisted calls connectionLost on a later
            # turn), and this loop runs twice per message sent.
            for connection in devices:
                if connection is not exclude:
                    connection.write_frame(data)
                    sent += 1
        return sent

    def end_session(self, user_id, session_id, data):
        """Write ``data`` to the connections of one session, then close them."""
        for connection, user in list(self._users.get(user_id, {}).items()):
            if user.session_id == session_id:
                connection.write_frame(data)
                connection.close()

    # Topics.
    def subscribe(self, connection, topic):
        self._topics.setdefault(topic, {})[connection] = None

    def unsubscribe(self, connection, topic):
        listeners = self._topics.get(topic)
        if listeners is not None:
            listeners.pop(connection, None)
            if not listeners:
                del self._topics[topic]

    def write_topic(self, topic, data, exclude=None):
        sent = 0
        for connection in list(self._topics.get(topic, ())):
            if connection is not exclude:
                connection.write_frame(data)
                sent += 1
        return sent
