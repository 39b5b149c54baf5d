"""File transfer on a ``ClientProtocol``: ``upload(proto, path)`` and ``download(proto, file_id, dest)``.

Both resume: ``upload`` continues from the offset the server holds (after a lost connection, call
it again with the same file, on any connection of the same user); ``download`` continues from
``offset``. Chunks are sent through a push producer on the transport, so a slow link pauses disk
reads. One upload at a time per connection (the transport has one producer); downloads may run
side by side. The binary frame layout is in docs/protocol.rst, "Files".
"""
import hashlib
import os

from twisted.internet import defer, threads
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from imclient.protocol import BINARY_HEADER, DOWNLOAD_DATA, UPLOAD_CHUNK, RemoteError, binary_head

_READ = 1024 * 1024


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


@implementer(IPushProducer)
class _ChunkSender:
    """Reads the file from ``offset`` and writes upload-chunk frames while the transport wants more."""

    def __init__(self, proto, fileobj, upload_id, offset, size, chunk):
        self.proto, self.file, self.id = proto, fileobj, upload_id
        self.pos, self.size, self.chunk = offset, size, chunk
        self.paused = False
        self.stopped = False

    def start(self):
        self.proto.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        transport, fd = self.proto.transport, self.file.fileno()
        while not self.paused and not self.stopped and self.pos < self.size:
            data = os.pread(fd, min(self.chunk, self.size - self.pos), self.pos)
            if not data:
                raise OSError("the file got shorter while uploading")
            transport.writeSequence((binary_head(UPLOAD_CHUNK, self.id, self.pos, len(data)), data))
            self.pos += len(data)
        if self.pos >= self.size:
            self.stopProducing()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        # Unregister as soon as the last chunk is written: a TLS transport does not close while
        # a producer is registered.
        if not self.stopped:
            self.stopped = True
            if self.proto.transport is not None and self.proto.connected:
                self.proto.transport.unregisterProducer()


def _bulk(proto):
    """Bigger socket reads and write batches for this connection (fewer reactor turns per MiB)."""
    if hasattr(proto.transport, "bufferSize"):
        proto.transport.bufferSize = max(proto.transport.bufferSize, 256 * 1024)


def _wait_for_upload(proto, upload_id):
    """A Deferred firing with the file id on ``upload_done``, failing on ``upload_failed`` or
    on an error frame about this upload."""
    d = defer.Deferred()

    def on_push(message):
        error = None
        if message.get("op") == "upload_done" and message.get("upload") == upload_id:
            result = message["file"]
        elif message.get("op") == "upload_failed" and message.get("upload") == upload_id:
            error = message.get("error") or {}
        elif message.get("ok") is False and (message.get("error") or {}).get("upload") == upload_id:
            error = message["error"]
        else:
            return
        unsubscribe()
        if error is not None:
            d.errback(RemoteError(error.get("code", "internal"), error.get("message", ""), error))
        else:
            d.callback(result)

    unsubscribe = proto.subscribe(on_push)
    _fail_on_lost(proto, d, "connection lost during the upload")
    return d


def _fail_on_lost(proto, d, message):
    """Fail ``d`` (if still waiting) when the connection goes; ``proto.lost`` keeps its result."""
    def lost(result):
        if not d.called:
            d.errback(ConnectionError(message))
        return result
    proto.lost.addCallback(lost)


def upload(proto, path, name=None, mime=None, size=None, sha256=None):
    """Upload a local file (new, resumed or instant); a Deferred firing with the file id.

    Pass ``size`` and ``sha256`` if known, to skip hashing the file first."""
    return defer.ensureDeferred(_upload(proto, path, name, mime, size, sha256))


async def _upload(proto, path, name, mime, size, sha256):
    if size is None or sha256 is None:
        size, sha256 = await threads.deferToThread(file_digest, path)
    reply = await proto.request("upload_begin", name=name or os.path.basename(path), size=size,
                                sha256=sha256, mime=mime)
    mode = reply["mode"]
    if mode == "instant":
        return reply["file"]
    if mode == "challenge":
        c = reply["challenge"]
        with open(path, "rb") as f:
            f.seek(c["offset"])
            data = f.read(c["length"])
        return (await proto.request("upload_proof", challenge=c["id"],
                                    proof=proof(c["nonce"], data)))["file"]
    upload_id = reply["upload"]
    done = _wait_for_upload(proto, upload_id)
    _bulk(proto)
    with open(path, "rb", buffering=0) as f:
        sender = _ChunkSender(proto, f, upload_id, reply["offset"], size, reply["chunk_size"])
        sender.start()
        try:
            return await done
        finally:
            sender.stopProducing()


class _DownloadSink:
    def __init__(self, fd, offset, end, hasher):
        self.fd, self.pos, self.end, self.hasher = fd, offset, end, hasher
        self.done = defer.Deferred()

    def data(self, offset, data):
        if offset != self.pos:
            self.done.errback(ValueError(f"download data at {offset}, expected {self.pos}"))
            return
        os.pwrite(self.fd, data, offset)
        if self.hasher is not None:
            self.hasher.update(data)
        self.pos += len(data)
        if self.pos >= self.end and not self.done.called:
            self.done.callback(self.pos)


def _router(proto):
    """The per-connection table of downloads that binary frames are routed to."""
    sinks = getattr(proto, "_download_sinks", None)
    if sinks is None:
        _bulk(proto)
        sinks = proto._download_sinks = {}

        def on_binary(payload):
            _, kind, stream, offset = BINARY_HEADER.unpack_from(payload)
            sink = sinks.get(stream) if kind == DOWNLOAD_DATA else None
            if sink is not None:
                sink.data(offset, memoryview(payload)[BINARY_HEADER.size:])
        proto.on_binary = on_binary
    return sinks


def download(proto, file_id, dest, offset=0, verify=True):
    """Download a file into ``dest`` from ``offset`` (bytes before it are kept); a Deferred
    firing with the server's file info. With ``verify`` the whole file's SHA-256 is checked."""
    return defer.ensureDeferred(_download(proto, file_id, dest, offset, verify))


async def _download(proto, file_id, dest, offset, verify):
    sinks = _router(proto)
    fd = os.open(dest, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, offset)
        hasher = None
        if verify:
            hasher = await threads.deferToThread(hash_file, dest, offset)
        info = await proto.request("download", file=file_id, offset=offset)
        sink = _DownloadSink(fd, offset, info["end"], hasher)
        if info["end"] <= offset:
            sink.done.callback(offset)
        sinks[info["download"]] = sink
        _fail_on_lost(proto, sink.done, "connection lost during the download")
        try:
            await sink.done
        finally:
            sinks.pop(info["download"], None)
    finally:
        os.close(fd)
    if verify and hasher.hexdigest() != info["sha256"]:
        raise ValueError(f"downloaded file {file_id} does not match its SHA-256")
    return info

