"""Streaming a stored file to one connection as download-data frames, through a push producer.

The producer registers with the connection's ``OutputGuard`` (the transport's one producer), so
when the peer stops reading, the transport pauses the guard, the guard pauses us, and no more
of the file is read from disk; the file is never in memory whole. Like ``FileSender`` it reads
on the reactor thread, one chunk per frame; unlike ``FileSender`` it is a push producer and
frames what it reads.
"""
import os

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from imserver.transfer import frames


@implementer(IPushProducer)
class DownloadProducer:
    def __init__(self, conn, fileobj, download_id, offset, end, chunk=frames.MAX_DATA,
                 on_done=None):
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

    def start(self):
        """Begin sending (call after the ``download`` reply is written, so it comes first)."""
        guard = self.conn.guard
        guard.producers.append(self)
        if not guard.paused:
            self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        if self._pumping or self.done:
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
            data = os.pread(fd, min(chunk, self.end - self.pos), self.pos)
            if not data:  # the file is shorter than its row says: stop rather than spin
                self._finish()
                return
            self.conn.release_output()  # any frames held for this connection go first
            transport.writeSequence((frames.framed_header(frames.DOWNLOAD_DATA, self.id, self.pos,
                                                          len(data)), data))
            self.pos += len(data)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self._finish()

    def _finish(self):
        if self.done:
            return
        self.done = True
        self.file.close()
        producers = self.conn.guard.producers
        if self in producers:
            producers.remove(self)
        if self._on_done is not None:
            self._on_done(self)
