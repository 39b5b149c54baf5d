"""Every server setting in one dataclass, with its default; ``options.py`` fills it from twistd."""
from dataclasses import dataclass, field


@dataclass
class Config:
    data_dir: str = "parley-data"
    #: sqlite:///relative-to-data-dir.db, sqlite:////absolute.db or mysql://user:pass@host:port/db
    db_url: str = "sqlite:///parley.db"
    #: Twisted endpoint strings; empty means the defaults (TCP 5800 and TLS 5801 on 127.0.0.1).
    listen: list = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Largest frame (length prefix excluded) a client may send.
    max_frame: int = 1024 * 1024
    #: Bytes a client may leave unread before it is disconnected.
    max_pending_output: int = 8 * 1024 * 1024
    max_connections_per_user: int = 8
    #: Longest message body, in characters.
    max_body: int = 4000
    #: Largest file one upload may declare, in bytes.
    max_file_size: int = 4 * 1024 ** 3
    #: Bytes of files (and unfinished uploads) one user may hold; 0 means no quota.
    user_quota: int = 20 * 1024 ** 3
    #: Bytes a second one download may take; 0 means unlimited. See ``imserver.policy``.
    download_rate: int = 0
    #: Seconds an unfinished upload may sit idle before it and its partial data are removed.
    upload_expiry: float = 24 * 3600.0
    #: Instant upload of content the server holds: "global" (any user's, after a proof of
    #: possession) or "user" (only the user's own files). See docs/security.rst.
    instant_scope: str = "global"
    #: How a finished upload reaches the disk before it gets a file id: "fsync" (synced, so a
    #: power loss cannot lose a committed file) or "none" (left to the kernel's writeback; only
    #: where the storage is otherwise protected). See docs/security.rst.
    upload_sync: str = "fsync"
    #: Chat square: posts a second per user, the burst allowed, and how many posts are kept.
    square_rate: float = 1.0
    square_burst: int = 5
    square_history: int = 1000
    #: Most members a group may have (every group message is pushed to each of them).
    max_group_members: int = 500

    def limits(self):
        return {"max_frame": self.max_frame, "max_body": self.max_body,
                "max_connections_per_user": self.max_connections_per_user}
