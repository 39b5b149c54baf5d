"""File transfer on one ``ClientProtocol``: the bytes of uploads and downloads, in binary frames.

A transport takes one producer, so each connection has one ``ChunkMux``: a push producer that
writes the chunk frames of every upload running on it, a chunk from each in turn, and pauses
disk reads while the link is slow. Download data frames are routed by stream id to the sink of
their download (``sinks_for``). ``upload(proto, path)`` and ``download(proto, file_id, dest)``
do a whole transfer on one connection; both resume (``upload`` continues from the offset the
server holds, ``download`` from ``offset``), and several may run at once on one connection.
``imclient.transfers`` builds the client's transfer queue (pause, cancel, resume across
reconnects and restarts) on these parts. The frame layout is in docs/protocol.rst, "Files".
"""
import hashlib
import os

from twisted.internet import defer, threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from imclient.protocol import BINARY_HEADER, DOWNLOAD_DATA, UPLOAD_CHUNK, RemoteError, binary_head

_READ = 1024 * 1024
#: Data bytes per chunk frame when the server has not said (64 KiB payloads, header included).
DEFAULT_CHUNK = 65536 - BINARY_HEADER.size


def hash_file(path, length=None):
    """The SHA-256 object of a local file's first ``length`` bytes (all of it with None);
    blocking, so big files are hashed on a thread."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while length is None or length > 0:
            data = f.read(_READ if length is None else min(_READ, length))
            if not data:
                break
            h.update(data)
            if length is not None:
                length -= len(data)
    return h


def file_digest(path):
    """(size, sha256 hex) of a local file (blocking: call it on a thread for big files)."""
    return os.path.getsize(path), hash_file(path).hexdigest()


def safe_name(name, default="download"):
    """A file name from the server, reduced to one harmless path component (names are data)."""
    name = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*')
    return name or default


def proof(nonce_hex, data):
    return hashlib.sha256(bytes.fromhex(nonce_hex) + data).hexdigest()


class UploadSource:
    """The chunks one upload still has to send: from ``pos`` to ``size`` of an open file.
    ``on_written(pos)`` is called after each chunk; if the file cannot be read, ``failed`` holds
    the error and ``on_failed(error)`` is called."""

    def __init__(self, fd, upload_id, pos, size, chunk, on_written=None, on_failed=None):
        self.fd, self.upload_id, self.pos, self.size, self.chunk = fd, upload_id, pos, size, chunk
        self.on_written, self.on_failed = on_written, on_failed
        self.failed = None

    @property
    def finished(self):
        return self.pos >= self.size or self.failed is not None

    def write_one(self, transport):
        try:
            data = os.pread(self.fd, min(self.chunk, self.size - self.pos), self.pos)
            if not data:
                raise OSError("the file got shorter while uploading")
        except OSError as e:
            self.failed = e
            if self.on_failed is not None:
                self.on_failed(e)
            return
        transport.writeSequence((binary_head(UPLOAD_CHUNK, self.upload_id, self.pos, len(data)),
                                 data))
        self.pos += len(data)
        if self.on_written is not None:
            self.on_written(self.pos)


@implementer(IPushProducer)
class ChunkMux:
    """The one producer of a connection's uploads: round-robin over its ``UploadSource``s.

    Registered on the transport while it has a source, unregistered as soon as the last one is
    written (a TLS transport does not close while a producer is registered)."""

    _log = Logger()

    def __init__(self, proto):
        self.proto = proto
        self.sources = []
        self.paused = False
        self.registered = False
        self._next = 0
        self._writing = False

    def add(self, source):
        if source in self.sources or source.finished:
            return
        self.sources.append(source)
        if not self.registered and self.proto.connected:
            # A pause the transport asked for before we unregistered is void: it pauses a newly
            # registered producer again on the first write that overfills its buffer.
            self.proto.transport.registerProducer(self, True)
            self.registered = True
            self.paused = False
        if not self.paused:
            self.resumeProducing()

    def remove(self, source):
        if source in self.sources:
            self.sources.remove(source)
        self._unregister_if_idle()

    def resumeProducing(self):
        self.paused = False
        if self._writing:  # a write below made the transport ask again: the loop goes on
            return
        self._writing = True
        try:
            while not self.paused and self.sources and self.proto.connected:
                i = self._next % len(self.sources)
                source = self.sources[i]
                source.write_one(self.proto.transport)
                if source.finished:
                    self.sources.pop(i)
                    self._next = i
                else:
                    self._next = i + 1
        finally:
            self._writing = False
        self._unregister_if_idle()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.sources = []
        self.registered = False

    def _unregister_if_idle(self):
        if not self.sources and self.registered:
            self.registered = False
            if self.proto.transport is not None and self.proto.connected:
                self.proto.transport.unregisterProducer()


def mux_for(proto):
    """The connection's ``ChunkMux`` (made on first use)."""
    mux = getattr(proto, "_chunk_mux", None)
    if mux is None:
        _bulk(proto)
        mux = proto._chunk_mux = ChunkMux(proto)
    return mux


