"""``Client``: one Parley account online, with reconnects, catch-up, an outbox and a local store.

A program makes a ``Client`` for an ``Account``, subscribes to events with ``client.on(what, fn)``
and calls ``start()``. The client connects (TLS, pinned on first use, or verified against a CA),
logs in or resumes its saved session, syncs the stream from the saved position, sends what is
waiting in the outbox, and goes ``online``. When the connection drops it reconnects with
exponential backoff (on the injected clock) and does the same again. Every stream event is
handled once: events whose position was seen are dropped, messages are stored by ``msg_id``.

Events (``imclient.events``): every subscriber is called ``fn(event)`` with a frozen record,
subscribed by class (``MessageEvent``), by name (``"friend_added"``) or ``"*"``. Stream events
(``MessageEvent`` includes what you sent from your other devices, never what this client sent;
``ReceiptEvent``, ``FriendEvent``, ``GroupMessageEvent``, ``GroupEvent``), the pushes
``PresenceEvent`` and ``SessionRevoked``, and the client's own ``Online``, ``Offline``,
``Reconnecting``, ``Pinned``, ``MessageState``, ``TransferState``, ``TransferProgress`` and
``Error`` (fatal: the client has stopped).
"""
import os

from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.logger import Logger

from imclient.account import KnownServers
from imclient.connect import CertificateError, connect
from imclient import events as ev
from imclient.events import Emitter, ProgressMeter
from imclient.ops import OpsMixin
from imclient.outbox import NotConnected, OutboxMixin, Queued
from imclient.protocol import RemoteError
from imclient.store import LocalStore

#: Ops that add events to our own stream; the server pushes those to our *other* connections
#: only, so the client syncs after them to see (and store) the result.
STREAM_WRITES = frozenset({"friend_request", "friend_accept", "friend_reject", "friend_remove",
                           "block", "unblock", "friend_alias", "mark_delivered", "mark_read"})
#: Errors while connecting that no retry will cure.
FATAL = frozenset({"bad_credentials", "bad_request"})


class SessionEnded(Exception):
    """The saved session is gone (logged out, revoked, or the token refused): log in again."""


