"""Real TLS handshakes against the generated certificate: pinned right, pinned wrong."""
import pytest
import pytest_twisted
from twisted.internet import reactor

from imclient.connect import CertificateError, connect
from imserver import tls


def test_generated_certificate_fingerprint(tmp_path):
    cert, key, created = tls.ensure(str(tmp_path))
    assert created
    fp = tls.fingerprint_file(cert)
    assert len(tls.normalize_fingerprint(fp)) == 64
    # A second start reuses the same material.
    assert tls.ensure(str(tmp_path)) == (cert, key, False)
    assert tls.fingerprint_file(cert) == fp
    assert oct((tmp_path / "tls-key.pem").stat().st_mode & 0o777) == "0o600"


@pytest_twisted.ensureDeferred
async def test_tls_login_with_pinned_fingerprint(running):
    c = await running.client(tls=True)
    await c.register("tina", "correct horse")
    assert (await c.login("tina", "correct horse"))["user_id"]


@pytest_twisted.ensureDeferred
async def test_wrong_pin_refuses_to_connect(running):
    wrong = "AA:" * 31 + "AA"
    with pytest.raises(CertificateError):
        await connect(reactor, "127.0.0.1", running.tls_port, tls=True, fingerprint=wrong)


@pytest_twisted.ensureDeferred
async def test_ca_verification_with_service_identity(running):
    with open(running.cert_path, "rb") as f:
        pem = f.read()
    # The self-signed certificate is its own CA; its names are localhost and 127.0.0.1.
    c = await connect(reactor, "localhost", running.tls_port, tls=True, ca_pem=pem)
    assert c.server_info["ok"]
    c.transport.loseConnection()
    with pytest.raises(CertificateError):
        await connect(reactor, "127.0.0.1", running.tls_port, tls=True, ca_pem=_other_ca(tmp=running.tmp_path))


def _other_ca(tmp):
    d = tmp / "other"
    d.mkdir()
    cert, _, _ = tls.ensure(str(d))
    return open(cert, "rb").read()
