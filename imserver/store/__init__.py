"""The store: the database, and one module of named transaction functions per domain.

Handlers run ``server.read("profile", accounts.profile, user_id)`` (or ``server.write`` for a
stream write in the next group commit) and get a Deferred; they never see SQL.
"""
from imserver.store import dialects
from imserver.store.pool import Database


class Store:
    def __init__(self, db):
        self.db = db

    @classmethod
    def from_url(cls, url, data_dir=None):
        return cls(Database(dialects.from_url(url, data_dir)))

    def close(self):
        self.db.close()
