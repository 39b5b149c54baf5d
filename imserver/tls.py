"""TLS material: a self-signed certificate made on first start, and its SHA-256 fingerprint.

Clients pin the fingerprint the server logs at start-up (or verify a CA-issued certificate).
"""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def generate(cert_path, key_path, hostnames=("localhost",), ips=("127.0.0.1", "::1"), days=3650):
    """Write a new EC P-256 key and a self-signed certificate for the given names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Parley self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def ensure(data_dir):
    """(cert_path, key_path, created) in ``data_dir``, generating them if either is missing."""
    cert_path = os.path.join(data_dir, "tls-cert.pem")
    key_path = os.path.join(data_dir, "tls-key.pem")
    created = not (os.path.exists(cert_path) and os.path.exists(key_path))
    if created:
        generate(cert_path, key_path)
    return cert_path, key_path, created


def fingerprint_pem(pem):
    """SHA-256 of the certificate's DER form, as colon-separated upper-case hex."""
    cert = x509.load_pem_x509_certificate(pem)
    return format_fingerprint(cert.fingerprint(hashes.SHA256()))


def fingerprint_file(path):
    with open(path, "rb") as f:
        return fingerprint_pem(f.read())


def format_fingerprint(digest):
    return ":".join(f"{b:02X}" for b in digest)


def normalize_fingerprint(text):
    """Accept AB:CD..., abcd..., or sha256/AB:CD...; return 64 upper-case hex digits."""
    text = text.strip()
    if text.lower().startswith("sha256/") or text.lower().startswith("sha256:"):
        text = text[7:]
    hexdigits = text.replace(":", "").replace(" ", "").upper()
    if len(hexdigits) != 64 or any(c not in "0123456789ABCDEF" for c in hexdigits):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return hexdigits
