"""The twistd entry point the plugin names: ``Options`` and ``makeService``."""
from imserver.runtime import tune_for_server
from imserver.options import Options  # noqa: F401  (twistd reads it from this module)
from imserver.service import make_service


def makeService(options):
    service = make_service(options.config())
    tune_for_server()  # start-up is done: this process now serves for as long as it runs
    return service
