"""``imclient chat`` (interactive, through the server) and ``imclient lan`` (a LAN group, no server).

Both read lines from stdin through ``twisted.internet.stdio.StandardIO`` and print what arrives
as it arrives. In ``chat``, ``/to USER`` picks who text lines go to; ``/help`` lists the rest.
"""
import json
import os
import time

from twisted.internet import defer, stdio, task
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from imclient import events as ev
from imclient.cli_common import Fail, online_client

CHAT_HELP = ("commands: /to USER (send text lines to USER), /who (friends), /history [N], "
             "/accept USER, /quit; any other line is a message")


@implementer(IHalfCloseableProtocol)
class _Lines(LineReceiver):
    """stdin lines to ``on_line``; ``done`` fires at end of input (stdout stays open until
    ``close``). Output goes out through ``say``."""

    delimiter = b"\n"

    def __init__(self, on_line):
        self.on_line = on_line
        self.done = defer.Deferred()

    def lineReceived(self, line):
        text = line.decode("utf-8", "replace").rstrip("\r")
        d = defer.maybeDeferred(self.on_line, text)
        d.addErrback(lambda f: self.say(f"! {f.getErrorMessage()}"))

    def say(self, text):
        if self.transport is not None:
            self.transport.write((text + "\n").encode("utf-8"))

    def readConnectionLost(self):
        if not self.done.called:
            self.done.callback(None)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.readConnectionLost()

    def close(self):
        if self.transport is not None:
            self.transport.loseConnection()


class _Printer:
    """Formats events as text lines, or JSON lines with ``--json``."""

    def __init__(self, lines, as_json):
        self.lines, self.as_json = lines, as_json

    def event(self, name, data, text):
        if self.as_json:
            self.lines.say(json.dumps({"event": name, **data}, ensure_ascii=False, default=str))
        elif text is not None:
            self.lines.say(text)


class ChatSession:
    def __init__(self, client, printer):
        self.client, self.printer = client, printer
        self.peer = None  # (name, user id)
        self.pending = set()
        self.names = {}  # user id -> name, from the local store, kept current by its changes

    def name(self, user_id):
        return self.names.get(user_id) or f"#{user_id}"

    async def load_names(self, change=None):
        if change is None or change.table in ("friends", "users"):
            self.names = await self.client.store.usernames()

    def subscribe(self):
        self.client.on("store_changed", lambda c: defer.ensureDeferred(self.load_names(c)))
        for kind, text in _CHAT_TEXT.items():
            self.client.on(kind, lambda e, text=text: self.printer.event(
                e.name, e.as_dict(), text(self, e)))

    async def line(self, text):
        if not text.strip():
            return
        if text.startswith("/"):
            command, _, rest = text[1:].partition(" ")
            handler = getattr(self, f"cmd_{command}", None)
            if handler is None:
                raise Fail(f"unknown command /{command}; {CHAT_HELP}")
            await handler(rest.strip())
            return
        if self.peer is None:
            raise Fail("who to? say /to USER first")
        d = self.client.send(self.peer[1], text)
        self.pending.add(d)
        d.addBoth(lambda r: self.pending.discard(d) or None)
        if not self.client.online:
            self.printer.event("queued", {"to": self.peer[1]}, "(queued: offline)")

    async def cmd_to(self, who):
        self.peer = (who, await self.client.resolve(who))
        self.printer.event("to", {"user": who, "user_id": self.peer[1]}, f"* talking to {who}")

    async def cmd_who(self, _):
        for f in await self.client.friends():
            self.printer.event("friend", f, f"{f['username']:<20} {f.get('status', '?')}")

    async def cmd_history(self, n):
        if self.peer is None:
            raise Fail("history of whom? say /to USER first")
        page = await self.client.history(self.peer[1], limit=int(n or 20))
        for m in reversed(page["messages"]):
            self.printer.event("history", m, f"  {self.name(m['from'])}: {m['body']}")

    async def cmd_accept(self, who):
        await self.client.friend_accept(await self.client.resolve(who))

    async def cmd_help(self, _):
        self.printer.event("help", {"text": CHAT_HELP}, CHAT_HELP)

    async def cmd_quit(self, _):
        self.printer.lines.readConnectionLost()


def _hhmm(ms):
    return time.strftime("%H:%M", time.localtime(ms / 1000))


def _state_line(s, e):
    if e.state == "acked":
        return f"(sent #{e.msg_id})"
    if e.state == "failed":
        return f"! not sent to {s.name(e.to)}: {e.message} ({e.code})"
    return None


