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

from imclient import events as ev
from imclient import ingest
from imclient.account import KnownServers
from imclient.connect import CertificateError, connect
from imclient.events import Emitter, MessageState, ProgressMeter
from imclient.ops import OpsMixin
from imclient.outbox import Outbox, Queued
from imclient.protocol import NotConnected, RemoteError
from imclient.transfers import Transfers
from imclient.worker import StoreWorker

__all__ = ["Client", "NotConnected", "Queued", "SessionEnded"]

#: Errors while connecting that no retry will cure.
FATAL = frozenset({"bad_credentials", "bad_request"})


class SessionEnded(Exception):
    """The saved session is gone (logged out, revoked, or the token refused): log in again."""


class Client(OpsMixin):
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
            store = StoreWorker(account.store_path, reactor)
        self.store = store
        self.known_servers = KnownServers(account.home)
        self.events = Emitter()
        store.listen(self.events.emit)  # StoreChanged records reach subscribers too
        self.outbox = Outbox(store, self._send_wire, self.clock, self.retry, self.events,
                              lambda: self.me)
        self.checkpoint_delay, self.sync_page, self.client_name = checkpoint_delay, sync_page, client_name
        self.protocol = None
        self.online = False
        self.presence = {}
        self.stats = {}
        self._running = False
        self._give_up_after = None
        self._failures = 0
        self._attempt_d = self._retry_call = self._checkpoint_call = None
        self._online_waiters = []
        self._buffer = None  # pushes that arrive while catching up
        self._position = 0  # the saved stream position, as last read or written
        self._syncing = False
        self._sync_waiters = []
        self.events.on(MessageState, self._acked_past)
        self.transfers = Transfers(self)

    @property
    def me(self):
        return self.account.user_id

    def on(self, what, fn):
        """Call ``fn(event)`` for every event matching ``what`` (an ``imclient.events`` class, an
        event name, or ``"*"``); returns a function that unsubscribes."""
        return self.events.on(what, fn)

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
        self.outbox.stop()
        self.transfers.stop()
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()
            return proto.lost
        return defer.succeed(None)

    def close(self):
        """``stop()`` and close the local store (after the jobs queued before)."""
        return self.stop().addBoth(lambda r: self.store.close().addCallback(lambda _: r))

    def _cancel_timers(self):
        for name in ("_retry_call", "_checkpoint_call"):
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
        self.protocol, self._buffer = proto, []
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
        self.outbox.connected()
        self.transfers.connected(proto)
        if self._sync_waiters:  # asked for while the first catch-up ran
            self._run_sync()
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
        self.outbox.disconnected()
        self.transfers.disconnected()
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

    # The stream: catch-up, pushes, and handling each event once (the rules: imclient.ingest).
    async def _catch_up(self, proto):
        self._syncing = True
        try:
            since = await self.store.position()
            while True:
                page = await proto.request("sync", since=since, limit=self.sync_page)
                self._emit_all(await self.store.run(ingest.apply_page, page["events"],
                                                    page["next"], self.me))
                since = self._position = page["next"]
                if not page["more"]:
                    return
        finally:
            self._syncing = False

    def _sync_soon(self):
        """A Deferred firing once a sync that starts after this call has finished (it fires
        with None either way: a failed sync is logged, and the next checkpoint repairs it)."""
        d = defer.Deferred()
        self._sync_waiters.append(d)
        if not self._syncing:
            self._run_sync()
        return d

    def _run_sync(self):
        waiters, self._sync_waiters = self._sync_waiters, []
        if not self.online or self.protocol is None:
            for d in waiters:
                d.callback(None)
            return
        done = defer.ensureDeferred(self._catch_up(self.protocol))
        done.addErrback(lambda f: self._log.debug("sync failed: {f}", f=f.getErrorMessage()))

        def finished(_):
            for d in waiters:
                d.callback(None)
            if self._sync_waiters:
                self._run_sync()
        done.addCallback(finished)

    def _checkpoint(self):
        """Sync now and then while online: it advances the saved position and repairs any gap."""
        self._checkpoint_call = None
        if self.online:
            self._sync_soon()

    def _past(self, reply):
        """The stream-write rule: a reply carrying a ``pos`` past the saved position wrote to
        our own stream, which the server pushes to our *other* connections only; so sync past
        it before the reply is handed on (the store then holds what the op did)."""
        pos = reply.get("pos") if isinstance(reply, dict) else None
        if not isinstance(pos, int) or pos <= self._position:
            return reply
        return self._sync_soon().addCallback(lambda _: reply)

    def _acked_past(self, state):
        # A send's ack already stored the message; the sync moves the position past it.
        if state.state == "acked" and state.pos is not None and state.pos > self._position:
            self._sync_soon()

    def _on_push(self, push):
        if self._buffer is not None:
            self._buffer.append(push)
            return
        op = push.get("op")
        if op is None:
            error = push.get("error") or {}
            self.events.emit(ev.ServerError(error.get("code", "internal"), error.get("message", ""),
                                            push))
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
            if op == "friend_request":
                self.store.run(ingest.pending_request, push).addCallback(self._emit_all)
        else:
            self.store.run(ingest.apply_event, push, self.me).addCallback(self._emit_all)
            if self._checkpoint_call is None and self.online:
                self._checkpoint_call = self.clock.callLater(self.checkpoint_delay, self._checkpoint)

    def _emit_all(self, records):
        for record in records:
            self.events.emit(record)
        self.outbox.settle(records)
        return records

    # Requests.
    def request(self, op, **fields):
        """Any op, by its wire name: a Deferred firing with the reply dict (``NotConnected`` if
        offline, ``RemoteError`` if the server refuses)."""
        self.stats[op] = self.stats.get(op, 0) + 1
        if not self.online or self.protocol is None:
            return defer.fail(NotConnected(f"not connected to {self.account.host}:{self.account.port}"))
        return self.protocol.request(op, **fields).addCallback(self._past)

    def _send_wire(self, row):
        """The outbox's way out: one queued send as a ``send`` or ``group_send`` request."""
        if not self.online or self.protocol is None:
            return defer.fail(NotConnected("offline"))
        fields = dict(row["extra"], body=row["body"], client_id=row["client_id"])
        op = "group_send" if row["group"] is not None else "send"
        fields.update({"group": row["group"]} if row["group"] is not None else {"to": row["to"]})
        self.stats[op] = self.stats.get(op, 0) + 1
        return self.protocol.request(op, **fields)

    def send(self, to, body, client_id=None, file=None):
        """Send a 1:1 message through the outbox (see ``Outbox.add``); ``file`` is a file
        reference ``{"id", "kind", "duration"?}`` (docs/protocol.rst)."""
        return self.outbox.add(to=to, body=body, client_id=client_id,
                                extra={"file": file} if file else None)

    def message_state(self, client_id, group=None):
        """The state of a message I sent (``imclient.events.MESSAGE_STATES``), a Deferred."""
        return self.store.message_state(client_id, group)

    def progress_meter(self, transfer, direction, name, total, start=0):
        """A ``ProgressMeter`` that emits this client's ``TransferProgress`` events."""
        return ProgressMeter(self.clock, self.events.emit, transfer, direction, name, total, start)
