"""Op handlers, one module per domain; importing this package registers every op in ``ops``.

A domain that must react to server events (a login, a user going offline) exposes
``install(server)``; ``install_hooks`` calls each when a Server is built.
"""
from imserver.dispatch import OpTable

ops = OpTable()

from imserver.handlers import accounts, core, files, friends, messages, presence  # noqa: E402
from imserver.handlers import groups, square  # noqa: E402

_INSTALLERS = [friends.install, presence.install, groups.install, square.install]


def install_hooks(server):
    for install in _INSTALLERS:
        install(server)