#: event (name or class) -> its text line in chat mode (None: print nothing, but --json still
#: shows it).
_CHAT_TEXT = {
    ev.MessageEvent: lambda s, m: f"[{_hhmm(m.ts)}] {s.name(m.sender)}: {m.body}",
    ev.GroupMessageEvent: lambda s, m: f"[{_hhmm(m.ts)}] {s.name(m.sender)} in #{m.group}: {m.body}",
    ev.MessageState: _state_line,
    "friend_request": lambda s, e: None if e.from_user == s.client.me else (
        f"* {s.name(e.from_user)} asks to be your friend: {e.greeting} (/accept {e.from_user})"),
    "friend_added": lambda s, e: f"* you and {s.name(e.user)} are friends",
    ev.PresenceEvent: lambda s, e: f"* {s.name(e.user)} is {e.status}",
    ev.Offline: lambda s, e: "* connection lost; reconnecting",
    ev.Online: lambda s, e: "* online again",
    ev.Error: lambda s, e: f"! {e}",
}


async def cmd_chat(reactor, args, out):
    client = await online_client(reactor, args)
    lines = _Lines(None)
    session = ChatSession(client, _Printer(lines, args.json))
    lines.on_line = session.line
    try:
        await client.friends()  # names for the people we hear from
        await session.load_names()
        session.subscribe()
        stdio.StandardIO(lines, reactor=reactor)
        session.printer.event("online", {"user_id": client.me},
                              f"* online as {client.account.username}; {CHAT_HELP}")
        if args.to:
            await session.cmd_to(args.to)
        await lines.done
        if session.pending:  # give queued sends a moment to be acknowledged
            waiting = defer.DeferredList(list(session.pending))
            waiting.addTimeout(args.wait, reactor)
            await waiting.addErrback(lambda f: None)
    finally:
        lines.close()
        await client.close()


async def cmd_lan(reactor, args, out):
    from imclient.lan import LanChat
    from imclient.lan import events as lan_events

    passphrase = args.passphrase or os.environ.get("PARLEY_LAN_PASSPHRASE")
    chat = LanChat(reactor, args.nickname, group=args.group, port=args.port, passphrase=passphrase,
                   interface=args.interface)
    lines = _Lines(lambda text: text.strip() and chat.send(text))
    printer = _Printer(lines, args.json)
    texts = {
        lan_events.MessageDelivered: lambda e: f"[{e.nickname}] {e.text}",
        lan_events.MemberJoined: lambda e: f"* {e.nickname} joined",
        lan_events.MemberLeft: lambda e: f"* {e.nickname} left ({e.reason})",
        lan_events.MemberUnreachable: lambda e: f"* {e.nickname} is unreachable",
    }
    chat.subscribe(lambda e: printer.event(e.name, e.as_dict(),
                                           texts[type(e)](e) if type(e) in texts else None))
    try:
        await chat.start()
    except OSError as e:
        raise Fail(f"cannot join the LAN group {args.group}:{args.port}: {e}") from None
    try:
        stdio.StandardIO(lines, reactor=reactor)
        printer.event("joined", {"group": args.group, "port": args.port, "id": chat.id},
                      f"* joined {args.group}:{args.port} as {args.nickname}")
        await lines.done
        await task.deferLater(reactor, args.linger, lambda: None)  # let the last lines be acked
    finally:
        lines.close()
        await chat.stop()


def add_commands(sub):
    from imclient.lan import DEFAULT_GROUP, DEFAULT_PORT

    p = sub.add_parser("chat", help="interactive chat: incoming messages as they arrive; "
                                    "/to USER, then type lines to send", epilog=CHAT_HELP)
    p.add_argument("--to", metavar="USER", help="start talking to USER")
    p.add_argument("--wait", type=float, default=10.0,
                   help="at end of input, seconds to wait for unacknowledged sends (default 10)")
    p.set_defaults(run=cmd_chat, interactive=True)
    p = sub.add_parser("lan", help="group chat on the LAN by multicast, no server (docs/lan.rst)")
    p.add_argument("nickname")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"multicast group (default {DEFAULT_GROUP})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"UDP port (default {DEFAULT_PORT})")
    p.add_argument("--interface", default="",
                   help="local address to join on ('127.0.0.1' keeps it on this machine)")
    p.add_argument("--passphrase", help="seal the chat with this passphrase "
                                        "(or $PARLEY_LAN_PASSPHRASE)")
    p.add_argument("--linger", type=float, default=1.0,
                   help="seconds to stay after end of input so the last lines are delivered")
    p.set_defaults(run=cmd_lan, interactive=True)
