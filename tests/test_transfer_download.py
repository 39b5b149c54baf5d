"""The download producer on a StringTransport and task.Clock: unlimited, paced to a rate, paused
and stopped during a paced wait."""
import os

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from imserver import wire
from imserver.config import Config
from imserver.connections import Connections
from imserver.output import Coalescer
from imserver.protocol import ImProtocol
from imserver.transfer import frames
from imserver.transfer.download import DownloadProducer


class Shared:
    """What a connection needs of the server to write output."""

    def __init__(self):
        self.config = Config()
        self.output = Coalescer()
        self.connections = Connections()


def run_for(clock, seconds):
    """Advance ``clock`` by ``seconds`` in steps of 10 ms, running each wait as it comes due."""
    clock.pump([0.01] * round(seconds * 100))


def assert_paced(sent, expected, chunk):
    """``expected`` bytes, or up to one chunk fewer: the clock's 10 ms steps add up to a hair
    less than the whole seconds asked (float sums), so a chunk due on the boundary may wait."""
    assert expected - chunk <= sent <= expected


class Download:
    """A producer streaming a file of ``size`` bytes to a connection on a StringTransport."""

    def __init__(self, tmp_path, size, rate=0):
        self.data = os.urandom(size)
        path = tmp_path / "blob"
        path.write_bytes(self.data)
        self.clock = task.Clock()
        self.transport = StringTransport()
        self.conn = ImProtocol(Shared())
        self.conn.makeConnection(self.transport)
        self.finished = []
        self.producer = DownloadProducer(self.conn, open(path, "rb"), 7, 0, size,
                                         on_done=self.finished.append, clock=self.clock, rate=rate)
        self.producer.start()

    def frames(self):
        """[(offset, data)] of the download frames written so far, checked as they are read."""
        reader, out = wire.FrameReader(), []
        reader.feed(self.transport.value())
        while (payload := reader.next(frames.MAX_PAYLOAD)) is not None:
            kind, stream, offset, data = frames.decode(payload)
            assert (kind, stream) == (frames.DOWNLOAD_DATA, 7)
            out.append((offset, bytes(data)))
        return out

    def sent(self):
        got = self.frames()
        assert [offset for offset, _ in got] == [sum(len(d) for _, d in got[:i])
                                                 for i in range(len(got))]
        data = b"".join(d for _, d in got)
        assert data == self.data[:len(data)]
        return len(data)


def test_unlimited_sends_everything_at_once_without_timers(tmp_path):
    down = Download(tmp_path, 3 * frames.MAX_DATA + 5)
    assert down.sent() == len(down.data)
    assert [len(d) for _, d in down.frames()] == [frames.MAX_DATA] * 3 + [5]
    assert down.clock.getDelayedCalls() == [] and down.producer.limiter is None
    assert down.finished == [down.producer] and down.conn.guard.producers == []


def test_a_limited_download_sends_its_rate_each_simulated_second(tmp_path):
    rate = 100_000
    down = Download(tmp_path, 1_000_000, rate=rate)
    chunk = down.producer.chunk
    assert chunk == rate // 10  # a tenth of a second's bytes per frame
    assert down.sent() == chunk  # the bucket's burst: one chunk at once, then the rate
    for second in range(1, 6):
        run_for(down.clock, 1)
        assert_paced(down.sent(), chunk + second * rate, chunk)
        assert len(down.clock.getDelayedCalls()) == 1
    run_for(down.clock, 10)
    assert down.sent() == len(down.data) and down.finished == [down.producer]
    assert down.clock.getDelayedCalls() == []
    # The whole file took its size at the rate, less the burst sent at once.
    assert down.clock.seconds() >= (len(down.data) - chunk) / rate


def test_a_slow_rate_sends_small_frames(tmp_path):
    down = Download(tmp_path, 100, rate=50)
    assert down.sent() == 5
    run_for(down.clock, 1)
    assert_paced(down.sent(), 55, 5)
    assert {len(d) for _, d in down.frames()} == {5}


def test_pause_during_a_wait_holds_the_paid_chunk_until_resumed(tmp_path):
    down = Download(tmp_path, 1_000_000, rate=100_000)
    chunk = down.producer.chunk
    (wait,) = down.clock.getDelayedCalls()
    down.transport.producer.pauseProducing()  # the peer stopped reading
    down.clock.advance(wait.getTime() + 5)
    assert down.sent() == chunk and down.clock.getDelayedCalls() == []
    down.transport.producer.resumeProducing()
    # The paid chunk, then one more from the bucket that refilled while paused (its burst, not
    # five seconds' worth); then the rate again.
    assert down.sent() == 3 * chunk
    assert len(down.clock.getDelayedCalls()) == 1
    run_for(down.clock, 1)
    assert_paced(down.sent(), 3 * chunk + 100_000, chunk)


def test_resume_during_a_wait_starts_no_second_stream(tmp_path):
    down = Download(tmp_path, 1_000_000, rate=100_000)
    down.transport.producer.pauseProducing()
    down.transport.producer.resumeProducing()
    assert down.sent() == down.producer.chunk and len(down.clock.getDelayedCalls()) == 1
    run_for(down.clock, 1)
    assert_paced(down.sent(), down.producer.chunk + 100_000, down.producer.chunk)


def test_stop_during_a_wait_cancels_the_timer(tmp_path):
    down = Download(tmp_path, 1_000_000, rate=100_000)
    (wait,) = down.clock.getDelayedCalls()
    down.producer.stopProducing()
    assert wait.cancelled and down.clock.getDelayedCalls() == []
    assert down.producer.file.closed and down.finished == [down.producer]
    assert down.conn.guard.producers == []
    down.clock.advance(10)
    assert down.sent() == down.producer.chunk


def test_connection_lost_during_a_wait_stops_the_download(tmp_path):
    down = Download(tmp_path, 1_000_000, rate=100_000)
    down.conn.connectionLost(None)  # the guard stops its producers
    assert down.clock.getDelayedCalls() == [] and down.finished == [down.producer]


@pytest.mark.parametrize("rate", [0, 1_000_000])
def test_a_file_smaller_than_the_burst_goes_at_once(tmp_path, rate):
    down = Download(tmp_path, 10, rate=rate)
    assert down.sent() == 10 and down.finished == [down.producer]
    assert down.clock.getDelayedCalls() == []
