"""The store: one object over the database.

Domains are modules of named transaction functions, run as ``store.db.run("desc", fn, *args)``
(``store.accounts`` is still an object); handlers get a Deferred and never see SQL.
"""
from imserver.store import dialects
from imserver.store.accounts import Accounts
from imserver.store.pool import Database


class Store:
    def __init__(self, db):
        self.db = db
        self.accounts = Accounts(db)

    @classmethod
    def from_url(cls, url, data_dir=None):
        return cls(Database(dialects.from_url(url, data_dir)))

    def close(self):
        self.db.close()
