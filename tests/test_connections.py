"""Connections and LocalNotifier: one encoding per fan-out, every device, the origin excluded;
topics, sessions ended, and what a logout takes with it."""
from types import SimpleNamespace

from imserver.connections import Connections
from imserver.notifier import LocalNotifier


class FakeConnection:
    def __init__(self):
        self.frames = []
        self.connected = True
        self.closed = False

    def write_frame(self, data):
        self.frames.append(data)

    def close(self):
        self.closed = True


def _attached(layout):
    connections, conns = Connections(), {}
    for user_id, devices in layout:
        for device in range(devices):
            conn = conns[(user_id, device)] = FakeConnection()
            connections.attach(SimpleNamespace(user_id=user_id, session_id=device), conn)
    return connections, conns


def test_new_entries_encode_once_and_skip_offline_users_and_the_excluded_connection():
    connections, conns = _attached(((1, 2), (2, 1), (3, 1)))
    notifier = LocalNotifier(connections)
    sent = notifier.new_entries([1, 2, 3, 99], {"op": "group_message", "body": "hi"}, exclude=conns[(3, 0)])
    assert sent == 3
    frames = [c.frames for c in conns.values()]
    assert frames[-1] == [] and all(len(f) == 1 for f in frames[:-1])
    assert len({id(f[0]) for f in frames[:-1]}) == 1  # the same bytes object went to every device
    assert notifier.new_entries([99], {"op": "x"}) == 0


def test_nothing_is_encoded_when_no_recipient_is_connected_here():
    connections, _ = _attached(((1, 1),))
    unencodable = {"op": object()}  # encoding it would raise
    assert connections.write_users([7, 8], unencodable) == 0


def test_observers_hear_the_first_device_arrive_and_the_last_leave():
    connections, heard = Connections(), []
    connections.add_observer(lambda user_id, online: heard.append((user_id, online)))
    phone, laptop = FakeConnection(), FakeConnection()
    a, b = SimpleNamespace(user_id=1, session_id=1), SimpleNamespace(user_id=1, session_id=2)
    connections.attach(a, phone)
    connections.attach(b, laptop)
    connections.detach(a, phone)
    assert heard == [(1, True)] and connections.count(1) == 1
    connections.detach(b, laptop)
    connections.detach(b, laptop)  # a second detach (logout, then the connection goes) is harmless
    assert heard == [(1, True), (1, False)] and connections.count(1) == 0


def test_a_topic_reaches_its_subscribers_until_they_unsubscribe_or_log_out():
    connections, conns = _attached(((1, 1), (2, 1), (3, 1)))
    notifier = LocalNotifier(connections)
    for key in ((1, 0), (2, 0), (3, 0)):
        connections.subscribe(conns[key], "square")
    assert notifier.publish("square", {"op": "square_message"}, exclude=conns[(1, 0)]) == 2
    connections.unsubscribe(conns[(2, 0)], "square")
    connections.detach(SimpleNamespace(user_id=3, session_id=0), conns[(3, 0)])
    assert notifier.publish("square", {"op": "square_message"}) == 1
    assert [len(conns[k].frames) for k in ((1, 0), (2, 0), (3, 0))] == [1, 1, 1]
    connections.detach(SimpleNamespace(user_id=1, session_id=0), conns[(1, 0)])
    assert connections._topics == {}  # a topic nobody hears is forgotten, not kept empty


def test_end_session_tells_and_closes_only_that_sessions_connections():
    connections, conns = _attached(((1, 2),))
    LocalNotifier(connections).end_session(1, 1, {"op": "session_revoked", "session": 1})
    assert conns[(1, 1)].closed and len(conns[(1, 1)].frames) == 1
    assert not conns[(1, 0)].closed and conns[(1, 0)].frames == []


def test_write_to_a_closed_connection_is_refused():
    connections, conn = Connections(), FakeConnection()
    assert connections.write(conn, b"x") and conn.frames == [b"x"]
    conn.connected = False
    assert not connections.write(conn, b"y") and not connections.write(None, b"y")
