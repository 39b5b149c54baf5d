"""Presence state: who is online, and with what status. Every read returns a Deferred.

Handlers ask ``IPresence`` instead of counting connections, so a networked implementation
(state in Redis, shared by several processes) can answer the same questions. ``LocalPresence``
answers from this process's ``Connections``. Telling friends about changes is the presence
domain's job (``imserver/handlers/presence.py``), as an observer of this object.
"""
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

OFFLINE = {"online": False, "status": "offline", "text": ""}


class IPresence(Interface):
    def status(user_id):
        """A Deferred firing with ``{"online", "status", "text"}`` for the user."""

    def statuses(user_ids):
        """A Deferred firing with ``{user_id: status dict}`` for each of ``user_ids``."""

    def set_status(user_id, status, text):
        """Set an online user's status (online/away/busy) and text; a Deferred that fires
        once the observers have been told (and what they returned has fired)."""

    def device_count(user_id):
        """A Deferred firing with how many devices of the user are connected."""

    def online_sessions(user_id):
        """A Deferred firing with the set of the user's session ids that are connected."""

    def add_observer(observer):
        """``observer(user_id)`` when a user's presence changes (first device on, last device
        off, status set); it may return a Deferred."""


@implementer(IPresence)
class LocalPresence:
    _log = Logger()

    def __init__(self, connections):
        self.connections = connections
        self._status = {}  # user_id -> (status, text), while online
        self._observers = []
        connections.add_observer(self._online_changed)

    def _current(self, user_id):
        if not self.connections.count(user_id):
            return dict(OFFLINE)
        status, text = self._status.get(user_id, ("online", ""))
        return {"online": True, "status": status, "text": text}

    def status(self, user_id):
        return defer.succeed(self._current(user_id))

    def statuses(self, user_ids):
        return defer.succeed({user_id: self._current(user_id) for user_id in user_ids})

    def set_status(self, user_id, status, text):
        if not self.connections.count(user_id):
            return defer.succeed(None)
        self._status[user_id] = (status, text)
        return self._changed(user_id)

    def device_count(self, user_id):
        return defer.succeed(self.connections.count(user_id))

    def online_sessions(self, user_id):
        return defer.succeed({u.session_id for u in self.connections.sessions(user_id)})

    def add_observer(self, observer):
        self._observers.append(observer)

    def _online_changed(self, user_id, online):
        if not online:
            self._status.pop(user_id, None)
        self._changed(user_id)

    def _changed(self, user_id):
        told = [defer.maybeDeferred(observer, user_id).addErrback(
            lambda f: self._log.failure("presence observer failed for {user_id}", f,
                                        user_id=user_id))
            for observer in list(self._observers)]
        return defer.gatherResults(told).addCallback(lambda _: None)
