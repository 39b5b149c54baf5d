"""One unfinished upload held open by this process: accepts chunks in order, writes and hashes them.

Chunks are accepted on the reactor thread (offset and size checks only) and queued; a worker
thread writes each batch with one ``pwrite`` and feeds it to the running SHA-256, so neither the
disk nor the hash ever holds up the reactor, and hashlib (which drops the GIL on large buffers)
runs beside it. When the queue passes ``high_water`` bytes while a batch is being written, the sending
connection stops being read until that batch is done: a slow disk slows the sender, it does not fill memory.
"""
import os

from twisted.internet import defer
from twisted.logger import Logger

from imserver.errors import ImError

HIGH_WATER = 8 * 1024 * 1024


def _write_batch(fd, hasher, offset, batch):
    """Write ``batch`` (buffers) at ``offset`` and hash it, on a worker thread; returns bytes written.

    The batch is joined first: one copy buys one ``pwrite`` and one hash call per batch, each of
    which drops the GIL once, instead of once per chunk (getting the GIL back from a busy reactor
    thread can take a whole switch interval)."""
    data = batch[0] if len(batch) == 1 else b"".join(batch)
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.pwrite(fd, view[done:], offset + done)
    hasher.update(data)
    return done


class UploadSession:
    _log = Logger()

    def __init__(self, info, fd, offset, hasher, blobs, on_written=None, high_water=HIGH_WATER):
        self.id = info["id"]
        self.owner = info["owner"]
        self.size = info["size"]
        self.sha256 = info["sha256"]
        self.name = info["name"]
        self.mime = info["mime"]
        self.fd = fd
        self.hasher = hasher
        self.blobs = blobs
        self.received = offset  # every byte before this is written or queued
        self.written = offset
        self.conn = None
        self.touched = 0.0
        self.finishing = False
        self.error = None
        self._on_written = on_written
        self._high_water = high_water
        self._queue = []
        self._queued = 0
        self._busy = False
        self._idle_waiters = []
        self._paused = set()
        self._close_when_idle = False

    def refuse(self, code, message):
        return ImError(code, message, upload=self.id, offset=self.received)

    def accept(self, conn, offset, data, now):
        """Queue a chunk; True when it completes the upload. Raises ImError (nothing is lost)."""
        if self.finishing or self.error is not None:
            raise self.refuse("bad_request", "this upload is complete or failed; no more chunks")
        if offset != self.received:
            raise self.refuse("bad_request", f"chunk at offset {offset}; this upload continues at "
                                             f"{self.received}")
        if offset + len(data) > self.size:
            raise self.refuse("bad_request", f"chunk ends at {offset + len(data)}, past the "
                                             f"declared size {self.size}")
        self.conn, self.touched = conn, now
        self._queue.append(data)
        self._queued += len(data)
        self.received += len(data)
        if not self._busy:
            self._start()
        elif self._queued > self._high_water and conn.connected:
            conn.pause_reading("upload")  # with its own reason: other pauses stay independent
            self._paused.add(conn)
        return self.received == self.size

    def _start(self):
        batch, self._queue, self._queued = self._queue, [], 0
        self._busy = True
        self._resume_readers()  # the queue is empty again: at most one batch is in flight
        d = self.blobs.in_thread(_write_batch, self.fd, self.hasher, self.written, batch)
        d.addCallbacks(self._wrote, self._failed)

    def _wrote(self, n):
        self.written += n
        if self._on_written is not None:
            self._on_written(self, n)
        if self._queue:
            self._start()
            return
        self._busy = False
        if self._close_when_idle:
            self.close()
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def _resume_readers(self):
        paused, self._paused = self._paused, set()
        for conn in paused:
            conn.resume_reading("upload")

    def _failed(self, failure):
        self._log.failure("writing upload {id} failed", failure, id=self.id)
        self.error = failure
        self._busy = False
        self._queue, self._queued = [], 0
        self._resume_readers()
        if self._close_when_idle:
            self.close()
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.errback(ImError("internal", "the server could not store the upload"))

    def idle(self):
        """A Deferred that fires when every accepted byte is written and hashed."""
        if self.error is not None:
            return defer.fail(ImError("internal", "the server could not store the upload"))
        if not self._busy:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    def close(self):
        """Close the part file (once the write in flight, if any, is done)."""
        if self._busy:
            self._close_when_idle = True
            return
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
