"""Administration on the same database URL as the server: ``python -m imserver.admin ...``.

  migrate   apply pending schema migrations
  adduser   create an account (password read from stdin or prompted)
  gencert   generate a self-signed TLS certificate and print its fingerprint
"""
import argparse
import getpass
import os
import sys
import time

from imserver import tls
from imserver.auth import PasswordHasher
from imserver.config import Config
from imserver.account_rules import MIN_PASSWORD, USERNAME, USERNAME_RULE
from imserver.store import dialects
from imserver.store.migrate import migrate


def _dialect(args):
    os.makedirs(args.data_dir, exist_ok=True)
    return dialects.from_url(args.db, args.data_dir)


def cmd_migrate(args):
    applied = migrate(_dialect(args), log=lambda t: print(t))
    print(f"schema up to date ({len(applied)} migration(s) applied)")


def cmd_adduser(args):
    username = args.username.strip().lower()
    if not USERNAME.match(username):
        sys.exit(f"adduser: {USERNAME_RULE}")
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
    if len(password) < MIN_PASSWORD:
        sys.exit(f"adduser: password must be at least {MIN_PASSWORD} characters")
    dialect = _dialect(args)
    migrate(dialect, log=lambda t: None)
    hashed = PasswordHasher._hash_sync(password, os.urandom(16), *_params())
    conn = dialect.connect()
    try:
        cur = conn.cursor()
        cur.execute(dialect.sql("SELECT id FROM users WHERE username = ?"), (username,))
        if cur.fetchone():
            sys.exit(f"adduser: {username} exists")
        cur.execute(dialect.sql("INSERT INTO users (username, password_hash, nickname, created) "
                                "VALUES (?, ?, ?, ?)"),
                    (username, hashed, args.nickname or username, int(time.time() * 1000)))
        conn.commit()
        print(f"created {username} (id {cur.lastrowid})")
    finally:
        conn.close()


def _params():
    from imserver.auth import SCRYPT_N, SCRYPT_P, SCRYPT_R
    return SCRYPT_N, SCRYPT_R, SCRYPT_P


def cmd_gencert(args):
    os.makedirs(args.data_dir, exist_ok=True)
    cert = os.path.join(args.data_dir, "tls-cert.pem")
    key = os.path.join(args.data_dir, "tls-key.pem")
    tls.generate(cert, key, hostnames=tuple(args.hostname or ["localhost"]))
    print(f"wrote {cert} and {key}")
    print(f"SHA-256 fingerprint: {tls.fingerprint_file(cert)}")


def main(argv=None):
    d = Config()
    parser = argparse.ArgumentParser(prog="python -m imserver.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=d.data_dir)
    parser.add_argument("--db", default=d.db_url, help="same URL as twistd imserver --db")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply pending migrations").set_defaults(fn=cmd_migrate)
    p = sub.add_parser("adduser", help="create an account")
    p.add_argument("username")
    p.add_argument("--nickname")
    p.set_defaults(fn=cmd_adduser)
    p = sub.add_parser("gencert", help="generate a self-signed TLS certificate")
    p.add_argument("--hostname", action="append")
    p.set_defaults(fn=cmd_gencert)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except Exception as e:  # one clear line for an operator, not a traceback
        sys.exit(f"{args.cmd}: {e}")


if __name__ == "__main__":
    main()
