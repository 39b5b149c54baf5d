"""Interpreter settings for a long-running server process: the garbage collector and the GIL.

CPython's cyclic collector runs a young-generation pass every 700 net allocations and, every
tenth and hundredth of those, older passes that walk every tracked object in those generations.
A busy server allocates a few dozen short-lived objects per message (decoded requests, reply
dicts, Deferreds), so with the defaults the collector ran thousands of times a second and walked
the whole heap of imported modules over and over: in ``bench/load.py`` (MariaDB, 100 pairs,
window 50) it was about a quarter of the server's CPU per message (41 µs with the defaults, 29 µs
with these settings, the same as with the collector off).

Two changes, both standard for servers: objects that exist once start-up is done (modules,
classes, configuration) are moved to the permanent generation with ``gc.freeze()`` so no
collection walks them again, and the young-generation threshold is raised so passes are rarer
(each pass still frees every unreachable cycle; only how often it looks changes).

The GIL switch interval is shortened from 5 ms to 0.2 ms. The reactor thread runs Python almost
all the time under load, and a pool thread that has a database reply to process waits for the
GIL until the reactor thread gives it up at a system call or is asked to after the switch
interval. Each group-commit batch makes several round trips, so those waits add up on every
message's way. In ``bench/load.py`` (MariaDB, open loop at 20,000 msgs/s, alternating): 0.5 ms
against 5 ms gave p99 52.1 against 57.8 ms (medians of five runs each), and 0.2 ms against
0.5 ms gave p99 53.1 against 69.3 ms and p50 about 27 against 37 ms (six invocations of three
runs each; 0.2 ms was better in four). 0.1 ms was worse than both. The closed-loop rate did not
change (medians of three: 37,633, 43,533 and 45,350 msgs/s with 0.2 ms against 34,483, 36,117
and 45,133 with 0.5 ms).
"""
import gc
import sys

#: (young, middle, old) thresholds; see ``gc.set_threshold``.
THRESHOLDS = (50_000, 20, 100)
#: Seconds a thread may hold the GIL while another waits for it; see ``sys.setswitchinterval``.
SWITCH_INTERVAL = 0.0002


def tune_for_server(thresholds=THRESHOLDS, switch_interval=SWITCH_INTERVAL):
    """Freeze what start-up allocated, space out collections and shorten the GIL switch
    interval. Call once, after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(switch_interval)
