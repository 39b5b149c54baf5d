"""``Transfers``: the client's queue of uploads and downloads, as handles a GUI or a bot holds.

``client.transfers.upload(path)`` and ``client.transfers.download(file_id, dest)`` return a
``Transfer`` at once: recorded in the local store (so a restart can resume it), queued, and run
when a slot is free (``max_running`` at a time, uploads and downloads alike, several on one
connection: its ``ChunkMux`` interleaves their chunks). ``Transfer.pause()``, ``resume()`` and
``cancel()`` do what they say; ``Transfer.done`` fires with the file id (upload) or the local
path (download), or fails with ``TransferFailed`` or ``defer.CancelledError``. Each change of
state is a ``TransferState`` event and progress comes as ``TransferProgress`` events, both
through the client's event stream.

When the connection drops, running transfers wait; on the next connection each continues from
what the server holds (``upload_begin`` answers ``resume`` with its offset) or from the bytes on
disk (a download asks again from that ``offset``). Transfers a previous run left unfinished are
in ``unfinished()`` (from the local store) until the program resumes or cancels them.
"""
import os
import time

from twisted.internet import defer, threads
from twisted.logger import Logger

from imclient import transfer as wire
from imclient.events import TransferState
from imclient.protocol import NotConnected, RemoteError

#: States in which a transfer is not over.
LIVE = frozenset({"queued", "running", "paused"})


class TransferFailed(Exception):
    """A transfer the server refused or the disk could not serve (``reason`` says which)."""


def _now():
    return int(time.time() * 1000)


#: How many refused chunks of one transfer are answered by continuing from the server's offset.
REALIGN = 3


def _chunk_refused(failure):
    """An error frame refusing a chunk of an upload that the server still holds."""
    return (failure.check(RemoteError) is not None and failure.value.code == "bad_request"
            and "offset" in failure.value.error and "upload" in failure.value.error)


class Transfer:
    """One upload or download: its record in the store, its state, and its ``done`` Deferred.

    ``path`` is the local file (the source of an upload, the destination of a download);
    ``offset`` is how far it has come."""

    def __init__(self, manager, row):
        self._manager = manager
        self.id, self.direction = row["transfer_id"], row["direction"]
        self.path, self.name, self.size = row["path"], row["name"], row["size"]
        self.sha256, self.upload_id, self.file_id = row["sha256"], row["upload_id"], row["file_id"]
        self.offset = row["offset"]
        # A record from a previous run waits to be resumed, whatever it was doing then.
        self.state = "paused" if row["state"] in ("queued", "running", "active") else row["state"]
        self.error = None
        self.done = defer.Deferred()
        self.meter = manager.client.progress_meter(self.id, self.direction, self.name, self.size,
                                                   self.offset)
        self._attempt = None  # the Deferred of the run on the current connection
        self._realigned = 0  # chunk refusals answered by asking the server's offset again
        self._source = None  # an upload's chunks on the current connection

    def pause(self):
        """Stop moving bytes (keeping what has moved); ``resume()`` continues."""
        return self._manager._pause(self)

    def resume(self):
        """Queue a paused transfer (or one a previous run left unfinished) again."""
        return self._manager._resume(self)

    def cancel(self):
        """Give the transfer up: the server forgets an unfinished upload, a partial download
        is deleted, and ``done`` fails with ``CancelledError``."""
        return self._manager._cancel(self)

    def __repr__(self):
        return f"<Transfer #{self.id} {self.direction} {self.name} {self.state} {self.offset}/{self.size}>"


