"""The interpreter settings ``twistd imserver`` applies after start-up (imserver/runtime.py).

They change process-wide state (``gc.freeze`` cannot be undone), so they are applied in a
child interpreter, not in the test process."""
import json
import subprocess
import sys

from imserver import runtime

PROBE = """
import gc, json, sys
from imserver.runtime import tune_for_server
before = sys.getswitchinterval()
tune_for_server()
print(json.dumps({"before": before, "switch": sys.getswitchinterval(),
                  "thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_tune_for_server_sets_the_collector_and_the_switch_interval():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         timeout=60)
    got = json.loads(out.stdout)
    assert got["before"] == 0.005  # CPython's default, which the server shortens
    assert abs(got["switch"] - runtime.SWITCH_INTERVAL) < 1e-9
    assert tuple(got["thresholds"]) == runtime.THRESHOLDS
    assert got["frozen"] > 0  # start-up objects moved to the permanent generation
