"""``imclient``: the Parley command-line client (``imclient --help``; also ``python -m imclient``).

Each subcommand is an ``async def cmd_*(reactor, args, out)`` run under ``task.react``. Failures
are one line on stderr and a non-zero exit status: 1 for an error, 2 for bad usage. ``--json``
turns every command's output into JSON (one document; ``chat`` and ``lan`` print one JSON
object per line).
"""
import argparse
import os
import sys

from twisted.internet import defer, error, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from imclient import cli_chat, cli_files
from imclient.account import DEFAULT_HOME, Account, KnownServers
from imclient.cli_common import (
    DEFAULT_PLAIN_PORT, DEFAULT_TLS_PORT, Fail, Output, message_line, new_account, online_client,
    open_connection, read_password,
)
from imclient.client import Client, NotConnected, SessionEnded
from imclient.connect import CertificateError
from imclient.protocol import RemoteError

# Account commands.
async def cmd_register(reactor, args, out):
    account = new_account(args)
    password = read_password()
    proto = await open_connection(reactor, account)
    try:
        reply = await proto.register(account.username, password, nickname=args.nickname)
    finally:
        proto.transport.loseConnection()
    out.result({"user_id": reply["user_id"], "username": account.username},
               f"registered {account.username} (user id {reply['user_id']}) on "
               f"{account.host}:{account.port}; now: imclient login {account.username}")


async def cmd_login(reactor, args, out):
    account = new_account(args)
    client = Client(reactor, account, password=read_password())
    try:
        await client.start(give_up_after=1)
        pin = KnownServers(account.home).get(account.host, account.port) if account.tls else None
        out.result({"user_id": account.user_id, "account": account.name, "directory": account.directory,
                    "fingerprint": pin},
                   f"logged in as {account.username} (user id {account.user_id}); "
                   f"session saved in {account.directory}"
                   + (f"\nserver certificate pinned: {pin}" if pin else ""))
    finally:
        await client.close()


async def cmd_logout(reactor, args, out):
    client = await online_client(reactor, args)
    try:
        await client.logout()
        client.account.token = None
        client.account.save(make_current=False)
        out.result({"logged_out": client.account.name}, f"logged out {client.account.name}")
    finally:
        await client.close()


# Messaging.
async def cmd_send(reactor, args, out):
    client = await online_client(reactor, args)
    try:
        to = await client.resolve(args.user)
        acked = await client.send(to, " ".join(args.text))
        out.result(acked.as_dict(), f"sent to {args.user} (message {acked.msg_id})")
    finally:
        await client.close()


async def cmd_history(reactor, args, out):
    try:
        client = await online_client(reactor, args)
    except (error.ConnectError, error.ConnectionLost, NotConnected) as e:
        client = Client(reactor, Account.load(args.home, args.account))
        print(f"imclient: offline ({e.__class__.__name__}); showing the local history only",
              file=sys.stderr)
    try:
        peer = await client.resolve(args.user)
        page = await client.history(peer, before=args.before, limit=args.limit)
        messages = list(reversed(page["messages"]))
        names = await client.store.usernames()
        out.result({"peer": peer, "messages": messages, "more": page["more"]},
                   "\n".join(message_line(client, names, m) for m in messages) or "(no messages)")
    finally:
        await client.close()


# Friends and groups.
async def cmd_friends(reactor, args, out):
    client = await online_client(reactor, args)
    try:
        await _FRIEND_ACTIONS[args.action or "list"](client, args, out)
    finally:
        await client.close()


async def _friends_list(client, args, out):
    friends = await client.friends()
    lines = [f"{f['username']:<20} {f.get('status', '?'):<8} id {f['user_id']}"
             + (f"  ({f['alias']})" if f.get("alias") else "") for f in friends]
    out.result({"friends": friends}, "\n".join(lines) or "(no friends yet)")


async def _friends_requests(client, args, out):
    reply = await client.friend_requests()
    lines = [f"from {r['username']}: {r['greeting']}" for r in reply["incoming"]]
    lines += [f"to {r['username']} (waiting)" for r in reply["outgoing"]]
    out.result(reply, "\n".join(lines) or "(no pending requests)")


async def _friends_add(client, args, out):
    reply = await client.friend_request(await client.resolve(args.user), args.greeting)
    out.result(reply, f"friend request to {args.user}: {reply['status']}")


def _friend_op(op, verb):
    async def action(client, args, out):
        await getattr(client, op)(await client.resolve(args.user))
        out.result({"ok": True, "user": args.user, "action": op}, f"{verb} {args.user}")
    return action


_FRIEND_ACTIONS = {
    "list": _friends_list, "requests": _friends_requests, "add": _friends_add,
    "accept": _friend_op("friend_accept", "you and this user are now friends:"),
    "reject": _friend_op("friend_reject", "rejected the request of"),
    "remove": _friend_op("friend_remove", "no longer friends with"),
}


