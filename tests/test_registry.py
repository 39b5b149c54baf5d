"""LocalRegistry fan-out: one encoding per push, every device, the sender's connection excluded."""
from types import SimpleNamespace

from imserver.registry import LocalRegistry


class FakeConnection:
    def __init__(self):
        self.frames = []

    def write_frame(self, data):
        self.frames.append(data)


def test_push_many_encodes_once_and_skips_offline_users_and_the_excluded_connection():
    registry = LocalRegistry()
    conns = {}
    for user_id, devices in ((1, 2), (2, 1), (3, 1)):
        for device in range(devices):
            conn = conns[(user_id, device)] = FakeConnection()
            registry.attach(SimpleNamespace(user_id=user_id, session_id=device), conn)
    sent = registry.push_many([1, 2, 3, 99], {"op": "group_message", "body": "hi"}, exclude=conns[(3, 0)])
    assert sent == 3
    frames = [c.frames for c in conns.values()]
    assert frames[-1] == [] and all(len(f) == 1 for f in frames[:-1])
    assert len({id(f[0]) for f in frames[:-1]}) == 1  # the same bytes object went to every device
    assert registry.push_many([99], {"op": "x"}) == 0
