"""twistd plugin for the Parley server: ``twistd -n imserver``.

Only a name and a module path live here, so that ``twistd --help`` imports no server code.
"""
from twisted.application.service import ServiceMaker

Parley = ServiceMaker(
    "Parley IM server",
    "imserver.tap",
    "Parley instant-messaging server (JSON over length-prefixed frames, TCP and TLS).",
    "imserver",
)