def _bulk(proto):
    """Bigger socket reads and write batches for this connection (fewer reactor turns per MiB)."""
    if hasattr(proto.transport, "bufferSize"):
        proto.transport.bufferSize = max(proto.transport.bufferSize, 256 * 1024)


def upload_outcome(message, upload_id):
    """For a push or error frame: ``("done", file id)``, ``("failed", RemoteError)`` if it ends
    upload ``upload_id``, ``("progress", offset)`` for its progress, else None."""
    op, error = message.get("op"), None
    if op in ("upload_done", "upload_failed", "upload_progress") and message.get("upload") != upload_id:
        return None
    if op == "upload_done":
        return "done", message["file"]
    if op == "upload_progress":
        return "progress", message["offset"]
    if op == "upload_failed":
        error = message.get("error") or {}
    elif message.get("ok") is False and (message.get("error") or {}).get("upload") == upload_id:
        error = message["error"]
    if error is None:
        return None
    return "failed", RemoteError(error.get("code", "internal"), error.get("message", ""), error)


def wait_for_upload(proto, upload_id, on_progress=None):
    """A Deferred firing with the file id on ``upload_done``, failing on ``upload_failed``, on
    an error frame about this upload, or when the connection is lost."""
    d = defer.Deferred(lambda _: unsubscribe())
    subscribed = []

    def unsubscribe():
        if subscribed:
            subscribed.pop()()

    def on_push(message):
        outcome = upload_outcome(message, upload_id)
        if outcome is None or d.called:
            return
        if outcome[0] == "progress":
            if on_progress is not None:
                on_progress(outcome[1])
            return
        unsubscribe()
        if outcome[0] == "done":
            d.callback(outcome[1])
        else:
            d.errback(outcome[1])

    subscribed.append(proto.subscribe(on_push))
    fail_on_lost(proto, d, "connection lost during the upload")
    return d


def fail_on_lost(proto, d, message):
    """Fail ``d`` (if still waiting) when the connection goes; ``proto.lost`` keeps its result."""
    def lost(result):
        if not d.called:
            d.errback(ConnectionError(message))
        return result
    proto.lost.addCallback(lost)


async def begin_upload(proto, path, name, size, sha256, mime=None):
    """``upload_begin`` (and ``upload_proof`` for a challenge): ``("file", file id)`` when no
    bytes are needed, else ``("upload", upload id, offset, chunk size)`` to send from."""
    reply = await proto.request("upload_begin", name=name, size=size, sha256=sha256, mime=mime)
    mode = reply["mode"]
    if mode == "instant":
        return "file", reply["file"]
    if mode == "challenge":
        c = reply["challenge"]
        data = await threads.deferToThread(_read_range, path, c["offset"], c["length"])
        answer = await proto.request("upload_proof", challenge=c["id"], proof=proof(c["nonce"], data))
        return "file", answer["file"]
    return "upload", reply["upload"], reply["offset"], reply.get("chunk_size") or DEFAULT_CHUNK


