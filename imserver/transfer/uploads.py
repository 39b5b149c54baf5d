"""One unfinished upload held open by this process: accepts chunks in order, writes and hashes them.

Chunks are accepted on the reactor thread (offset and size checks only) and copied into a
buffer; each batch (the whole buffer) is then written with ``pwrite`` on one worker thread while
another feeds it to the running SHA-256. hashlib and ``pwrite`` both drop the GIL on a large
buffer, so the two overlap, and neither the disk nor the hash ever holds up the reactor. Two
buffers take turns (one filling, one in flight), so their memory is allocated once per session,
not once per batch. When the buffer passes ``high_water`` bytes while a batch is in flight, the
sending connection stops being read until that batch is done: a slow disk slows the sender, it
does not fill memory.
"""
import errno
import os

from twisted.internet import defer
from twisted.logger import Logger

from imserver.errors import ImError
from imserver.transfer.blobs import start_writeback

HIGH_WATER = 8 * 1024 * 1024


def write_all(fd, data, offset, writeback=False):
    """``pwrite`` all of ``data`` at ``offset`` (blocking); with ``writeback``, ask the kernel to
    start sending it to the disk at once. Returns the bytes written."""
    view, done = memoryview(data), 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"pwrite wrote nothing at offset {offset + done}")
        done += n
    if writeback:
        start_writeback(fd, offset, done)
    return done


class UploadSession:
    _log = Logger()

    def __init__(self, info, fd, offset, hasher, blobs, on_written=None, high_water=HIGH_WATER,
                 writeback=False):
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
        self._writeback = writeback  # start writing each batch to disk early (fsync comes later)
        self._buffer = bytearray()  # accepted, not yet handed to the worker threads...
        self._filled = 0            # ...up to here (the buffer is reused: it may be longer)
        self._spare = bytearray()   # the other buffer (None while it holds the batch in flight)
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
        # One copy into a contiguous buffer here buys one hash call and one pwrite per batch,
        # each of which gets the GIL back once, instead of once per chunk (getting it back from
        # a busy reactor thread can take a whole switch interval).
        at, n = self._filled, len(data)
        self._buffer[at:at + n] = data  # grows the buffer when it is too short
        self._filled = at + n
        self.received += n
        if not self._busy:
            self._start()
        elif self._filled > self._high_water and conn.connected:
            conn.pause_reading("upload")  # with its own reason: other pauses stay independent
            self._paused.add(conn)
        return self.received == self.size

    def _start(self):
        buffer, batch = self._buffer, memoryview(self._buffer)[:self._filled]
        self._buffer, self._filled, self._spare = self._spare, 0, None
        self._busy = True
        self._resume_readers()  # the buffer is empty again: at most one batch is in flight
        # Wait for both jobs even when one fails: the fd is not closed under a running pwrite.
        d = defer.DeferredList([
            self.blobs.in_thread(write_all, self.fd, batch, self.written, self._writeback),
            self.blobs.in_thread(self.hasher.update, batch)], consumeErrors=True)
        d.addCallback(self._batch_done, buffer, batch)

    def _batch_done(self, results, buffer, batch):
        n = len(batch)
        batch.release()  # no view of it is left, so it can be refilled (and grown) again
        self._spare = buffer
        for ok, result in results:
            if not ok:
                self._failed(result)
                return
        self._wrote(n)

    def _wrote(self, n):
        self.written += n
        if self._on_written is not None:
            self._on_written(self, n)
        if self._filled:
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
        self._buffer, self._filled = bytearray(), 0
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
        self._buffer, self._filled, self._spare = bytearray(), 0, bytearray()
