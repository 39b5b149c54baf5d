"""The twistd entry point the plugin names: ``Options`` and ``makeService``."""
from imserver.options import Options  # noqa: F401  (twistd reads it from this module)
from imserver.service import make_service


def makeService(options):
    return make_service(options.config())