def _read_range(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def upload(proto, path, name=None, mime=None, size=None, sha256=None):
    """Upload a local file (new, resumed or instant); a Deferred firing with the file id.

    Pass ``size`` and ``sha256`` if known, to skip hashing the file first."""
    return defer.ensureDeferred(_upload(proto, path, name, mime, size, sha256))


async def _upload(proto, path, name, mime, size, sha256):
    if size is None or sha256 is None:
        size, sha256 = await threads.deferToThread(file_digest, path)
    begun = await begin_upload(proto, path, name or os.path.basename(path), size, sha256, mime)
    if begun[0] == "file":
        return begun[1]
    _, upload_id, offset, chunk = begun
    done = wait_for_upload(proto, upload_id)
    fd = os.open(path, os.O_RDONLY)
    source = UploadSource(fd, upload_id, offset, size, chunk,
                          on_failed=lambda e: done.called or done.errback(e))
    mux = mux_for(proto)
    try:
        mux.add(source)
        return await done
    finally:
        mux.remove(source)
        os.close(fd)


class DownloadSink:
    """Writes one download's data frames at their offsets; ``done`` fires at ``end``.
    ``on_data(pos)`` is called after each frame."""

    def __init__(self, fd, offset, end, on_data=None):
        self.fd, self.pos, self.end, self.on_data = fd, offset, end, on_data
        self.done = defer.Deferred()
        if end <= offset:
            self.done.callback(offset)

    def data(self, offset, data):
        if self.done.called:
            return
        if offset != self.pos:
            self.done.errback(ValueError(f"download data at {offset}, expected {self.pos}"))
            return
        os.pwrite(self.fd, data, offset)
        self.pos += len(data)
        if self.on_data is not None:
            self.on_data(self.pos)
        if self.pos >= self.end:
            self.done.callback(self.pos)


def sinks_for(proto):
    """The connection's table ``download id -> DownloadSink`` that data frames are routed to."""
    sinks = getattr(proto, "_download_sinks", None)
    if sinks is None:
        _bulk(proto)
        sinks = proto._download_sinks = {}

        def on_binary(payload):
            _, kind, stream, offset = BINARY_HEADER.unpack_from(payload)
            sink = sinks.get(stream) if kind == DOWNLOAD_DATA else None
            if sink is not None:  # frames of a cancelled download may still come: dropped
                sink.data(offset, memoryview(payload)[BINARY_HEADER.size:])
        proto.on_binary = on_binary
    return sinks


async def receive(proto, file_id, fd, offset, on_data=None):
    """Ask for ``file_id`` from ``offset`` and write what comes into ``fd`` until its end;
    returns the ``download`` reply. Cancelling it cancels the download on the server."""
    sinks = sinks_for(proto)
    info = await proto.request("download", file=file_id, offset=offset)
    sink = sinks[info["download"]] = DownloadSink(fd, offset, info["end"], on_data)
    fail_on_lost(proto, sink.done, "connection lost during the download")
    try:
        await sink.done
    except defer.CancelledError:
        if proto.connected:
            proto.request("download_cancel", download=info["download"]).addErrback(lambda f: None)
        raise
    finally:
        sinks.pop(info["download"], None)
    return info


def download(proto, file_id, dest, offset=0, verify=True):
    """Download a file into ``dest`` from ``offset`` (bytes before it are kept); a Deferred
    firing with the server's file info. With ``verify`` the whole file's SHA-256 is checked."""
    return defer.ensureDeferred(_download(proto, file_id, dest, offset, verify))


async def _download(proto, file_id, dest, offset, verify):
    fd = os.open(dest, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, offset)
        info = await receive(proto, file_id, fd, offset)
    finally:
        os.close(fd)
    if verify:
        await verify_file(dest, info["sha256"], file_id)
    return info


async def verify_file(path, sha256, file_id):
    """Raise ValueError unless the local file's SHA-256 is ``sha256`` (hashed on a thread)."""
    if (await threads.deferToThread(hash_file, path)).hexdigest() != sha256:
        raise ValueError(f"downloaded file {file_id} does not match its SHA-256")
