"""What each user is allowed: storage quota and transfer rate, asked per user.

Answers come in Deferreds so that a per-user source (the tier table of the drive's VIP tiers)
can replace today's server-wide values from ``Config`` without changing any caller.
"""
from twisted.internet import defer


class Policy:
    """Server-wide limits from ``Config``: ``user_quota`` and ``download_rate``."""

    def __init__(self, config):
        self.config = config

    def quota(self, user_id):
        """A Deferred of the bytes ``user_id`` may store (files and unfinished uploads); 0: none."""
        return defer.succeed(self.config.user_quota)

    def download_rate(self, user_id):
        """A Deferred of the bytes a second one download of ``user_id``'s may take; 0: unlimited."""
        return defer.succeed(self.config.download_rate)
