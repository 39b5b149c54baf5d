"""Shared fixtures: a database of each dialect, a real server on loopback, and clients.

Every store-touching test runs on SQLite and on MySQL/MariaDB (``db_url`` is parametrized). The
MySQL URL comes from PARLEY_TEST_MYSQL (default: root on 127.0.0.1:3306, database parley_test, as
``scripts/dev-services`` sets up). When MySQL cannot be reached the MySQL tests FAIL; a developer
without MariaDB may set PARLEY_SKIP_MYSQL=1 to deselect them (never in CI).
"""
import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from imserver import tls
from imserver.auth import PasswordHasher
from imserver.config import Config
from imserver.protocol import ImFactory
from imserver.server import Server
from imserver.store import Store, dialects
from imserver.store.migrate import migrate
from imserver.store.pool import Database
from imclient.connect import connect

# One database per test process, so parallel runs on one MariaDB never reset each other's tables.
MYSQL_URL = os.environ.get("PARLEY_TEST_MYSQL", "mysql://root@127.0.0.1:3306/parley_test") \
    + f"_{os.getpid()}"
DIALECTS = ["sqlite", "mysql"]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PARLEY_SKIP_MYSQL") == "1" and not os.environ.get("CI"):
        keep = [i for i in items if "[mysql" not in i.nodeid and "-mysql" not in i.nodeid]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


def reset_mysql(url):
    """Drop and recreate the test database so each test starts from an empty schema."""
    import pymysql

    d = dialects.from_url(url)
    conn = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password,
                           connect_timeout=3, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{d.database}`")
        cur.execute(f"CREATE DATABASE `{d.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()


def fresh_db_url(kind, tmp_path):
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/parley.db"
    try:
        reset_mysql(MYSQL_URL)
    except Exception as e:
        pytest.fail(f"MySQL/MariaDB at {MYSQL_URL} is not reachable ({e}); run scripts/dev-services "
                    "(or set PARLEY_SKIP_MYSQL=1 outside CI)", pytrace=False)
    return MYSQL_URL


@pytest.fixture(scope="session", autouse=True)
def _drop_mysql_test_database():
    yield
    try:
        import pymysql

        d = dialects.from_url(MYSQL_URL)
        conn = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password,
                               connect_timeout=3, autocommit=True)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{d.database}`")
        conn.close()
    except Exception:
        pass  # MySQL was never reachable; the MySQL tests have already failed and said why


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path):
    """A fresh, empty database of each dialect (``indirect`` parametrization picks one)."""
    return fresh_db_url(request.param, tmp_path)


@pytest.fixture
def store(db_url, tmp_path):
    dialect = dialects.from_url(db_url, str(tmp_path))
    migrate(dialect, log=lambda t: None)
    s = Store(Database(dialect))
    yield s
    s.close()


class RunningServer:
    """A real server listening on loopback (plain and TLS), with helpers to connect clients."""

    def __init__(self, server, tmp_path):
        self.server = server
        self.tmp_path = tmp_path
        self.ports = []
        self.clients = []
        cert, key, _ = tls.ensure(str(tmp_path))
        self.cert_path, self.key_path = cert, key
        self.fingerprint = tls.fingerprint_file(cert)

    def listen(self):
        from twisted.internet import ssl

        factory = ImFactory(self.server)
        tcp = reactor.listenTCP(0, factory, interface="127.0.0.1")
        with open(self.key_path, "rb") as k, open(self.cert_path, "rb") as c:
            cert = ssl.PrivateCertificate.loadPEM(k.read() + c.read())
        tls_port = reactor.listenSSL(0, factory, cert.options(), interface="127.0.0.1")
        self.ports = [tcp, tls_port]
        self.port = tcp.getHost().port
        self.tls_port = tls_port.getHost().port

    async def client(self, tls=False, fingerprint=None):
        if tls:
            proto = await connect(reactor, "127.0.0.1", self.tls_port, tls=True,
                                  fingerprint=fingerprint or self.fingerprint)
        else:
            proto = await connect(reactor, "127.0.0.1", self.port)
        self.clients.append(proto)
        return proto

    async def user(self, username, password="correct horse", device=None, register=True):
        """A connected, logged-in client for ``username`` (registered first if asked)."""
        c = await self.client()
        if register:
            await c.register(username, password)
        reply = await c.login(username, password, device=device)
        c.user_id, c.token = reply["user_id"], reply["token"]
        return c

    async def stop(self):
        """Stop listening and close every connection, leaving the reactor clean for the next test."""
        for c in self.clients:
            if c.transport is not None and c.connected:
                c.transport.abortConnection()
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        self.server.close_connections()
        for _ in range(500):
            if not self.server.connections.all and all(c.lost.called for c in self.clients):
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        await task.deferLater(reactor, 0, lambda: None)


def make_server(store, config=None, **kw):
    config = config or Config(max_frame=64 * 1024)
    # Small scrypt parameters keep the suite fast; test_auth checks the real ones.
    hasher = PasswordHasher(reactor, n=2 ** 10)
    return Server(config, store, reactor, hasher=hasher, **kw)


@pytest.fixture
def running(store, tmp_path):
    rs = RunningServer(make_server(store), tmp_path)
    rs.listen()
    yield rs
    pytest_twisted.blockon(defer.ensureDeferred(rs.stop()))
