"""Content-addressed files on disk: ``<root>/blobs/ab/cd/<sha256>`` and ``<root>/parts/<id>.part``.

Paths are built only from a validated lowercase hex SHA-256 and an integer upload id: nothing a
client names (file names, MIME types) ever becomes part of a path. The functions that read or
write whole files block, and are meant to run on a thread (``BlobStore.in_thread``).
"""
import ctypes
import hashlib
import os
import re
import sys

from twisted.internet import threads

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_READ = 1024 * 1024


def is_sha256(text):
    return isinstance(text, str) and _SHA256.match(text) is not None


def hash_prefix(path, length):
    """A sha256 object over the first ``length`` bytes of ``path`` (blocking)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        left = length
        while left:
            data = f.read(min(_READ, left))
            if not data:
                raise OSError(f"{path} is shorter than {length} bytes")
            h.update(data)
            left -= len(data)
    return h


def _libc_sync_file_range():
    """Linux's ``sync_file_range`` through ctypes (the os module has no binding for it), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int

    def sync_file_range(fd, offset, nbytes, flags):
        if fn(fd, offset, nbytes, flags) != 0:  # ctypes drops the GIL around the call
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    return sync_file_range


_sync_file_range = getattr(os, "sync_file_range", None) or _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = getattr(os, "SYNC_FILE_RANGE_WRITE", 2)  # the value in <fcntl.h>


def start_writeback(fd, offset, length):
    """Start writing a range of a file to the disk without waiting for it (blocking at most on a
    full device queue), so a later ``fsync`` waits only for what is left. A no-op where the
    system cannot do it."""
    if _sync_file_range is not None:
        try:
            _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
        except OSError:  # e.g. a file system without it; the fsync still reports real errors
            pass


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root, reactor):
        self.root = os.path.abspath(root)
        self.reactor = reactor
        self.parts = os.path.join(self.root, "parts")

    def in_thread(self, fn, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def blob_path(self, sha256):
        if not is_sha256(sha256):
            raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
        return os.path.join(self.root, "blobs", sha256[:2], sha256[2:4], sha256)

    def part_path(self, upload_id):
        return os.path.join(self.parts, f"{int(upload_id)}.part")

    def open_part(self, upload_id):
        """(fd, current length) of the upload's part file, created if missing."""
        os.makedirs(self.parts, exist_ok=True)
        fd = os.open(self.part_path(upload_id), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        return fd, os.fstat(fd).st_size

    def part_size(self, upload_id):
        try:
            return os.path.getsize(self.part_path(upload_id))
        except FileNotFoundError:
            return 0

    def has_blob(self, sha256):
        return os.path.exists(self.blob_path(sha256))

    def commit_part(self, upload_id, fd, sha256, sync=True):
        """Make the verified part file the blob for ``sha256`` (blocking): synced to disk (unless
        ``sync`` is false), then renamed into place. If the blob exists already the part is
        dropped: storage is shared."""
        target = self.blob_path(sha256)
        part = self.part_path(upload_id)
        if os.path.exists(target):
            os.unlink(part)
            return
        if sync:
            os.fsync(fd)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(part, target)
        if sync:
            _fsync_dir(os.path.dirname(target))

    def write_blob(self, sha256, data):
        """Store small content directly (blocking); the caller has verified its hash."""
        target = self.blob_path(sha256)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    @staticmethod
    def truncate(fd, length):
        os.ftruncate(fd, length)

    @staticmethod
    def close_fd(fd):
        os.close(fd)

    def remove_part(self, upload_id):
        try:
            os.unlink(self.part_path(upload_id))
        except FileNotFoundError:
            pass

    def remove_blob(self, sha256):
        try:
            os.unlink(self.blob_path(sha256))
        except FileNotFoundError:
            pass

    def read_range(self, sha256, offset, length):
        with open(self.blob_path(sha256), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def open_blob(self, sha256):
        return open(self.blob_path(sha256), "rb", buffering=0)
