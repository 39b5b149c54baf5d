"""``Outbox``: sends that survive drops and restarts, 1:1 and group alike; the server dedupes.

Every send is first written to the local store's outbox with a fresh client id (``queued``); it
goes out now if the client is online, else on the next connection (pipelined, in the order made;
``sent``), and leaves the outbox only when the server acknowledges it (``acked``), so a message is
neither lost nor stored twice. A refusal no retry cures ends it as ``failed`` (kept in the store,
listed by ``failed()``). Transient refusals are retried with the client's backoff, and never
sooner than the ``retry_after`` a ``rate_limited`` error asks for.

The outbox is its own part: it holds its own state and is given the store (a ``StoreWorker``), a
``send(row)`` function that puts one send on the wire (returning the reply's Deferred), the clock,
the retry policy, the client's ``Emitter`` and a function answering the user id. Each change of
a message's state is a ``MessageState`` record on that emitter; the client hands the records
of the stream to ``settle`` too, so an ack seen in the stream (a reply lost with its
connection) counts like a reply.
"""
import time
import uuid

from twisted.internet import defer

from imclient import ingest
from imclient.events import MessageState
from imclient.protocol import NotConnected, RemoteError

#: Send errors worth retrying later; any other error code fails the send for good.
TRANSIENT = frozenset({"unavailable", "rate_limited", "internal", "not_authenticated"})


class Queued(NotConnected):
    """The client stopped before the server acknowledged this send; it stays in the outbox and
    goes out (with the same client id) the next time a Client for this account is online."""


class Outbox:
    def __init__(self, store, send, clock, retry, events, me):
        self.store, self._send, self.clock, self.retry = store, send, clock, retry
        self.events, self._me = events, me
        self.online = False
        self._waiting = {}  # (client_id, group) -> Deferred of a send made in this process
        self._inflight = set()
        self._resend_call = None
        self._attempts = 0

    def add(self, to=None, body="", client_id=None, group=None, extra=None):
        """Queue a send (``to`` a user, or ``group``); a Deferred firing with its ``acked``
        ``MessageState`` once the server has it (after reconnects, if need be), failing with
        ``RemoteError`` for a refusal no retry cures, or with ``Queued`` if the client stops
        first (the message stays in the outbox)."""
        client_id = client_id or uuid.uuid4().hex
        key = (client_id, group)
        d = self._waiting.setdefault(key, defer.Deferred())
        row = {"client_id": client_id, "to": to, "group": group, "body": body,
               "extra": extra or {}, "state": "queued"}
        job = self.store.run(ingest.queue, client_id, to, group, body, row["extra"],
                             int(time.time() * 1000))
        job.addCallback(self._emit_all)
        job.addCallback(lambda records: records and records[0].state == "queued"
                        and self._send_one(row))
        job.addErrback(self._fail_waiter, key)
        return d

    def pending(self):
        """Sends not yet acknowledged, oldest first (a Deferred)."""
        return self.store.outbox()

    def failed(self):
        """Sends the server refused for good, with their ``error`` (a Deferred)."""
        return self.store.outbox(failed=True)

    # The connection's life, told by the client.
    def connected(self):
        self.online = True
        self._inflight = set()
        return self.flush()

    def disconnected(self):
        self.online = False
        self._inflight = set()
        self._cancel_resend()

    def stop(self):
        """The client stops: every waiting send fails with ``Queued`` (it stays queued)."""
        self.disconnected()
        waiting, self._waiting = self._waiting, {}
        for d in [d for d in waiting.values() if not d.called]:
            d.errback(Queued("not acknowledged yet; kept in the outbox for the next connection"))

    def flush(self):
        """Send what waits (pipelined, oldest first); a Deferred firing once it is written."""
        return self.store.outbox().addCallback(lambda rows: [self._send_one(r) for r in rows])

    def _send_one(self, row):
        key = (row["client_id"], row["group"])
        if key in self._inflight or not self.online:
            return
        self._inflight.add(key)
        d = self._send(row)
        self.store.run(ingest.written, row).addCallback(self._emit_all)
        d.addCallbacks(lambda reply: self._acked(row, reply), lambda f: self._refused(row, f))
        d.addBoth(lambda r: self._inflight.discard(key))

    def _acked(self, row, reply):
        self._attempts = 0
        return self.store.run(ingest.acked, row, reply, self._me()).addCallback(self._emit_all)

    def _refused(self, row, failure):
        if not failure.check(RemoteError):
            return None  # the connection dropped: it stays in the outbox for the next connection
        error = failure.value
        if error.code in TRANSIENT:
            self._attempts += 1
            delay = max(self.retry(self._attempts), float(error.error.get("retry_after") or 0))
            self._schedule_resend(delay)
            return None
        return self.store.run(ingest.failed, row, error.code, error.message).addCallback(
            self._emit_all)

    def _schedule_resend(self, delay):
        if self._resend_call is not None and self._resend_call.active():
            if self._resend_call.getTime() >= self.clock.seconds() + delay:
                return
            self._resend_call.cancel()
        self._resend_call = self.clock.callLater(delay, self._resend)

    def _resend(self):
        self._resend_call = None
        if self.online:
            self.flush()

    def _cancel_resend(self):
        if self._resend_call is not None and self._resend_call.active():
            self._resend_call.cancel()
        self._resend_call = None

    def _emit_all(self, records):
        for record in records:
            self.events.emit(record)
        self.settle(records)
        return records

    def settle(self, records):
        """Fire the Deferreds of the sends that ``records`` (already emitted) acked or failed:
        after the subscribers, so that a caller resumed by its send sees a model that has
        heard of it."""
        for state in records:
            if not isinstance(state, MessageState) or state.state not in ("acked", "failed"):
                continue
            waiting = self._waiting.pop((state.client_id, state.group), None)
            if waiting is None or waiting.called:  # the caller may have cancelled it
                continue
            if state.state == "acked":
                waiting.callback(state)
            else:
                waiting.errback(RemoteError(state.code, state.message))

    def _fail_waiter(self, failure, key):
        waiting = self._waiting.pop(key, None)
        if waiting is not None and not waiting.called:
            waiting.errback(failure)
