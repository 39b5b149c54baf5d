"""Sending: the outbox of a ``Client``. It survives drops and restarts, and the server dedupes.

Every ``send`` is first written to the local store's outbox with a fresh client id; it is sent
now if online, else on the next connection (pipelined, in the order made), and removed only when
the server acknowledges it, so a message is neither lost nor stored twice.
"""
import time
import uuid

from twisted.internet import defer

from imclient.events import MessageState
from imclient.protocol import RemoteError

#: Send errors worth retrying later; any other error code fails the send for good.
TRANSIENT = frozenset({"unavailable", "rate_limited", "internal", "not_authenticated"})


class NotConnected(Exception):
    """The client is offline; only ``send`` queues, other requests fail with this."""


class Queued(NotConnected):
    """The client stopped before the server acknowledged this send; it stays in the outbox and
    goes out (with the same client id) the next time a Client for this account is online."""


class OutboxMixin:
    """Needs ``store``, ``protocol``, ``online``, ``me``, ``clock``, ``retry``, ``events`` and the
    ``_waiting``/``_inflight``/``_resend_call`` attributes from the Client it is mixed into."""

    def send(self, to, body, client_id=None):
        """Send a message; fires with the ``send`` reply once the server has it (after reconnects,
        if need be), or fails with ``RemoteError`` for a refusal no retry cures, or with
        ``Queued`` if the client is stopped first (the message stays in the outbox)."""
        client_id = client_id or uuid.uuid4().hex
        self.store.outbox_add(client_id, to, body, int(time.time() * 1000))
        d = self._waiting.setdefault(client_id, defer.Deferred())
        if self.online:
            self._send_one({"client_id": client_id, "to": to, "body": body})
        return d

    def _flush_outbox(self):
        for row in self.store.outbox():
            self._send_one(row)

    def _send_one(self, row):
        if row["client_id"] in self._inflight:
            return
        self._inflight.add(row["client_id"])
        d = self.protocol.request("send", to=row["to"], body=row["body"], client_id=row["client_id"])
        d.addCallbacks(lambda reply: self._acked(row["client_id"], dict(
            reply, **{"from": self.me, "to": row["to"], "body": row["body"], "kind": "text",
                      "client_id": row["client_id"]}), reply["duplicate"]),
                       lambda f: self._send_failed(row, f))
        d.addBoth(lambda r: self._inflight.discard(row["client_id"]))

    def _acked(self, client_id, message, duplicate):
        with self.store.batch():
            self.store.add_message(message, self.me)
            removed = self.store.outbox_remove(client_id)
        if not removed:
            return
        reply = {k: message[k] for k in ("msg_id", "ts", "pos") if k in message}
        reply.update(duplicate=duplicate, client_id=client_id, to=message["to"])
        waiting = self._waiting.pop(client_id, None)
        if waiting is not None and not waiting.called:  # the caller may have cancelled it
            waiting.callback(reply)
        self.events.emit(MessageState(client_id, "acked", to=message["to"], msg_id=reply.get("msg_id"),
                                      ts=reply.get("ts"), pos=reply.get("pos"), duplicate=duplicate))

    def _send_failed(self, row, failure):
        if not failure.check(RemoteError):
            return  # the connection dropped: it stays in the outbox for the next connection
        if failure.value.code in TRANSIENT:
            if self._resend_call is None:
                self._resend_call = self.clock.callLater(self.retry(1), self._resend)
            return
        self.store.outbox_remove(row["client_id"])
        waiting = self._waiting.pop(row["client_id"], None)
        if waiting is not None and not waiting.called:
            waiting.errback(failure)
        self.events.emit(MessageState(row["client_id"], "failed", to=row["to"],
                                      code=failure.value.code, message=failure.value.message))

    def _resend(self):
        self._resend_call = None
        if self.online:
            self._flush_outbox()

    def outbox(self):
        """Sends not yet acknowledged by the server, oldest first."""
        return self.store.outbox()
