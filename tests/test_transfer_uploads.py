"""UploadSession without a network or a thread: ordering checks, batching and read pausing."""
import errno
import hashlib
import os
import sys

import pytest
from twisted.internet import defer

from imserver.errors import ImError
from imserver.transfer import blobs, uploads
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
        try:
            result = fn(*args)
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)

    def run_batch(self):
        """A batch is two jobs: its pwrite and its hash."""
        self.run_one()
        self.run_one()


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
    assert conn.transport.paused and len(session.blobs.jobs) == 2
    session.blobs.run_batch()                                 # the queue becomes the next job
    assert not conn.transport.paused and session.written == 10
    session.blobs.run_batch()
    assert session.written == session.received == 50
    assert session.idle().called
    with pytest.raises(ImError) as info:
        session.accept(conn, 49, b"x", 2.0)
    assert info.value.code == "bad_request" and info.value.extra == {"upload": 1, "offset": 50}
    with pytest.raises(ImError):
        session.accept(conn, 50, b"x" * 51, 2.0)
    assert session.accept(conn, 50, b"c" * 50, 2.0) is True
    session.blobs.run_batch()
    expected = b"a" * 10 + b"b" * 40 + b"c" * 50
    assert session.hasher.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert (tmp_path / "p.part").read_bytes() == expected


def test_close_waits_for_the_write_in_flight(session):
    session.accept(FakeConn(), 0, b"a" * 10, 1.0)
    session.close()
    assert session.fd is not None
    session.blobs.run_batch()
    assert session.fd is None


def test_a_failed_write_waits_for_the_hash_of_its_batch_then_fails_the_session(session):
    session.fd, real_fd = -1, session.fd        # pwrite on a bad fd raises EBADF
    session.accept(FakeConn(), 0, b"a" * 10, 1.0)
    waiting = session.idle()
    session.blobs.run_one()                     # the write fails first...
    assert not waiting.called and session.error is None
    session.blobs.run_one()                     # ...the session fails once the hash is done too
    assert session.error is not None
    failures = []
    waiting.addErrback(failures.append)
    assert failures[0].value.code == "internal"
    with pytest.raises(ImError):
        session.accept(FakeConn(), 10, b"b", 2.0)
    session.fd = real_fd


def test_write_all_finishes_short_writes(tmp_path, monkeypatch):
    real_pwrite, calls = os.pwrite, []

    def short_pwrite(fd, data, offset):
        calls.append(offset)
        return real_pwrite(fd, bytes(data[:3]), offset)
    monkeypatch.setattr(os, "pwrite", short_pwrite)
    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT)
    try:
        assert uploads.write_all(fd, bytearray(b"0123456789"), 5, writeback=True) == 10
    finally:
        os.close(fd)
    assert calls == [5, 8, 11, 14]
    assert (tmp_path / "p").read_bytes() == b"\0" * 5 + b"0123456789"


def test_write_all_refuses_a_write_of_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
    with pytest.raises(OSError):
        uploads.write_all(0, b"x", 0)


def test_start_writeback_is_silent_where_the_system_cannot(tmp_path, monkeypatch):
    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 5000)
        blobs.start_writeback(fd, 0, 5000)                   # the real call, where it exists
        if sys.platform.startswith("linux"):
            assert blobs._sync_file_range is not None
            with pytest.raises(OSError):                     # errors are reported by the binding
                blobs._sync_file_range(-1, 0, 1, 2)

        def unsupported(*args):
            raise OSError(errno.EINVAL, "not here")
        monkeypatch.setattr(blobs, "_sync_file_range", unsupported)
        blobs.start_writeback(fd, 0, 5000)
        monkeypatch.setattr(blobs, "_sync_file_range", None)  # not Linux
        blobs.start_writeback(fd, 0, 5000)
    finally:
        os.close(fd)
    assert (tmp_path / "p").read_bytes() == b"x" * 5000
