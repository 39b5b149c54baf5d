"""The store: one object over the database, one attribute per domain.

Handlers call ``store.accounts.create_user(...)`` and get a Deferred; they never see SQL.
"""
from imserver.store import dialects
from imserver.store.accounts import Accounts
from imserver.store.files import Files
from imserver.store.pool import Database


class Store:
    def __init__(self, db):
        self.db = db
        self.accounts = Accounts(db)
        self.files = Files(db)

    @classmethod
    def from_url(cls, url, data_dir=None):
        return cls(Database(dialects.from_url(url, data_dir)))

    def close(self):
        self.db.close()
