"""Where a client keeps things on disk: the home directory, its accounts, and its TLS pins.

Layout of a home (default ``~/.parley``)::

    known_servers.json           {"host:port": "AB:CD:..."}: pins, trust on first use
    current                      the name of the account used when none is given
    accounts/<user>@<host>_<port>/
        account.json             server address, TLS settings, user id, session token (0600)
        store.sqlite             the local store (imclient.store)
"""
import dataclasses
import json
import os

from imclient.connect import format_fingerprint, normalize_fingerprint

DEFAULT_HOME = os.path.join(os.path.expanduser("~"), ".parley")


def _write_private(path, data):
    """Write ``data`` (text) so that only the owner can read it, replacing the file atomically."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


class KnownServers:
    """The pinned certificate fingerprint of each server this home has talked to over TLS."""

    def __init__(self, home):
        self.path = os.path.join(home, "known_servers.json")

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def get(self, host, port):
        return self._load().get(f"{host}:{port}")

    def remember(self, host, port, fingerprint):
        pins = self._load()
        pins[f"{host}:{port}"] = format_fingerprint(normalize_fingerprint(fingerprint))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _write_private(self.path, json.dumps(pins, indent=1, sort_keys=True) + "\n")

    def forget(self, host, port):
        pins = self._load()
        if pins.pop(f"{host}:{port}", None) is not None:
            _write_private(self.path, json.dumps(pins, indent=1, sort_keys=True) + "\n")
            return True
        return False


@dataclasses.dataclass
class Account:
    """One user on one server, as this home knows it.

    ``tls``: connect with TLS (default); ``ca_file``: verify the server against this CA (PEM)
    instead of pinning its certificate; ``fingerprint``: pin this certificate instead of trusting
    the first one seen."""

    home: str
    username: str
    host: str
    port: int
    tls: bool = True
    ca_file: str | None = None
    fingerprint: str | None = None
    user_id: int | None = None
    token: str | None = None
    device: str | None = None
    #: The directory name it was loaded from (it stays put if the server's address is edited).
    loaded_as: str | None = dataclasses.field(default=None, compare=False)

    @property
    def name(self):
        return self.loaded_as or f"{self.username}@{self.host}_{self.port}"

    @property
    def directory(self):
        return os.path.join(self.home, "accounts", self.name)

    @property
    def store_path(self):
        return os.path.join(self.directory, "store.sqlite")

    def save(self, make_current=True):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("home", "loaded_as")}
        _write_private(os.path.join(self.directory, "account.json"), json.dumps(data, indent=1) + "\n")
        if make_current:
            _write_private(os.path.join(self.home, "current"), self.name + "\n")

    @classmethod
    def load(cls, home, name=None):
        """The account called ``name`` (``user@host_port``, or just ``user`` if only one server
        has that user), or the current one. Raises LookupError with a sentence if there is none."""
        name = name or _read(os.path.join(home, "current"))
        if not name:
            raise LookupError(f"no account in {home}: log in first (imclient login USER --server HOST:PORT)")
        directory = os.path.join(home, "accounts", name)
        if not os.path.isdir(directory):
            matches = [n for n in _list(os.path.join(home, "accounts")) if n.split("@")[0] == name]
            if len(matches) != 1:
                raise LookupError(f"no account {name!r} in {home}" if not matches else
                                  f"{name!r} is ambiguous: {', '.join(matches)}")
            directory = os.path.join(home, "accounts", matches[0])
        with open(os.path.join(directory, "account.json"), encoding="utf-8") as f:
            return cls(home=home, loaded_as=os.path.basename(directory), **json.load(f))


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _list(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
