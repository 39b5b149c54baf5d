"""Schema migrations: numbered SQL files in ``sql/<dialect>/NNNN_name.sql``, applied in order.

Runs synchronously on a plain DB-API connection (at start-up, before the reactor runs, and from
``python -m imserver.admin migrate``), recording each applied file in ``schema_version``.
"""
import re
import sys
import time
from pathlib import Path

_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")

_VERSION_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version "
              "(version INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL, applied BIGINT NOT NULL)",
    "mysql": "CREATE TABLE IF NOT EXISTS schema_version "
             "(version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied BIGINT NOT NULL)"
             " ENGINE=InnoDB",
}


def sql_dir():
    """Where the migrations are: the checkout's ``sql/``, or the installed share directory."""
    for candidate in (Path(__file__).resolve().parents[2] / "sql",
                      Path(sys.prefix) / "share" / "parley" / "sql"):
        if (candidate / "sqlite").is_dir():
            return candidate
    raise RuntimeError("cannot find Parley's sql/ directory")


def migrations(dialect_name, root=None):
    """[(version, name, [statements])] for a dialect, in order."""
    root = Path(root or sql_dir()) / dialect_name
    out = []
    for path in sorted(root.iterdir()):
        m = _FILE.match(path.name)
        if m:
            out.append((int(m.group(1)), path.name, split_statements(path.read_text("utf-8"))))
    return out


def split_statements(text):
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def applied_versions(conn, dialect):
    cur = conn.cursor()
    cur.execute(_VERSION_TABLE[dialect.name])
    conn.commit()
    cur.execute("SELECT version FROM schema_version")
    return {row[0] for row in cur.fetchall()}


def migrate(dialect, log=print, upto=None):
    """Apply every migration not yet recorded (up to version ``upto``, if given: a schema as an
    older release left it); return the list of names applied."""
    conn = dialect.connect()
    try:
        done = applied_versions(conn, dialect)
        applied = []
        for version, name, statements in migrations(dialect.name):
            if version in done or (upto is not None and version > upto):
                continue
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
            cur.execute(dialect.sql("INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)"),
                        (version, name, int(time.time() * 1000)))
            conn.commit()
            applied.append(name)
            log(f"applied migration {name}")
        return applied
    finally:
        conn.close()