class Client(OpsMixin, OutboxMixin):
    _log = Logger()

    def __init__(self, reactor, account, password=None, *, clock=None, retry=None,
                 connect=connect, store=None, checkpoint_delay=5.0, sync_page=1000,
                 client_name="imclient"):
        self.reactor, self.clock = reactor, clock or reactor
        self.account = account
        self._password = password
        self.retry = retry or backoffPolicy(initialDelay=0.5, maxDelay=30.0, factor=2.0)
        self._connect = connect
        if store is None:
            os.makedirs(account.directory, mode=0o700, exist_ok=True)
            store = LocalStore(account.store_path)
        self.store = store
        self.known_servers = KnownServers(account.home)
        self.events = Emitter()
        self.checkpoint_delay, self.sync_page, self.client_name = checkpoint_delay, sync_page, client_name
        self.protocol = None
        self.online = False
        self.presence = {}
        self.stats = {}
        self._running = False
        self._give_up_after = None
        self._failures = 0
        self._attempt_d = self._retry_call = self._checkpoint_call = self._resend_call = None
        self._online_waiters = []
        self._waiting = {}  # client_id -> Deferred of a send made in this process
        self._inflight = set()
        self._buffer = None  # pushes that arrive while catching up
        self._catching_up = False
        self._sync_again = False

    @property
    def me(self):
        return self.account.user_id

    def on(self, name, fn):
        """Call ``fn(event)`` for every event ``name``; returns a function that unsubscribes."""
        return self.events.on(name, fn)

    # Connection life.
    def start(self, give_up_after=None):
        """Connect and keep connected; fires once online, or fails on a fatal error.

        With ``give_up_after=n`` the client stops, and this fails with the last error, if the
        first ``n`` attempts all fail (a command-line tool wants to say so rather than wait);
        once online it reconnects without limit either way."""
        if not self._running:
            self._running = True
            self._give_up_after = give_up_after
            self._attempt()
        return self.when_online()

    def when_online(self):
        if self.online:
            return defer.succeed(self)
        d = defer.Deferred()
        self._online_waiters.append(d)
        return d

    def stop(self):
        """Stop reconnecting and close the connection; fires when it is closed."""
        self._running = False
        self._cancel_timers()
        if self._attempt_d is not None and not self._attempt_d.called:
            self._attempt_d.cancel()
        proto, self.protocol = self.protocol, None
        self._went_offline("stopped")
        self._fail_waiters(NotConnected("the client was stopped"))
        waiting, self._waiting = self._waiting, {}
        for d in [d for d in waiting.values() if not d.called]:
            d.errback(Queued("not acknowledged yet; kept in the outbox for the next connection"))
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()
            return proto.lost
        return defer.succeed(None)

    def close(self):
        """``stop()`` and close the local store."""
        return self.stop().addBoth(lambda r: self.store.close() or r)

    def _cancel_timers(self):
        for name in ("_retry_call", "_checkpoint_call", "_resend_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def _attempt(self):
        self._retry_call = None
        self._attempt_d = defer.ensureDeferred(self._open())
        self._attempt_d.addCallbacks(self._now_online, self._attempt_failed)

    async def _open(self):
        proto = await self._connect_once()
        self.protocol, self._buffer, self._inflight = proto, [], set()
        proto.subscribe(self._on_push)
        proto.lost.addCallback(lambda _: self._lost(proto))
        try:
            await self._authenticate(proto)
            await self._catch_up(proto)
        except BaseException:
            if proto.transport is not None:
                proto.transport.abortConnection()
            raise
        return proto

    async def _connect_once(self):
        a = self.account
        kw = dict(timeout=10)
        if a.tls:
            kw["tls"] = True
            if a.ca_file:
                with open(a.ca_file, "rb") as f:
                    kw["ca_pem"] = f.read()
            else:
                kw["fingerprint"] = a.fingerprint or self.known_servers.get(a.host, a.port)
                kw["tofu"] = not kw["fingerprint"]
        proto = await self._connect(self.reactor, a.host, a.port, **kw)
        if kw.get("tofu"):
            self.known_servers.remember(a.host, a.port, proto.peer_fingerprint)
            self.events.emit(ev.Pinned(a.host, a.port, self.known_servers.get(a.host, a.port)))
        return proto

    async def _authenticate(self, proto):
        a = self.account
        if a.token:
            try:
                reply = await proto.request("resume", token=a.token)
                a.user_id = reply["user_id"]
                return
            except RemoteError as e:
                if e.code != "bad_credentials" or not self._password:
                    raise SessionEnded(f"the saved session of {a.username} has ended "
                                       f"({e.message}); log in again") from e
        if not self._password:
            raise SessionEnded(f"{a.username} is not logged in: log in first")
        reply = await proto.request("login", username=a.username, password=self._password,
                                    device=a.device or self.client_name)
        a.user_id, a.token = reply["user_id"], reply["token"]
        a.save()

    def _now_online(self, proto):
        self._attempt_d = None
        if not self._running:
            proto.transport.loseConnection()
            return
        self._failures = 0
        self._give_up_after = None
        self.online = True
        buffered, self._buffer = self._buffer or [], None
        for push in buffered:
            self._on_push(push)
        self._flush_outbox()
        waiters, self._online_waiters = self._online_waiters, []
        for d in [d for d in waiters if not d.called]:  # a caller may have cancelled its wait
            d.callback(self)
        self.events.emit(ev.Online(self.me, proto.server_info))

    def _attempt_failed(self, failure):
        self._attempt_d = None
        if not self._running:
            return None
        if failure.check(CertificateError, SessionEnded) or (
                failure.check(RemoteError) and failure.value.code in FATAL):
            self._fatal(failure.value)
            return None
        if self._give_up_after is not None and self._failures + 1 >= self._give_up_after:
            self._fatal(failure.value)
            return None
        self._schedule_retry(failure.getErrorMessage())
        return None

    def _schedule_retry(self, reason):
        delay = self.retry(self._failures)
        self._failures += 1
        self.events.emit(ev.Reconnecting(self._failures, delay, reason))
        self._retry_call = self.clock.callLater(delay, self._attempt)

    def _lost(self, proto):
        if proto is not self.protocol:
            return
        self.protocol = None
        was_online = self.online
        self._went_offline("connection lost")
        if was_online and self._running:
            self._schedule_retry("connection lost")

    def _went_offline(self, reason):
        if self._checkpoint_call is not None and self._checkpoint_call.active():
            self._checkpoint_call.cancel()
        self._checkpoint_call = None
        if self.online:
            self.online = False
            self.events.emit(ev.Offline(reason))

    def _fatal(self, error):
        self._running = False
        self._cancel_timers()
        proto, self.protocol = self.protocol, None
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()
        self._went_offline(str(error))
        self.events.emit(ev.Error(error))
        self._fail_waiters(error)

    def _fail_waiters(self, error):
        waiters, self._online_waiters = self._online_waiters, []
        for d in [d for d in waiters if not d.called]:
            d.errback(error)

    # The stream: catch-up, pushes, and handling each event once.
    async def _catch_up(self, proto):
        self._catching_up = True
        try:
            since = self.store.position
            while True:
                page = await proto.request("sync", since=since, limit=self.sync_page)
                with self.store.batch():
                    for event in page["events"]:
                        self._ingest(event)
                    since = page["next"]
                    self.store.set_position(since)
                if not page["more"]:
                    return
        finally:
            self._catching_up = False

    def _checkpoint(self):
        """Sync now and then while online: it advances the saved position and repairs any gap."""
        self._checkpoint_call = None
        if not self.online:
            return None
        if self._catching_up:
            self._sync_again = True
            return None
        self._sync_again = False
        d = defer.ensureDeferred(self._catch_up(self.protocol))
        d.addErrback(lambda f: self._log.debug("checkpoint sync failed: {f}", f=f.getErrorMessage()))
        d.addCallback(lambda _: self._sync_again and self._checkpoint())
        return d

    def _on_push(self, push):
        if self._buffer is not None:
            self._buffer.append(push)
            return
        op = push.get("op")
        if op is None:
            error = push.get("error") or {}
            self.events.emit(ev.ServerError(error.get("code", "internal"), error.get("message", ""), push))
        elif op == "session_revoked":
            self.account.token = None
            self.account.save(make_current=False)
            self.events.emit(ev.SessionRevoked(push.get("session")))
            self._fatal(SessionEnded("this session was ended from another device"))
        elif op == "presence":
            self.presence[push["user"]] = {k: push.get(k) for k in ("online", "status", "text")}
            self.events.emit(ev.PresenceEvent(push["user"], push.get("online"), push.get("status"),
                                              push.get("text")))
        elif push.get("pos") is None:
            if op != "friend_request" or self.store.add_request(push["from"], push["to"],
                                                                push.get("greeting", ""), push.get("ts")):
                self.events.emit(ev.stream_event(push))
        else:
            event = {k: v for k, v in push.items() if k != "op"}
            event["type"] = op
            self._ingest(event)
            if self._checkpoint_call is None and self.online:
                self._checkpoint_call = self.clock.callLater(self.checkpoint_delay, self._checkpoint)

    def _ingest(self, event):
        if not self.store.first_sight(event["pos"]):
            return
        kind = event["type"]
        if kind == "message" and not self._ingest_message(event):
            return
        apply = _APPLY.get(kind)
        if apply is not None:
            apply(self, event)
        self.events.emit(ev.stream_event(event))

    def _ingest_message(self, event):
        new = self.store.add_message(event, self.me)
        if event["from"] == self.me and event.get("client_id") in self._outbox_ids():
            self._acked(event["client_id"], event, duplicate=True)
            return False
        return new

    def _outbox_ids(self):
        return {row["client_id"] for row in self.store.outbox()}

    def _on_receipt(self, event):
        if event["reader"] == self.me:
            if event["kind"] == "read":
                self.store.receipt(event["peer"], "my_read_upto", event["msg_id"])
        else:
            column = "read_upto" if event["kind"] == "read" else "delivered_upto"
            self.store.receipt(event["reader"], column, event["msg_id"])
            if event["kind"] == "read":
                self.store.receipt(event["reader"], "delivered_upto", event["msg_id"])

    def _on_friend_event(self, event):
        kind, other = event["type"], event.get("user")
        if kind == "friend_request":
            self.store.add_request(event["from"], event["to"], event.get("greeting", ""), event.get("ts"))
            return
        self.store.drop_requests(self.me, other)
        if kind == "friend_added":
            self.store.add_friend(other)
        elif kind in ("friend_removed", "blocked"):
            self.store.remove_friend(other)
        elif kind == "friend_alias":
            self.store.set_alias(other, event["alias"])

    # Requests.
    def request(self, op, **fields):
        """Any op, by its wire name: a Deferred firing with the reply dict (``NotConnected`` if
        offline, ``RemoteError`` if the server refuses)."""
        self.stats[op] = self.stats.get(op, 0) + 1
        if not self.online or self.protocol is None:
            return defer.fail(NotConnected(f"not connected to {self.account.host}:{self.account.port}"))
        d = self.protocol.request(op, **fields)
        if op in STREAM_WRITES:
            d.addCallback(self._then_sync)
        return d

    def _then_sync(self, reply):
        synced = self._checkpoint()
        return reply if synced is None else synced.addCallback(lambda _: reply)

    def progress_meter(self, transfer, direction, name, total, start=0):
        """A ``ProgressMeter`` that emits this client's ``progress`` events."""
        return ProgressMeter(self.clock, self.events.emit, transfer,
                             direction, name, total, start)


_APPLY = {
    "receipt": Client._on_receipt,
    "friend_request": Client._on_friend_event,
    "friend_added": Client._on_friend_event,
    "friend_removed": Client._on_friend_event,
    "friend_rejected": Client._on_friend_event,
    "blocked": Client._on_friend_event,
    "friend_alias": Client._on_friend_event,
}
