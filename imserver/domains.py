"""The domains a server runs, listed once: ``Server`` builds its op table, batch kinds, stream
sources and login hooks from this list (or from the list it is given)."""
from imserver.handlers import accounts, core, files, friends, groups, messages, presence, square, stream

DEFAULT = (core.domain, accounts.domain, stream.domain, friends.domain, presence.domain,
           messages.domain, groups.domain, files.domain, square.domain)
