"""The one place effects become pushes: ``Announcer.announce(effects, origin)``.

``origin`` is the connection the effects are announced for (the one that made the request):
it is left out of fan-outs (it learns from its reply), gets ``Direct`` payloads, and is the one
``Subscribe`` subscribes. Everything that reaches another device goes through the notifier.
"""
from twisted.logger import Logger

from imserver import wire
from imserver.effects import Direct, EndSession, Entries, Ephemeral, Publish, Subscribe, Unsubscribe


class Announcer:
    _log = Logger()

    def __init__(self, notifier, connections):
        self.notifier = notifier
        self.connections = connections
        self._handlers = {Ephemeral: self._ephemeral, Direct: self._direct,
                          Publish: self._publish, Subscribe: self._subscribe,
                          Unsubscribe: self._unsubscribe, EndSession: self._end_session}

    def announce(self, effects, origin=None):
        for effect in effects:
            try:
                if type(effect) is Entries:  # the common case (every message), without a lookup
                    self.notifier.new_entries(effect.users, effect.push, origin)
                else:
                    self._handlers[type(effect)](effect, origin)
            except Exception:
                # One failed delivery must not keep the rest (or the reply) back.
                self._log.failure("announcing {effect!r} failed", effect=effect)

    def _ephemeral(self, effect, origin):
        self.notifier.ephemeral(effect.users, effect.payload, origin)

    def _direct(self, effect, origin):
        if self.connections.write(origin, wire.encode(effect.payload)):
            return
        if effect.fallback_user is not None:
            self.notifier.ephemeral((effect.fallback_user,), effect.payload)

    def _publish(self, effect, origin):
        self.notifier.publish(effect.topic, effect.payload, origin)

    def _subscribe(self, effect, origin):
        if origin is not None:
            self.connections.subscribe(origin, effect.topic)

    def _unsubscribe(self, effect, origin):
        if origin is not None:
            self.connections.unsubscribe(origin, effect.topic)

    def _end_session(self, effect, origin):
        self.notifier.end_session(effect.user_id, effect.session_id, effect.payload)
