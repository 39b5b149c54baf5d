"""``twistd -n imserver`` as a newcomer runs it: defaults, options, restart keeps accounts."""
import os
import subprocess
import sys

import pytest_twisted
from twisted.internet import reactor

from imclient.connect import connect
from serverproc import ServerProcess, free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def test_help_documents_every_option():
    out = subprocess.run([TWISTD, "imserver", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--listen", "--db", "--data-dir", "--tls-cert", "--tls-key", "--max-frame",
                   "--max-connections-per-user", "--max-pending-output"):
        assert option in out, option


@pytest_twisted.ensureDeferred
async def test_defaults_create_data_dir_and_listen_on_5800_and_5801(tmp_path):
    server = ServerProcess(tmp_path).start()
    try:
        await server.wait_listening(5800)
        await server.wait_listening(5801)
        assert (tmp_path / "parley-data" / "parley.db").exists()
        assert (tmp_path / "parley-data" / "tls-cert.pem").exists()
        fp = server.fingerprint()
        assert fp, server.log()
        c = await connect(reactor, "127.0.0.1", 5801, tls=True, fingerprint=fp)
        await c.register("nora", "correct horse")
        assert (await c.login("nora", "correct horse"))["token"]
        c.transport.loseConnection()
    finally:
        server.stop()
    assert server.proc.returncode in (0, -15)  # twistd re-raises SIGTERM after a clean stop
    assert "Parley stopped" in server.log()


@pytest_twisted.ensureDeferred
async def test_restart_keeps_accounts_on_any_db(tmp_path, db_url):
    port = free_port()
    args = ["--data-dir", str(tmp_path / "data"), "--db", db_url, "--listen",
            f"tcp:{port}:interface=127.0.0.1"]
    server = ServerProcess(tmp_path, args, port).start()
    try:
        await server.wait_listening()
        c = await connect(reactor, "127.0.0.1", port)
        uid = (await c.register("olga", "correct horse"))["user_id"]
    finally:
        server.stop()
    server = ServerProcess(tmp_path, args, port).start()
    try:
        await server.wait_listening()
        c = await connect(reactor, "127.0.0.1", port)
        assert (await c.login("olga", "correct horse"))["user_id"] == uid
        c.transport.loseConnection()
    finally:
        server.stop()


def test_admin_migrate_adduser_gencert(tmp_path):
    env = dict(os.environ)
    base = [sys.executable, "-m", "imserver.admin", "--data-dir", str(tmp_path)]
    out = subprocess.run(base + ["migrate"], capture_output=True, text=True, check=True, env=env).stdout
    assert "0001_accounts.sql" in out
    out = subprocess.run(base + ["adduser", "paul"], input="correct horse\n", capture_output=True,
                         text=True, check=True).stdout
    assert "created paul" in out
    again = subprocess.run(base + ["adduser", "paul"], input="correct horse\n", capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
    out = subprocess.run(base + ["gencert"], capture_output=True, text=True, check=True).stdout
    assert "SHA-256 fingerprint:" in out
