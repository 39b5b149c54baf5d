"""A MariaDB restart mid-run: requests get ``unavailable``, then the pool recovers by itself.

The test runs its own throw-away MariaDB server (same binaries as scripts/dev-services installs)
on a free loopback port, so stopping it disturbs nobody else's database.
"""
import shutil
import signal
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from conftest import RunningServer, make_server
from imclient.protocol import RemoteError
from imserver.store import Store, dialects
from imserver.store.migrate import migrate
from imserver.store.pool import Database
from serverproc import free_port

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


class PrivateMariaDB:
    def __init__(self, root):
        self.root = str(root)
        self.port = free_port()
        self.proc = None
        subprocess.run(["mariadb-install-db", f"--datadir={self.root}/data", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)

    def start(self):
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.root}/data", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root}/sock", f"--pid-file={self.root}/pid",
             "--user=root", "--skip-grant-tables", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.root}/err.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run(["mysqladmin", "-uroot", "-h127.0.0.1", f"-P{self.port}", "ping"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"private MariaDB did not start; see {self.root}/err.log")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture
def private_db(tmp_path):
    if not shutil.which("mariadb-install-db"):
        pytest.fail("mariadb-install-db not found: run scripts/dev-services to install MariaDB",
                    pytrace=False)
    db = PrivateMariaDB(tmp_path / "mariadb")
    db.start()
    subprocess.run(["mysql", "-uroot", "-h127.0.0.1", f"-P{db.port}", "-e", "CREATE DATABASE parley"],
                   check=True)
    yield db
    db.stop()


@pytest_twisted.ensureDeferred
async def test_mariadb_restart_gives_unavailable_then_recovers(private_db, tmp_path):
    dialect = dialects.from_url(f"mysql://root@127.0.0.1:{private_db.port}/parley")
    migrate(dialect, log=lambda t: None)
    store = Store(Database(dialect))
    running = RunningServer(make_server(store), tmp_path)
    running.listen()
    try:
        alice = await running.user("alice")
        assert (await alice.request("profile_get"))["ok"]
        await threads.deferToThread(private_db.stop)
        with pytest.raises(RemoteError) as info:
            await alice.request("profile_get")
        assert info.value.code == "unavailable"
        assert (await alice.request("ping"))["ok"]  # the server itself stays up
        await threads.deferToThread(private_db.start)
        for _ in range(100):
            try:
                reply = await alice.request("profile_get")
                break
            except RemoteError as e:
                assert e.code == "unavailable"
                await task.deferLater(reactor, 0.1, lambda: None)
        else:
            raise AssertionError("the pool did not recover after MariaDB came back")
        assert reply["profile"]["username"] == "alice"
        # New logins work too, on fresh pooled connections.
        assert (await (await running.client()).login("alice", "correct horse"))["user_id"]
    finally:
        await running.stop()
        store.close()
