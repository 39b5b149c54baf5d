"""Builds the running server from a Config: data dir, migrations, pool, TLS, listeners; and stops it."""
import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.logger import Logger

from imserver import tls
from imserver.protocol import ImFactory
from imserver.server import Server
from imserver.store import Store, dialects
from imserver.store.migrate import migrate
from imserver.store.pool import Database

_log = Logger()


def default_listen(config):
    """Plain TCP on 127.0.0.1:5800 and TLS on 127.0.0.1:5801 with the configured or generated cert."""
    cert, key = config.tls_cert, config.tls_key
    if not cert:
        cert, key, created = tls.ensure(config.data_dir)
        if created:
            _log.info("generated a self-signed TLS certificate in {path}", path=cert)
    _log.info("TLS certificate SHA-256 fingerprint: {fp}", fp=tls.fingerprint_file(cert))
    return ["tcp:5800:interface=127.0.0.1",
            f"ssl:5801:interface=127.0.0.1:privateKey={quoteStringArgument(key)}"
            f":certKey={quoteStringArgument(cert)}"]


class ParleyService(MultiService):
    """Owns the listeners (children), the live connections and the database pool."""

    def __init__(self, server):
        super().__init__()
        self.server = server

    def startService(self):
        _log.info("Parley starting on {db}", db=self.server.store.db.dialect.describe())
        super().startService()

    def stopService(self):
        d = super().stopService()  # stop listening first

        def closed(result):
            self.server.close_connections()
            self.server.files.close()
            self.server.store.close()
            _log.info("Parley stopped")
            return result
        return d.addBoth(closed)


def make_service(config, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    os.makedirs(config.data_dir, exist_ok=True)
    dialect = dialects.from_url(config.db_url, config.data_dir)
    migrate(dialect, log=lambda text: _log.info("{text}", text=text))
    server = Server(config, Store(Database(dialect)), reactor)
    service = ParleyService(server)
    server.files.expiry_service().setServiceParent(service)
    factory = ImFactory(server)
    for description in config.listen or default_listen(config):
        child = StreamServerEndpointService(serverFromString(reactor, description), factory)
        child._raiseSynchronously = True  # a port in use fails twistd at start, not silently
        child.setServiceParent(service)
        _log.info("listening on {endpoint}", endpoint=description)
    return service
