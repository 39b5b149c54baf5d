"""UploadSession without a network or a thread: ordering checks, batching and read pausing."""
import hashlib
import os

import pytest
from twisted.internet import defer

from imserver.errors import ImError
from imserver.transfer.uploads import UploadSession


class FakeBlobs:
    """Runs the write job when the test says so, as a worker thread would later."""

    def __init__(self):
        self.jobs = []

    def in_thread(self, fn, *args):
        d = defer.Deferred()
        self.jobs.append((d, fn, args))
        return d

    def run_one(self):
        d, fn, args = self.jobs.pop(0)
        d.callback(fn(*args))


class FakeTransport:
    def __init__(self):
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


class FakeConn:
    connected = True

    def __init__(self):
        self.transport = FakeTransport()

    def pause_reading(self, reason):
        assert reason == "upload"
        self.transport.pauseProducing()

    def resume_reading(self, reason):
        assert reason == "upload"
        self.transport.resumeProducing()


@pytest.fixture
def session(tmp_path):
    fd = os.open(tmp_path / "p.part", os.O_RDWR | os.O_CREAT)
    info = dict(id=1, owner=5, size=100, sha256="0" * 64, name="n", mime="m")
    s = UploadSession(info, fd, 0, hashlib.sha256(), FakeBlobs(), high_water=30)
    yield s
    s.close()


def test_chunks_in_order_are_batched_and_a_full_queue_pauses_reading(session, tmp_path):
    conn = FakeConn()
    assert not session.accept(conn, 0, b"a" * 10, 1.0)     # starts a job at once
    for i in range(1, 5):
        session.accept(conn, i * 10, b"b" * 10, 1.0)        # queued behind it: 40 > 30
    assert conn.transport.paused and len(session.blobs.jobs) == 1
    session.blobs.run_one()                                 # the queue becomes the next job
    assert not conn.transport.paused and session.written == 10
    session.blobs.run_one()
    assert session.written == session.received == 50
    assert session.idle().called
    with pytest.raises(ImError) as info:
        session.accept(conn, 49, b"x", 2.0)
    assert info.value.code == "bad_request" and info.value.extra == {"upload": 1, "offset": 50}
    with pytest.raises(ImError):
        session.accept(conn, 50, b"x" * 51, 2.0)
    assert session.accept(conn, 50, b"c" * 50, 2.0) is True
    session.blobs.run_one()
    expected = b"a" * 10 + b"b" * 40 + b"c" * 50
    assert session.hasher.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert (tmp_path / "p.part").read_bytes() == expected


def test_close_waits_for_the_write_in_flight(session):
    session.accept(FakeConn(), 0, b"a" * 10, 1.0)
    session.close()
    assert session.fd is not None
    session.blobs.run_one()
    assert session.fd is None
