"""Streaming a stored file to one connection as download-data frames, through a push producer.

The producer registers with the connection's ``OutputGuard`` (the transport's one producer), so
when the peer stops reading, the transport pauses the guard, the guard pauses us, and no more
of the file is read from disk; the file is never in memory whole. Like ``FileSender`` it reads
on the reactor thread, one chunk per frame; unlike ``FileSender`` it is a push producer and
frames what it reads.

Given a rate (bytes a second), it pays for each chunk from a token bucket before reading it and
waits off any debt on the injected clock; a pause from the transport or a stop still applies
during such a wait. Without a rate it sends as fast as the transport takes, with no timers.
"""
import os

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from imserver.ratelimit import RateLimiter
from imserver.transfer import frames

#: At a limited rate a chunk holds at most this fraction of a second's bytes, so a slow
#: download is a stream of small frames rather than a large frame and a long silence.
PACING_SLICE = 0.1


@implementer(IPushProducer)
class DownloadProducer:
    def __init__(self, conn, fileobj, download_id, offset, end, chunk=frames.MAX_DATA,
                 on_done=None, clock=None, rate=0):
        self.conn = conn
        self.file = fileobj
        self.id = download_id
        self.pos = offset
        self.end = end
        self.chunk = chunk
        self.paused = True
        self.done = False
        self._pumping = False
        self._on_done = on_done
        self.clock = clock
        self.limiter = None
        self._wait = None  # the delayed call of a paced wait
        self._paid = False  # the next chunk is paid for and its wait is over
        if rate:
            if clock is None:
                raise ValueError("a download paced to a rate needs a clock")
            self.chunk = max(1, min(chunk, int(rate * PACING_SLICE)))
            self.limiter = RateLimiter(clock, rate, burst=self.chunk)

    def start(self):
        """Begin sending (call after the ``download`` reply is written, so it comes first)."""
        guard = self.conn.guard
        guard.producers.append(self)
        if not guard.paused:
            self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        if self._pumping or self.done or self._wait is not None:
            return
        self._pumping = True
        try:
            self._pump()
        finally:
            self._pumping = False

    def _pump(self):
        transport, fd, chunk = self.conn.transport, self.file.fileno(), self.chunk
        while not self.paused and not self.done:
            if self.pos >= self.end or transport is None or not self.conn.connected:
                self._finish()
                return
            n = min(chunk, self.end - self.pos)
            if self.limiter is not None and not self._pay(n):
                return
            data = os.pread(fd, n, self.pos)
            if not data:  # the file is shorter than its row says: stop rather than spin
                self._finish()
                return
            self.conn.release_output()  # any frames held for this connection go first
            transport.writeSequence((frames.framed_header(frames.DOWNLOAD_DATA, self.id, self.pos,
                                                          len(data)), data))
            self.pos += len(data)

    def _pay(self, n):
        """True if ``n`` bytes may go now; otherwise their wait is scheduled and False."""
        if self._paid:
            self._paid = False
            return True
        wait = self.limiter.delay(self.id, n)
        if wait <= 0:
            return True
        self._wait = self.clock.callLater(wait, self._waited)
        return False

    def _waited(self):
        self._wait = None
        self._paid = True
        if not self.paused:
            self.resumeProducing()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self._finish()

    def _finish(self):
        if self.done:
            return
        self.done = True
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        self.file.close()
        producers = self.conn.guard.producers
        if self in producers:
            producers.remove(self)
        if self._on_done is not None:
            self._on_done(self)