async def cmd_groups(reactor, args, out):
    client = await online_client(reactor, args)
    try:
        groups = await client.groups()
        out.result({"groups": groups}, "\n".join(
            f"{g.get('name', '?')}  (id {g.get('group_id', g.get('group', g.get('id')))})" for g in groups)
            or "(no groups)")
    finally:
        await client.close()


# The parser.
def _account_args(p):
    p.add_argument("username", help="your user name")
    p.add_argument("--server", metavar="HOST:PORT",
                   help=f"the server (default 127.0.0.1:{DEFAULT_TLS_PORT}, "
                        f"or :{DEFAULT_PLAIN_PORT} with --plain)")
    p.add_argument("--plain", action="store_true", help="plain TCP instead of TLS (loopback only!)")
    p.add_argument("--ca", metavar="PEM", help="verify the server against this CA instead of pinning")
    p.add_argument("--fingerprint", metavar="SHA256",
                   help="pin this certificate fingerprint instead of trusting the first one seen")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog="imclient", description=(
        "Parley command-line client. Log in once (the session, the server's address and its "
        "pinned TLS certificate are saved in --home); the other commands use the saved session."))
    parser.add_argument("--home", default=os.environ.get("PARLEY_HOME", DEFAULT_HOME),
                        help="client directory (default ~/.parley, or $PARLEY_HOME)")
    parser.add_argument("--account", metavar="NAME",
                        help="which saved account (user, or user@host_port; default: the last login)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what the client does (connections, retries) to stderr")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up on a command after this long (default 60; not for chat/lan)")
    # --json may come after the command too (imclient friends --json).
    json_after = argparse.ArgumentParser(add_help=False)
    json_after.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="machine-readable JSON output")

    class _Sub(_Parser):
        def __init__(self, **kw):
            kw["parents"] = [*kw.get("parents", ()), json_after]
            super().__init__(**kw)

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Sub)
    sub.required = True
    _add_account_commands(sub)
    _add_social_commands(sub)
    cli_files.add_commands(sub)
    cli_chat.add_commands(sub)
    return parser


def _add_account_commands(sub):
    p = sub.add_parser("register", help="create an account (reads the password from the terminal "
                                        "or stdin)")
    _account_args(p)
    p.add_argument("--nickname")
    p.set_defaults(run=cmd_register)
    p = sub.add_parser("login", help="log in and save the session (password from the terminal "
                                     "or stdin)")
    _account_args(p)
    p.add_argument("--device", help="a name for this device (shown in sessions)")
    p.set_defaults(run=cmd_login)
    sub.add_parser("logout", help="end the saved session").set_defaults(run=cmd_logout)


def _add_social_commands(sub):
    p = sub.add_parser("send", help="send a message to a friend")
    p.add_argument("user", help="user name or id")
    p.add_argument("text", nargs="+", help="the message")
    p.set_defaults(run=cmd_send)
    p = sub.add_parser("history", help="messages with a friend (local store first, then the server)")
    p.add_argument("user", help="user name or id")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--before", type=int, metavar="MSG_ID", help="only older than this message")
    p.set_defaults(run=cmd_history)

    p = sub.add_parser("friends", help="list friends; friends add|accept|reject|remove USER; "
                                       "friends requests")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=sub._parser_class)
    fsub.add_parser("list", help="your friends (the default)")
    fsub.add_parser("requests", help="pending friend requests, both ways")
    fp = fsub.add_parser("add", help="ask USER to be your friend")
    fp.add_argument("user")
    fp.add_argument("--greeting", default=None)
    for action, text in (("accept", "accept USER's request"), ("reject", "reject USER's request"),
                         ("remove", "end the friendship with USER")):
        fsub.add_parser(action, help=text).add_argument("user")
    p.set_defaults(run=cmd_friends)
    sub.add_parser("groups", help="your groups (the groups op)").set_defaults(run=cmd_groups)


def describe(exc, args):
    """One line for an exception that ended a command."""
    if isinstance(exc, RemoteError):
        if exc.code == "unknown_op":
            return f"this server does not support {args.command} yet (unknown_op: {exc.message})"
        return f"{exc.message} ({exc.code})"
    if isinstance(exc, (error.ConnectError, error.ConnectionLost, error.ConnectionDone)):
        return f"cannot reach the server: {exc}".rstrip(".")
    if isinstance(exc, (CertificateError, SessionEnded, LookupError, Fail, NotConnected, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _run(reactor, args):
    out = Output(args.json)
    work = defer.ensureDeferred(args.run(reactor, args, out))
    if not getattr(args, "interactive", False):
        work.addTimeout(args.timeout, reactor)
    try:
        await work
    except defer.TimeoutError:
        note = (" (the message stays queued and goes out with the next command)"
                if args.command == "send" else "")
        print(f"imclient: {args.command} timed out after {args.timeout:g}s{note}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as e:  # every failure becomes one line, never a traceback
        print(f"imclient: {describe(e, args)}", file=sys.stderr)
        raise SystemExit(getattr(e, "status", 1)) from None


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    task.react(lambda reactor: defer.ensureDeferred(_run(reactor, args)))
