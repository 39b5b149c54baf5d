"""Op handlers, one module per domain; importing this package registers every op in ``ops``."""
from imserver.dispatch import OpTable

ops = OpTable()

from imserver.handlers import accounts, core  # noqa: E402,F401  (registers their ops)
from imserver.handlers import files  # noqa: E402,F401
