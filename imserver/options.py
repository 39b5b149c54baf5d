"""``twistd imserver`` options: every setting documented in ``--help``, turned into a Config."""
from twisted.python import usage

from imserver.config import Config

_D = Config()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the Parley IM server. With no options: data in ./parley-data (SQLite database, "
                "files, TLS certificate made on first start), plain TCP on 127.0.0.1:5800 and TLS on "
                "127.0.0.1:5801.")

    optParameters = [
        ["data-dir", "d", _D.data_dir, "Directory for the SQLite database, stored files and TLS material "
                                       "(created on first start)."],
        ["db", None, _D.db_url, "Database URL: sqlite:///file.db (relative to --data-dir), "
                                "sqlite:////abs/path.db, or mysql://user:pass@host:3306/dbname."],
        ["tls-cert", None, None, "PEM certificate for the default TLS listener (default: a self-signed "
                                 "one generated into the data directory)."],
        ["tls-key", None, None, "PEM private key matching --tls-cert."],
        ["max-frame", None, _D.max_frame, "Largest frame a client may send, in bytes.", int],
        ["max-pending-output", None, _D.max_pending_output,
         "Bytes a client may leave unread before it is disconnected.", int],
        ["max-connections-per-user", None, _D.max_connections_per_user,
         "Live connections (devices) one user may have at once.", int],
        ["max-body", None, _D.max_body, "Longest message body, in characters.", int],
        ["max-file-size", None, _D.max_file_size, "Largest file one upload may declare, in bytes.", int],
        ["user-quota", None, _D.user_quota, "Bytes of files one user may store (0: no quota).", int],
        ["download-rate", None, _D.download_rate,
         "Bytes a second one download may take (0: unlimited).", int],
        ["upload-expiry", None, _D.upload_expiry,
         "Seconds an unfinished upload may sit idle before its partial data is removed.", float],
        ["instant-upload-scope", None, _D.instant_scope,
         "Instant upload of content the server already holds: 'global' (any user's, after a "
         "proof of possession) or 'user' (own files only). See docs/security.rst."],
        ["upload-sync", None, _D.upload_sync,
         "How a finished upload reaches the disk before it gets a file id: 'fsync' (synced; a power "
         "loss cannot lose it) or 'none' (left to the kernel: faster, but a power loss or kernel "
         "crash can lose a file whose row is committed). See docs/security.rst."],
        ["square-rate", None, _D.square_rate, "Chat square posts a second one user may make.", float],
        ["square-burst", None, _D.square_burst, "Chat square posts one user may make in a burst.", int],
        ["square-history", None, _D.square_history, "Chat square posts kept (older ones are trimmed).", int],
        ["max-group-members", None, _D.max_group_members, "Most members a group may have.", int],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint):
        """Twisted server endpoint string to listen on, e.g. tcp:5800:interface=0.0.0.0 or
        ssl:5801:privateKey=key.pem:certKey=cert.pem. Repeatable; replaces the defaults."""
        self["listen"].append(endpoint)

    def postOptions(self):
        if bool(self["tls-cert"]) != bool(self["tls-key"]):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        for name in ("max-frame", "max-pending-output", "max-connections-per-user", "max-body",
                     "square-burst", "square-history", "max-group-members"):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be positive")
        if self["square-rate"] <= 0:
            raise usage.UsageError("--square-rate must be positive")
        self._check_file_options()

    def _check_file_options(self):
        if self["instant-upload-scope"] not in ("global", "user"):
            raise usage.UsageError("--instant-upload-scope is 'global' or 'user'")
        if self["upload-sync"] not in ("fsync", "none"):
            raise usage.UsageError("--upload-sync is 'fsync' or 'none'")
        if min(self["max-file-size"], self["user-quota"], self["download-rate"]) < 0 \
                or self["upload-expiry"] <= 0:
            raise usage.UsageError("--max-file-size, --user-quota and --download-rate must not be "
                                   "negative, --upload-expiry must be positive")

    def config(self):
        return Config(data_dir=self["data-dir"], db_url=self["db"], listen=list(self["listen"]),
                      tls_cert=self["tls-cert"], tls_key=self["tls-key"],
                      max_frame=self["max-frame"], max_pending_output=self["max-pending-output"],
                      max_connections_per_user=self["max-connections-per-user"],
                      max_body=self["max-body"], square_rate=self["square-rate"],
                      square_burst=self["square-burst"], square_history=self["square-history"],
                      max_file_size=self["max-file-size"], user_quota=self["user-quota"],
                      download_rate=self["download-rate"],
                      upload_expiry=self["upload-expiry"],
                      instant_scope=self["instant-upload-scope"],
                      upload_sync=self["upload-sync"],
                      max_group_members=self["max-group-members"])
