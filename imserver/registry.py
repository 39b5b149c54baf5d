"""Who is online, and pushing to them: the one interface behind which presence and notification live.

``INotifier`` is what handlers use to push to a user and to ask who is online. ``LocalRegistry``
implements it for one process (user id -> live connections, one per device); a multi-process
deployment puts a Redis-backed implementation behind the same interface.
"""
from twisted.logger import Logger
from zope.interface import Interface, implementer

from imserver import wire


class INotifier(Interface):
    def attach(user, connection):
        """A logged-in session of ``user`` is now live on ``connection``."""

    def detach(user, connection):
        """That session's connection has gone."""

    def connection_count(user_id):
        """How many live connections the user has."""

    def is_online(user_id):
        """True while any of the user's devices is connected."""

    def sessions(user_id):
        """The live ``User`` avatars of a user."""

    def push(user_id, message, exclude=None):
        """Send ``message`` (a dict) to every live connection of the user except ``exclude``."""

    def push_many(user_ids, message, exclude=None):
        """Send ``message`` to every live connection of each user except ``exclude``, encoding it
        once; returns how many connections it was written to."""

    def disconnect_session(user_id, session_id, message):
        """Send ``message`` to the connections of one session, then close them."""

    def add_observer(observer):
        """``observer(user_id, online)`` is called when a user's first device connects or last leaves."""

    def set_status(user_id, status, text):
        """Set the user's presence status (online/away/busy) and text while they are online."""

    def status(user_id):
        """``{"online", "status", "text"}`` for a user."""


@implementer(INotifier)
class LocalRegistry:
    _log = Logger()

    def __init__(self):
        self._conns = {}  # user_id -> {connection: User}
        self._observers = []
        self._status = {}  # user_id -> (status, text), while online

    def attach(self, user, connection):
        devices = self._conns.setdefault(user.user_id, {})
        first = not devices
        devices[connection] = user
        if first:
            self._notify(user.user_id, True)

    def detach(self, user, connection):
        devices = self._conns.get(user.user_id)
        if not devices or devices.pop(connection, None) is None:
            return
        if not devices:
            del self._conns[user.user_id]
            self._status.pop(user.user_id, None)
            self._notify(user.user_id, False)

    def _notify(self, user_id, online):
        for observer in list(self._observers):
            try:
                observer(user_id, online)
            except Exception:
                self._log.failure("presence observer failed for {user_id}", user_id=user_id)

    def add_observer(self, observer):
        self._observers.append(observer)

    def set_status(self, user_id, status, text):
        if user_id in self._conns:
            self._status[user_id] = (status, text)

    def status(self, user_id):
        if user_id not in self._conns:
            return {"online": False, "status": "offline", "text": ""}
        status, text = self._status.get(user_id, ("online", ""))
        return {"online": True, "status": status, "text": text}

    def connection_count(self, user_id):
        return len(self._conns.get(user_id, ()))

    def is_online(self, user_id):
        return user_id in self._conns

    def online_users(self):
        return list(self._conns)

    def sessions(self, user_id):
        return list(self._conns.get(user_id, {}).values())

    def push(self, user_id, message, exclude=None):
        return self.push_many((user_id,), message, exclude)

    def push_many(self, user_ids, message, exclude=None):
        data = None
        sent = 0
        conns = self._conns
        for user_id in user_ids:
            devices = conns.get(user_id)
            if not devices:
                continue
            if data is None:
                data = wire.encode(message)  # once for the whole fan-out, and not at all if nobody is on
            for connection in list(devices):
                if connection is not exclude:
                    connection.write_frame(data)
                    sent += 1
        return sent

    def disconnect_session(self, user_id, session_id, message):
        for connection, user in list(self._conns.get(user_id, {}).items()):
            if user.session_id == session_id:
                connection.write_frame(wire.encode(message))
                connection.close()

    def close_all(self):
        for devices in list(self._conns.values()):
            for connection in list(devices):
                connection.close()