class Transfers:
    _log = Logger()

    def __init__(self, client, max_running=3):
        self.client, self.max_running = client, max_running
        self.handles = {}  # transfer id -> Transfer, every live one this process knows
        self._proto = None

    # Making transfers.
    def upload(self, path, name=None):
        """Queue an upload of a local file; fires with its ``Transfer`` (hashing it first). An
        unfinished upload of the same file from before is continued rather than begun again."""
        return defer.ensureDeferred(self._new_upload(os.path.abspath(path), name))

    async def _new_upload(self, path, name):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
        size, sha256 = await threads.deferToThread(wire.file_digest, path)
        for t in await self.unfinished():
            if t.direction == "upload" and t.path == path and t.sha256 == sha256:
                self._resume(t)
                return t
        tid = await self.client.store.transfer_add("upload", path, name or os.path.basename(path),
                                                   size, sha256, _now())
        return self._queue(await self._handle(tid))

    def download(self, file_id, dest=None):
        """Queue a download of a file into ``dest`` (a path or a directory; default the current
        directory, under the server's name for it made safe); fires with its ``Transfer``."""
        return defer.ensureDeferred(self._new_download(file_id, dest))

    async def _new_download(self, file_id, dest):
        info = (await self.client.request("file_info", file=file_id))["file"]
        if dest is None or os.path.isdir(dest):
            dest = os.path.join(dest or ".", wire.safe_name(info.get("name", ""), f"file-{file_id}"))
        dest = os.path.abspath(dest)
        tid = await self.client.store.transfer_add("download", dest, os.path.basename(dest),
                                                   info["size"], info["sha256"], _now(),
                                                   file_id=file_id)
        return self._queue(await self._handle(tid))

    async def _handle(self, tid):
        t = self.handles[tid] = Transfer(self, await self.client.store.transfer(tid))
        return t

    def unfinished(self):
        """Every transfer not done, failed or cancelled, those a previous run left included
        (paused until resumed); a Deferred of ``Transfer`` handles."""
        return defer.ensureDeferred(self._unfinished())

    async def _unfinished(self):
        for row in await self.client.store.transfers():
            if row["transfer_id"] not in self.handles:
                self.handles[row["transfer_id"]] = Transfer(self, row)
        return [t for t in self.handles.values() if t.state in LIVE]

    # The connection's life, told by the client.
    def connected(self, proto):
        self._proto = proto
        for t in self.handles.values():
            if t.state == "running" and t._attempt is None:
                self._start(t)
        self._pump()

    def disconnected(self):
        self._proto = None
        for t in self.handles.values():
            t._source = None  # the connection's producer went with it

    def stop(self):
        """The client stops: running transfers are left as they are, to resume next time."""
        self.disconnected()
        for t in self.handles.values():
            if t._attempt is not None:
                t._attempt.cancel()

    # States.
    def _queue(self, t):
        self._set_state(t, "queued")
        self._pump()
        return t

    def _pump(self):
        running = sum(1 for t in self.handles.values() if t.state == "running")
        for t in sorted(self.handles.values(), key=lambda t: t.id):
            if running >= self.max_running:
                return
            if t.state == "queued":
                self._set_state(t, "running")
                running += 1
                if self._proto is not None:
                    self._start(t)

    def _save(self, tid, **fields):
        d = self.client.store.transfer_update(tid, **fields)
        d.addErrback(lambda f: self._log.failure("saving transfer {id} failed", f, id=tid))

    def _set_state(self, t, state, **fields):
        t.state = state
        self._save(t.id, state=state, offset=t.offset, updated=_now(), **fields)
        self.client.events.emit(TransferState(t.id, t.direction, state, t.file_id, t.error))

    def _pause(self, t):
        if t.state not in ("queued", "running"):
            return t
        if t._source is not None:
            wire.mux_for(self._proto).remove(t._source)  # the upload waits on this connection
        elif t._attempt is not None:
            t._attempt.cancel()
        self._set_state(t, "paused")
        self._pump()
        return t

    def _resume(self, t):
        if t.state != "paused":
            return t
        if t._source is not None and self._proto is not None:
            self._set_state(t, "running")
            t.meter.restart(t.offset)
            wire.mux_for(self._proto).add(t._source)
            return t
        return self._queue(t)

    def _cancel(self, t):
        if t.state not in LIVE:
            return t
        if t._attempt is not None:
            t._attempt.cancel()
        if t.direction == "upload" and t.upload_id is not None and self._proto is not None:
            self.client.request("upload_cancel", upload=t.upload_id).addErrback(lambda f: None)
        if t.direction == "download" and os.path.exists(t.path) and t.offset < t.size:
            os.unlink(t.path)
        self._set_state(t, "cancelled")
        self.handles.pop(t.id, None)
        if not t.done.called:
            t.done.errback(defer.CancelledError(f"transfer {t.id} was cancelled"))
        self._pump()
        return t

    # Running one transfer on the current connection.
    def _start(self, t):
        run = self._run_upload if t.direction == "upload" else self._run_download
        t._attempt = defer.ensureDeferred(run(t, self._proto))
        t._attempt.addCallbacks(lambda result: self._finished(t, result),
                                lambda f: self._interrupted(t, f))

    async def _run_upload(self, t, proto):
        if os.path.getsize(t.path) != t.size:
            raise TransferFailed(f"{t.path} changed since it was queued ({t.size} bytes then)")
        begun = await wire.begin_upload(proto, t.path, t.name, t.size, t.sha256)
        if begun[0] == "file":
            return begun[1]
        _, t.upload_id, t.offset, chunk = begun
        self._save(t.id, upload_id=t.upload_id, offset=t.offset, updated=_now())
        t.meter.restart(t.offset)
        done = wire.wait_for_upload(proto, t.upload_id, on_progress=lambda offset: (
            self._save(t.id, offset=offset, updated=_now())))
        fd = os.open(t.path, os.O_RDONLY)
        t._source = wire.UploadSource(fd, t.upload_id, t.offset, t.size, chunk,
                                      on_written=lambda pos: self._progress(t, pos),
                                      on_failed=lambda e: done.called or done.errback(e))
        try:
            if t.state == "running":
                wire.mux_for(proto).add(t._source)
            return await done
        finally:
            if t._source is not None and proto.connected:
                wire.mux_for(proto).remove(t._source)
            t._source = None
            os.close(fd)

    async def _run_download(self, t, proto):
        fd = os.open(t.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            t.offset = min(os.fstat(fd).st_size, t.size)  # what is on disk is the truth
            os.ftruncate(fd, t.offset)
            t.meter.restart(t.offset)
            await wire.receive(proto, t.file_id, fd, t.offset, lambda pos: self._progress(t, pos))
        finally:
            os.close(fd)
        await wire.verify_file(t.path, t.sha256, t.file_id)
        return t.path

    def _progress(self, t, pos):
        t.offset = pos
        t.meter.update(pos)

    def _finished(self, t, result):
        t._attempt = None
        if t.direction == "upload":
            t.file_id = result
        t.offset = t.size
        t.meter.update(t.size)
        self._set_state(t, "done", file_id=t.file_id)
        self.handles.pop(t.id, None)
        t.done.callback(result)
        self._pump()

    def _interrupted(self, t, failure):
        t._attempt = None
        if failure.check(defer.CancelledError) or t.state != "running":
            return None  # paused, cancelled, or the client stopped: they said what happens
        if failure.check(ConnectionError, NotConnected) or self._proto is None:
            self._save(t.id, offset=t.offset, updated=_now())
            return None  # the next connection continues it
        if _chunk_refused(failure) and t._realigned < REALIGN:
            # A chunk met an offset the server did not expect (bytes of a dropped connection
            # landed after we asked where to go on): ask again where it stands, and go on.
            t._realigned += 1
            self._start(t)
            return None
        t.error = failure.getErrorMessage()
        self._log.info("transfer {id} failed: {error}", id=t.id, error=t.error)
        self._set_state(t, "failed")
        self.handles.pop(t.id, None)
        reason = failure.value if failure.check(RemoteError) else None
        t.done.errback(failure.value if failure.check(TransferFailed) else
                       TransferFailed(t.error) if reason is None else
                       TransferFailed(f"{reason.message} ({reason.code})"))
        self._pump()
        return None
