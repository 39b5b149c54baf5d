"""The file engine: the rules of uploads (new, resumed, instant), chunks, downloads and expiry.

It joins the store (rows), the blob store (bytes on disk), open upload sessions and download
producers. Changes that touch a blob's row *and* its file on disk (finishing an upload, dropping
the last reference) run under a per-content lock, so a delete never unlinks bytes that a
finishing upload has just counted on. That lock is in-process: one server process per data dir.
"""
import hashlib
import secrets

from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

from imserver.clock import now_ms
from imserver.effects import Direct
from imserver.errors import ImError
from imserver.policy import Policy
from imserver.store import files
from imserver.transfer import frames
from imserver.transfer.blobs import BlobStore, hash_prefix, is_sha256
from imserver.transfer.challenge import Challenges
from imserver.transfer.download import DownloadProducer
from imserver.transfer.uploads import UploadSession

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: An ``upload_progress`` push is sent each time this many more bytes are on disk.
PROGRESS_EVERY = 4 * 1024 * 1024


class FileEngine:
    _log = Logger()

    def __init__(self, config, store, reactor, clock, announce, random=None, policy=None):
        self.config = config
        self.policy = policy or Policy(config)
        self.db = store.db
        self.reactor = reactor
        self.clock = clock
        self.announce = announce  # announce(effects, origin): upload events, see _tell
        self.blobs = BlobStore(config.data_dir, reactor)
        self.challenges = Challenges(clock, random or secrets.SystemRandom())
        self.sessions = {}
        self.downloads = {}
        self._loading = {}
        self._locks = {}
        self._next_download = 1
        # With fsync, each batch's writeback starts as soon as it is written, so the final fsync
        # waits only for the tail of the file.
        self._sync = config.upload_sync == "fsync"

    def chunk_size(self):
        return frames.chunk_size(self.config.max_frame)

    # -- uploads -------------------------------------------------------------------------------

    async def begin(self, user_id, name, size, sha256, mime):
        sha256 = sha256.lower()
        if not name:
            raise ImError("bad_request", "field 'name' is empty")
        if not is_sha256(sha256):
            raise ImError("bad_request", "field 'sha256' must be 64 hex digits")
        if size > self.config.max_file_size:
            raise ImError("too_large", f"{size} bytes is more than the largest file this server "
                                       f"takes ({self.config.max_file_size} bytes)")
        if size == 0:
            return await self._empty_file(user_id, name, sha256, mime)
        quota, now = await self.policy.quota(user_id), now_ms(self.clock)
        if await self.db.run("owned_file", files.owned_file, user_id, sha256, size) is not None:
            file_id = await self.db.run("file_add_reference", files.add_reference, user_id,
                                        sha256, size, name, mime, now, quota)
            if file_id is not None:
                return {"mode": "instant", "file": file_id}
        elif (self.config.instant_scope == "global"
                and await self.db.run("blob_exists", files.blob_exists, sha256, size)
                and self.blobs.has_blob(sha256)):
            challenge = self.challenges.issue(user_id, sha256, size, name, mime)
            return {"mode": "challenge", "challenge": challenge.to_wire()}
        upload_id, resumed = await self.db.run("upload_begin", files.begin_upload, user_id, sha256,
                                               size, name, mime, now, quota)
        session = await self._session(upload_id)
        return {"mode": "resume" if resumed else "new", "upload": upload_id,
                "offset": session.received, "chunk_size": self.chunk_size()}

    async def _empty_file(self, user_id, name, sha256, mime):
        if sha256 != EMPTY_SHA256:
            raise ImError("checksum_mismatch", "a 0-byte file has SHA-256 " + EMPTY_SHA256)

        async def store_empty():
            if not self.blobs.has_blob(EMPTY_SHA256):
                await self.blobs.in_thread(self.blobs.write_blob, EMPTY_SHA256, b"")
            return await self.db.run("file_add_blob_reference", files.add_blob_reference, user_id,
                                     EMPTY_SHA256, 0, name, mime, now_ms(self.clock))
        return {"mode": "instant", "file": await self._locked(EMPTY_SHA256, store_empty)}

    async def proof(self, user_id, challenge_id, proof):
        c = self.challenges.take(challenge_id, user_id)
        if c is None:
            raise ImError("not_found", "no such challenge (unknown, used or expired)")
        data = await self.blobs.in_thread(self.blobs.read_range, c.sha256, c.offset, c.length)
        if not self.challenges.check(c, data, proof):
            raise ImError("forbidden", "the proof does not match the content; upload the file")
        quota = await self.policy.quota(user_id)
        file_id = await self.db.run("file_add_reference", files.add_reference, user_id, c.sha256,
                                    c.size, c.name, c.mime, now_ms(self.clock), quota)
        if file_id is None:
            raise ImError("not_found", "the content was deleted meanwhile; upload the file")
        return {"mode": "instant", "file": file_id}

    async def status(self, user_id, upload_id):
        session = await self._session(upload_id, user_id)
        return {"upload": upload_id, "offset": session.received, "size": session.size,
                "sha256": session.sha256}

    async def cancel(self, user_id, upload_id):
        session = await self._session(upload_id, user_id)
        if session.finishing:
            raise ImError("bad_request", "the upload is complete and being verified")
        await self._drop(session)

    async def _session(self, upload_id, user_id=None):
        """The open session of an upload (opened from its row and part file if need be)."""
        session = self.sessions.get(upload_id)
        if session is None:
            waiters = self._loading.get(upload_id)
            if waiters is None:
                self._loading[upload_id] = []
                try:
                    session = await self._open(upload_id)
                except BaseException as e:
                    for d in self._loading.pop(upload_id):
                        d.errback(e)
                    raise
                for d in self._loading.pop(upload_id):
                    d.callback(session)
            else:
                d = defer.Deferred()
                waiters.append(d)
                session = await d
        if user_id is not None and session.owner != user_id:
            raise ImError("forbidden", "that upload is not yours")
        return session

    async def _open(self, upload_id):
        info = await self.db.run("upload_get", files.upload, upload_id)
        if info is None:
            raise ImError("not_found", f"no unfinished upload {upload_id}")
        fd, length = await self.blobs.in_thread(self.blobs.open_part, upload_id)
        try:
            if length > info["size"]:  # cannot be ours: start over rather than trust it
                await self.blobs.in_thread(self.blobs.truncate, fd, 0)
                length = 0
            # Re-hash what survived (a restart, or a session dropped by expiry) off the reactor.
            hasher = await self.blobs.in_thread(hash_prefix, self.blobs.part_path(upload_id), length)
        except BaseException:
            self.blobs.close_fd(fd)
            raise
        session = UploadSession(info, fd, length, hasher, self.blobs, self._progress,
                                writeback=self._sync)
        session.touched = self.clock.seconds()
        session.progress_mark = length
        self.sessions[upload_id] = session
        return session

    def binary_received(self, conn, user, payload):
        """A binary frame from ``conn``, where ``user`` is logged in (or None). Raises ImError
        for a frame it refuses (the connection answers with an error frame)."""
        try:
            kind, upload_id, offset, data = frames.decode(payload)
        except frames.FrameError as e:
            raise ImError("bad_request", str(e)) from None
        if kind != frames.UPLOAD_CHUNK:
            raise ImError("bad_request", f"binary frame kind {kind} is not an upload chunk (1)")
        if user is None:
            raise ImError("not_authenticated", "log in before sending file data")
        session = self.sessions.get(upload_id)
        if session is None:
            raise ImError("not_found", f"upload {upload_id} is not open; ask upload_status (or "
                                       "upload_begin) and continue from its offset",
                          upload=upload_id)
        if session.owner != user.user_id:
            raise ImError("forbidden", "that upload is not yours", upload=upload_id)
        if session.accept(conn, offset, data, self.clock.seconds()):
            session.finishing = True
            defer.ensureDeferred(self._finish(session))

    def _progress(self, session, nbytes):
        if session.written - session.progress_mark >= PROGRESS_EVERY and session.written < session.size:
            session.progress_mark = session.written
            self._tell(session, {"op": "upload_progress", "upload": session.id,
                                 "offset": session.written})

    def _tell(self, session, message):
        """Tell the connection sending the upload (or, if it has gone, the owner's devices)."""
        self.announce([Direct(message, fallback_user=session.owner)], session.conn)

    async def _finish(self, session):
        try:
            await session.idle()
            if session.hasher.hexdigest() != session.sha256:
                await self._drop(session)
                raise ImError("checksum_mismatch", "the bytes received do not have the declared "
                                                   "SHA-256; they were discarded")
            file_id = await self._locked(session.sha256, self._commit, session)
        except ImError as e:
            self._tell(session, {"op": "upload_failed", "upload": session.id, "error": e.to_wire()})
            return
        except Exception:
            self._log.failure("finishing upload {id} failed", id=session.id)
            self._tell(session, {"op": "upload_failed", "upload": session.id,
                                 "error": {"code": "internal", "message": "internal server error"}})
            return
        self._tell(session, {"op": "upload_done", "upload": session.id, "file": file_id,
                             "size": session.size, "sha256": session.sha256})

    async def _commit(self, session):
        await self.blobs.in_thread(self.blobs.commit_part, session.id, session.fd, session.sha256,
                                   self._sync)
        self.sessions.pop(session.id, None)
        session.close()
        return await self.db.run("file_add_blob_reference", files.add_blob_reference,
                                 session.owner, session.sha256, session.size, session.name,
                                 session.mime, now_ms(self.clock), upload_id=session.id)

    async def _drop(self, session):
        """Forget an unfinished upload: its session, its part file and its row."""
        self.sessions.pop(session.id, None)
        session.finishing = True
        try:
            await session.idle()
        except ImError:
            pass
        session.close()
        await self.blobs.in_thread(self.blobs.remove_part, session.id)
        await self.db.run("upload_delete", files.delete_upload, session.id)

    async def _locked(self, sha256, fn, *args):
        lock = self._locks.get(sha256)
        if lock is None:
            lock = self._locks[sha256] = defer.DeferredLock()
        await lock.acquire()
        try:
            return await fn(*args)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(sha256, None)

    # -- files ---------------------------------------------------------------------------------

    async def delete(self, user_id, file_id):
        result = await files.run_delete(self.db, user_id, file_id)
        if result is None:
            raise ImError("not_found", "you have no such file")
        sha256, last = result
        if last:
            await self._locked(sha256, self._remove_if_unreferenced, sha256)

    async def _remove_if_unreferenced(self, sha256):
        # An upload that finished meanwhile may have brought the content back: keep it then.
        refcount, _ = await self.db.run("blob_refcount", files.refcount, sha256)
        if refcount == 0:
            await self.blobs.in_thread(self.blobs.remove_blob, sha256)

    async def download(self, conn, user_id, file_id, offset, length):
        info = await self.db.run("file_readable", files.readable_file, file_id, user_id)
        if info is None:
            raise ImError("not_found", "no such file")
        size = info["size"]
        if offset > size:
            raise ImError("bad_request", f"offset {offset} is past the end of the file ({size})")
        end = size if length is None else min(size, offset + length)
        rate = await self.policy.download_rate(user_id)
        try:
            fileobj = self.blobs.open_blob(info["sha256"])
        except FileNotFoundError:
            self._log.error("content {sha256} of file {id} is missing", sha256=info["sha256"],
                            id=file_id)
            raise ImError("internal", "the file's content is missing on the server") from None
        download_id, self._next_download = self._next_download, self._next_download + 1
        producer = DownloadProducer(conn, fileobj, download_id, offset, end,
                                    on_done=lambda p: self.downloads.pop(p.id, None),
                                    clock=self.clock, rate=rate)
        self.downloads[download_id] = producer
        self.reactor.callLater(0, producer.start)  # after the reply has been written
        return {"download": download_id, "file": file_id, "offset": offset, "end": end,
                "size": size, "sha256": info["sha256"], "name": info["name"], "mime": info["mime"]}

    def cancel_download(self, conn, download_id):
        producer = self.downloads.get(download_id)
        if producer is None or producer.conn is not conn:
            raise ImError("not_found", "no such download on this connection")
        producer.stopProducing()

    # -- housekeeping --------------------------------------------------------------------------

    async def expire(self):
        """Remove uploads idle for longer than ``config.upload_expiry``, with their partial data."""
        self.challenges.expire()
        now = self.clock.seconds()
        cutoff = now - self.config.upload_expiry
        # Chunks only touch the session in memory; bring the rows up to date first.
        touched = {s.id: int(s.touched * 1000) for s in self.sessions.values()}
        if touched:
            await self.db.run("uploads_touch", files.touch_uploads, touched)
        expired = await self.db.run("uploads_expired", files.expired_uploads, int(cutoff * 1000))
        for upload_id in expired:
            session = self.sessions.get(upload_id)
            if session is not None and (session.touched > cutoff or session.finishing):
                continue
            self._log.info("upload {id} expired; removing its partial data", id=upload_id)
            if session is not None:
                await self._drop(session)
            else:
                await self.blobs.in_thread(self.blobs.remove_part, upload_id)
                await self.db.run("upload_delete", files.delete_upload, upload_id)

    def _expire_safely(self):
        # For the timer: a failure is logged, and the timer keeps running.
        d = defer.ensureDeferred(self.expire())
        d.addErrback(lambda f: self._log.failure("expiring uploads failed", f))
        return d

    def expiry_service(self):
        """A service that runs ``expire`` on the engine's clock, a few times per expiry period."""
        service = TimerService(min(600.0, self.config.upload_expiry / 4), self._expire_safely)
        service.clock = self.clock
        return service

    def close(self):
        """Close every open part file (the server is stopping; rows and parts stay for resume)."""
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()
        for producer in list(self.downloads.values()):
            producer.stopProducing()
