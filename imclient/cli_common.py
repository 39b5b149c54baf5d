"""What the ``imclient`` commands share: the failure type, output, the account and connection
helpers and the text of a message line. ``cli``, ``cli_chat`` and ``cli_files`` import this; it
imports none of them, so the command modules form no cycle.
"""
import getpass
import json
import sys
import time

from imclient.account import Account, KnownServers
from imclient.client import Client
from imclient.connect import connect

DEFAULT_TLS_PORT, DEFAULT_PLAIN_PORT = 5801, 5800


class Fail(Exception):
    """A failure to report as one line, with an exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class Output:
    """Prints either human text or JSON; ``stream`` is stdout."""

    def __init__(self, as_json, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def result(self, data, text):
        self.line(json.dumps(data, ensure_ascii=False) if self.as_json else text)

    def line(self, text):
        self.stream.write(text + "\n")
        self.stream.flush()


def parse_server(text, plain):
    host, _, port = (text or "").rpartition(":")
    if not text:
        return "127.0.0.1", DEFAULT_PLAIN_PORT if plain else DEFAULT_TLS_PORT
    if not host or not port.isdigit():
        raise Fail(f"--server wants HOST:PORT, not {text!r}", 2)
    return host.strip("[]"), int(port)


def read_password(prompt="Password: "):
    """From the terminal without echo, or the first line of stdin when it is not a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise Fail("no password on stdin")
    return line.rstrip("\r\n")


def new_account(args):
    host, port = parse_server(args.server, args.plain)
    return Account(home=args.home, username=args.username.lower(), host=host, port=port,
                   tls=not args.plain, ca_file=args.ca, fingerprint=args.fingerprint,
                   device=getattr(args, "device", None))


async def open_connection(reactor, account):
    """A bare connection (for ``register``), with the same TLS trust rules as a Client."""
    if not account.tls:
        return await connect(reactor, account.host, account.port)
    if account.ca_file:
        with open(account.ca_file, "rb") as f:
            return await connect(reactor, account.host, account.port, tls=True, ca_pem=f.read())
    known = KnownServers(account.home)
    pin = account.fingerprint or known.get(account.host, account.port)
    proto = await connect(reactor, account.host, account.port, tls=True, fingerprint=pin, tofu=not pin)
    if not pin:
        known.remember(account.host, account.port, proto.peer_fingerprint)
    return proto


async def online_client(reactor, args, **kw):
    """The saved account's Client, online (one connection attempt), or a Fail."""
    try:
        account = Account.load(args.home, args.account)
    except LookupError as e:
        raise Fail(str(e)) from None
    client = Client(reactor, account, **kw)
    try:
        await client.start(give_up_after=1)
    except BaseException:
        await client.close()
        raise
    return client


def when(ms):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def name_of(client, names, user_id):
    """A user's name for a line of text (``names``: the local store's ``usernames()``)."""
    if user_id == client.me:
        return client.account.username
    return names.get(user_id) or f"#{user_id}"


def message_line(client, names, m):
    return f"{when(m['ts'])}  {name_of(client, names, m['from'])}: {m['body']}"
