"""File transfer over real loopback sockets, on SQLite and MySQL: uploads (new, resumed after a
lost connection or a restart, instant with proof), downloads, access, bad chunks, expiry."""
import hashlib
import os
import random
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from conftest import RunningServer, make_server
from imclient import transfer
from imclient.protocol import RemoteError
from helpers import error_code, usage_both_ways
from imserver.config import Config
from imserver.policy import Policy
from imserver.store import files as files_store
from imserver.transfer import frames, uploads

MiB = 1024 * 1024


def file_config(tmp_path, **kw):
    return Config(max_frame=64 * 1024, data_dir=str(tmp_path / "data"), **kw)


async def start(store, tmp_path, **kw):
    rs = RunningServer(make_server(store, file_config(tmp_path, **kw)), tmp_path)
    rs.listen()
    return rs


async def stop(rs):
    await rs.stop()
    rs.server.files.close()


def _serve(store, tmp_path, **kw):
    rs = pytest_twisted.blockon(defer.ensureDeferred(start(store, tmp_path, **kw)))
    yield rs
    pytest_twisted.blockon(defer.ensureDeferred(stop(rs)))


@pytest.fixture
def files(store, tmp_path):
    yield from _serve(store, tmp_path)


@pytest.fixture
def files_user_scope(store, tmp_path):
    """A server whose instant uploads are limited to the user's own files."""
    yield from _serve(store, tmp_path, instant_scope="user")


def make_file(tmp_path, size, name="src.bin", seed=0):
    path = tmp_path / name
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for start in range(0, size, 8 * MiB):
            f.write(rng.randbytes(min(8 * MiB, size - start)))
    return str(path)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(8 * MiB):
            h.update(data)
    return h.hexdigest()


def send_chunk(client, upload_id, offset, data):
    client.send_raw(frames.header(frames.UPLOAD_CHUNK, upload_id, offset) + data)


def send_range(client, upload_id, data, start, end, chunk=frames.MAX_DATA):
    for pos in range(start, end, chunk):
        send_chunk(client, upload_id, pos, data[pos:min(end, pos + chunk)])


def collect(client):
    seen = []
    client.subscribe(seen.append)
    return seen


def refcount(rs, sha):
    return rs.server.store.db.run("blob_refcount", files_store.refcount, sha)


async def until(predicate, tries=500):
    for _ in range(tries):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("size", [0, 1, frames.MAX_DATA + 1, 200 * MiB])
@pytest_twisted.ensureDeferred
async def test_upload_then_download_round_trip(files, tmp_path, size):
    alice = await files.user("alice")
    src = make_file(tmp_path, size)
    sha = digest(src)
    file_id = await transfer.upload(alice, src, mime="application/x-test")
    info = (await alice.request("file_info", file=file_id))["file"]
    assert info["size"] == size and info["sha256"] == sha and info["name"] == "src.bin"
    blob = tmp_path / "data" / "blobs" / sha[:2] / sha[2:4] / sha
    assert digest(blob) == sha
    if size:  # a 0-byte file never needs an upload, so it has no parts directory
        assert os.listdir(tmp_path / "data" / "parts") == []
    dest = str(tmp_path / "dest.bin")
    got = await transfer.download(alice, file_id, dest)
    assert got["size"] == os.path.getsize(dest) == size and digest(dest) == sha


@pytest_twisted.ensureDeferred
async def test_download_resumes_from_offset_and_by_range_on_two_connections(files, tmp_path):
    alice = await files.user("alice")
    src = make_file(tmp_path, 3 * MiB + 5)
    data = open(src, "rb").read()
    file_id = await transfer.upload(alice, src)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(data[:MiB])
    await transfer.download(alice, file_id, str(dest), offset=MiB)
    assert dest.read_bytes() == data
    extra = await files.client()
    await extra.resume(alice.token)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    open(b, "wb").write(data[:MiB])  # b continues from 1 MiB on the extra connection
    await defer.gatherResults([
        transfer.download(alice, file_id, a), transfer.download(extra, file_id, b, offset=MiB)])
    assert open(a, "rb").read() == data == open(b, "rb").read()


@pytest_twisted.ensureDeferred
async def test_upload_killed_at_60_percent_resumes_on_a_new_connection(files, tmp_path):
    alice = await files.user("alice")
    size = 5 * MiB + 123
    src = make_file(tmp_path, size)
    data = open(src, "rb").read()
    begin = await alice.request("upload_begin", name="big.bin", size=size, sha256=digest(src))
    assert begin["mode"] == "new" and begin["offset"] == 0
    upload_id, cut = begin["upload"], int(size * 0.6)
    send_range(alice, upload_id, data, 0, cut)
    assert (await alice.request("upload_status", upload=upload_id))["offset"] == cut
    alice.transport.abortConnection()
    await alice.lost

    again = await files.client()
    await again.resume(alice.token)
    again_begin = await again.request("upload_begin", name="big.bin", size=size, sha256=digest(src))
    assert again_begin["mode"] == "resume" and again_begin["upload"] == upload_id
    assert again_begin["offset"] == cut
    file_id = await transfer.upload(again, src, name="big.bin")
    dest = str(tmp_path / "dest.bin")
    await transfer.download(again, file_id, dest)
    assert open(dest, "rb").read() == data


@pytest_twisted.ensureDeferred
async def test_server_restart_mid_upload_then_resume(store, tmp_path):
    first = await start(store, tmp_path)
    alice = await first.user("alice")
    size = 3 * MiB
    src = make_file(tmp_path, size)
    data = open(src, "rb").read()
    upload_id = (await alice.request("upload_begin", name="r.bin", size=size,
                                     sha256=digest(src)))["upload"]
    send_range(alice, upload_id, data, 0, size // 2)
    assert (await alice.request("upload_status", upload=upload_id))["offset"] == size // 2
    await stop(first)

    second = await start(store, tmp_path)  # a new Server on the same database and data dir
    try:
        c = await second.client()
        await c.resume(alice.token)
        status = await c.request("upload_status", upload=upload_id)
        assert status["offset"] == size // 2  # the part file survived; its prefix was re-hashed
        file_id = await transfer.upload(c, src, name="r.bin")
        dest = str(tmp_path / "dest.bin")
        await transfer.download(c, file_id, dest)
        assert open(dest, "rb").read() == data
    finally:
        await stop(second)


@pytest_twisted.ensureDeferred
async def test_instant_upload_of_another_users_file_needs_the_right_proof(files, tmp_path):
    alice, bob = await files.user("alice"), await files.user("bob")
    src = make_file(tmp_path, 2 * MiB)
    data, sha = open(src, "rb").read(), digest(src)
    alice_file = await transfer.upload(alice, src)
    files.server.files.challenges.random = random.Random(7)  # the injected random source

    reply = await bob.request("upload_begin", name="mine.bin", size=len(data), sha256=sha)
    assert reply["mode"] == "challenge" and "upload" not in reply and "file" not in reply
    c = reply["challenge"]
    expected = random.Random(7)
    assert c["offset"] == expected.randrange(len(data) - c["length"] + 1)
    wrong = transfer.proof(c["nonce"], b"\0" * c["length"])
    assert await error_code(bob.request("upload_proof", challenge=c["id"], proof=wrong)) == "forbidden"
    # One answer per challenge: the right answer to a used challenge is refused too.
    right = transfer.proof(c["nonce"], data[c["offset"]:c["offset"] + c["length"]])
    assert await error_code(bob.request("upload_proof", challenge=c["id"], proof=right)) == "not_found"

    bob_file = await transfer.upload(bob, src, name="mine.bin")  # a new challenge, answered right
    assert bob_file != alice_file
    assert await refcount(files, sha) == (2, 2)
    dest = str(tmp_path / "dest.bin")
    await transfer.download(bob, bob_file, dest)
    assert open(dest, "rb").read() == data
    # The owner uploading the same content again is instant without a challenge.
    again = await alice.request("upload_begin", name="copy", size=len(data), sha256=sha)
    assert again["mode"] == "instant" and again["file"] not in (alice_file, bob_file)


@pytest_twisted.ensureDeferred
async def test_instant_scope_user_uploads_again_but_stores_once(files_user_scope, tmp_path):
    rs = files_user_scope
    alice, bob = await rs.user("alice"), await rs.user("bob")
    src = make_file(tmp_path, 300_000)
    sha = digest(src)
    await transfer.upload(alice, src)
    reply = await bob.request("upload_begin", name="x", size=300_000, sha256=sha)
    assert reply["mode"] == "new"
    await bob.request("upload_cancel", upload=reply["upload"])
    await transfer.upload(bob, src)
    assert await refcount(rs, sha) == (2, 2)
    blobs = [f for _, _, fs in os.walk(tmp_path / "data" / "blobs") for f in fs]
    assert blobs == [sha]


@pytest_twisted.ensureDeferred
async def test_access_is_owner_or_granted(files, tmp_path):
    alice, bob = await files.user("alice"), await files.user("bob")
    file_id = await transfer.upload(alice, make_file(tmp_path, 1000))
    dest = str(tmp_path / "dest.bin")
    assert await error_code(bob.request("download", file=file_id)) == "forbidden"
    assert await error_code(bob.request("file_info", file=file_id)) == "forbidden"
    assert await error_code(bob.request("download", file=file_id + 100)) == "not_found"
    assert await error_code(bob.request("file_delete", file=file_id)) == "not_found"
    assert await error_code(alice.request("download", file=file_id, offset=1001)) == "bad_request"
    await files.server.store.db.run("file_grant", files_store.grant, file_id, user_id=bob.user_id)
    await transfer.download(bob, file_id, dest)
    assert os.path.getsize(dest) == 1000
    await alice.request("file_delete", file=file_id)
    assert await error_code(bob.request("download", file=file_id)) == "not_found"


@pytest_twisted.ensureDeferred
async def test_bad_chunks_are_refused_and_nothing_written_is_lost(files, tmp_path):
    alice, bob = await files.user("alice"), await files.user("bob")
    size = 200_000
    src = make_file(tmp_path, size)
    data = open(src, "rb").read()
    upload_id = (await alice.request("upload_begin", name="b", size=size,
                                     sha256=digest(src)))["upload"]
    errors, bob_errors = collect(alice), collect(bob)
    held = 190_000
    send_range(alice, upload_id, data, 0, held)
    send_chunk(alice, upload_id + 1000, 0, b"x")            # unknown upload
    send_chunk(alice, upload_id, 50_000, b"x" * 10)         # wrong offset (rewrites the past)
    send_chunk(alice, upload_id, held + 10, b"x" * 10)      # wrong offset (a gap)
    send_chunk(alice, upload_id, held, b"x" * 10_001)       # past the declared size
    alice.send_raw(b"\x00\x01short")                       # not even a header
    send_chunk(bob, upload_id, held, b"x" * 10)             # another user's upload
    assert (await alice.request("upload_status", upload=upload_id))["offset"] == held
    await bob.request("ping")
    codes = [e["error"]["code"] for e in errors]
    assert codes == ["not_found", "bad_request", "bad_request", "bad_request", "bad_request"]
    assert [e["error"].get("offset") for e in errors[1:4]] == [held] * 3
    assert [e["error"]["code"] for e in bob_errors] == ["forbidden"]
    assert await error_code(bob.request("upload_status", upload=upload_id)) == "forbidden"
    send_range(alice, upload_id, data, held, size)
    await until(lambda: any(e.get("op") == "upload_done" for e in errors))
    file_id = [e for e in errors if e.get("op") == "upload_done"][0]["file"]
    dest = str(tmp_path / "dest.bin")
    await transfer.download(alice, file_id, dest)
    assert open(dest, "rb").read() == data


@pytest_twisted.ensureDeferred
async def test_many_tiny_chunks(files, tmp_path):
    alice = await files.user("alice")
    src = make_file(tmp_path, 30_000)
    data = open(src, "rb").read()
    upload_id = (await alice.request("upload_begin", name="t", size=len(data),
                                     sha256=digest(src)))["upload"]
    done = collect(alice)
    send_range(alice, upload_id, data, 0, len(data), chunk=7)  # thousands of chunks in one batch
    await until(lambda: any(m.get("op") == "upload_done" for m in done))
    dest = str(tmp_path / "dest.bin")
    await transfer.download(alice, done[-1]["file"], dest)
    assert open(dest, "rb").read() == data


@pytest_twisted.ensureDeferred
async def test_checksum_mismatch_discards_the_upload(files, tmp_path):
    alice = await files.user("alice")
    src = make_file(tmp_path, 70_000)
    lie = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(RemoteError) as info:
        await transfer.upload(alice, src, size=70_000, sha256=lie)
    assert info.value.code == "checksum_mismatch"
    assert os.listdir(tmp_path / "data" / "parts") == []
    assert (await alice.request("files_list"))["files"] == []
    assert await error_code(alice.request("upload_begin", name="e", size=0, sha256=lie)) == \
        "checksum_mismatch"


@pytest_twisted.ensureDeferred
async def test_limits_are_refused_up_front(store, tmp_path):
    rs = await start(store, tmp_path, max_file_size=1000, user_quota=1500)
    try:
        alice = await rs.user("alice")
        sha = "ab" * 32
        assert await error_code(alice.request("upload_begin", name="a", size=1001, sha256=sha)) == \
            "too_large"
        await transfer.upload(alice, make_file(tmp_path, 1000))
        assert await error_code(alice.request("upload_begin", name="a", size=501, sha256=sha)) == \
            "quota_exceeded"
        assert await error_code(alice.request("upload_begin", name="a", size=5,
                                              sha256="../../etc")) == "bad_request"
    finally:
        await stop(rs)


@pytest_twisted.ensureDeferred
async def test_usage_counters_follow_the_engines_uploads_cancels_and_deletes(files, tmp_path):
    alice, bob = await files.user("alice"), await files.user("bob")
    done_file = await transfer.upload(alice, make_file(tmp_path, 70_000, "a.bin"))
    shared = make_file(tmp_path, 50_000, "shared.bin", seed=1)
    await transfer.upload(alice, shared)
    await transfer.upload(bob, shared)  # instant, after a proof
    await transfer.upload(alice, str(tmp_path / "a.bin"))  # instant: her own content
    unfinished = {}
    for name, seed in (("cancelled", 2), ("left", 3)):
        src = make_file(tmp_path, 30_000, name, seed=seed)
        begin = await alice.request("upload_begin", name=name, size=30_000, sha256=digest(src))
        send_range(alice, begin["upload"], open(src, "rb").read(), 0, 10_000)
        unfinished[name] = begin["upload"]
    await alice.request("upload_cancel", upload=unfinished["cancelled"])
    with pytest.raises(RemoteError):  # discarded: its bytes stop counting
        await transfer.upload(alice, make_file(tmp_path, 20_000, "lie.bin", seed=4),
                              size=20_000, sha256=hashlib.sha256(b"other").hexdigest())
    await alice.request("file_delete", file=done_file)
    summed, counted = await files.server.store.db.run("usage", usage_both_ways)
    assert summed == counted == {alice.user_id: 70_000 + 50_000 + 30_000, bob.user_id: 50_000}


class PerUserQuota(Policy):
    """A policy whose quota differs per user, as a tier table's would."""

    def __init__(self, config, quotas):
        super().__init__(config)
        self.quotas = quotas

    def quota(self, user_id):
        return defer.succeed(self.quotas[user_id])


@pytest_twisted.ensureDeferred
async def test_the_engine_asks_the_policy_for_each_users_quota(files, tmp_path):
    alice, bob = await files.user("alice"), await files.user("bob")
    src = make_file(tmp_path, 1000)
    files.server.files.policy = PerUserQuota(files.server.config,
                                             {alice.user_id: 999, bob.user_id: 1000})
    sha = digest(src)
    assert await error_code(alice.request("upload_begin", name="a", size=1000, sha256=sha)) == \
        "quota_exceeded"
    await transfer.upload(bob, src)
    reply = await alice.request("upload_begin", name="a", size=1000, sha256=sha)
    assert reply["mode"] == "challenge"  # bob's content: the proof is checked against her quota
    c = reply["challenge"]
    data = open(src, "rb").read()[c["offset"]:c["offset"] + c["length"]]
    assert await error_code(alice.request("upload_proof", challenge=c["id"],
                                          proof=transfer.proof(c["nonce"], data))) == \
        "quota_exceeded"


@pytest_twisted.ensureDeferred
async def test_unfinished_uploads_expire(files, tmp_path):
    clock = task.Clock()
    engine = files.server.files
    engine.clock = engine.challenges.clock = clock
    timer = engine.expiry_service()  # as service.py runs it, on the engine's clock
    timer.startService()
    alice = await files.user("alice")
    size = 300_000
    src, other = make_file(tmp_path, size), make_file(tmp_path, size, "other.bin", seed=1)
    data = open(src, "rb").read()
    stale = (await alice.request("upload_begin", name="s", size=size, sha256=digest(src)))["upload"]
    send_range(alice, stale, data, 0, 100_000)
    await alice.request("upload_status", upload=stale)
    parts = tmp_path / "data" / "parts"
    assert os.listdir(parts) == [f"{stale}.part"]
    scheduled = lambda: timer._loop.call is not None  # noqa: E731  (not inside a run)
    await until(scheduled)
    clock.advance(engine.config.upload_expiry - 10)
    await until(scheduled)
    fresh = (await alice.request("upload_begin", name="f", size=size, sha256=digest(other)))["upload"]
    await until(lambda: sorted(os.listdir(parts)) == sorted([f"{stale}.part", f"{fresh}.part"]))
    clock.advance(timer.step)  # the timer runs expire(): only the stale upload is old enough
    await until(lambda: os.listdir(parts) == [f"{fresh}.part"])
    assert await error_code(alice.request("upload_status", upload=stale)) == "not_found"
    assert (await alice.request("upload_status", upload=fresh))["offset"] == 0
    timer.stopService()


@pytest_twisted.ensureDeferred
async def test_client_file_names_never_become_paths(files, tmp_path):
    alice = await files.user("alice")
    src = make_file(tmp_path, 5000)
    file_id = await transfer.upload(alice, src, name="../../../escaped.txt")
    info = (await alice.request("file_info", file=file_id))["file"]
    assert info["name"] == "../../../escaped.txt"  # kept as data
    found = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path.parent) for f in fs
             if "escaped" in f]
    assert found == []
    assert transfer.safe_name(info["name"]) == "escaped.txt"
    assert transfer.safe_name("..\\..\\x/..") == "download"


@pytest_twisted.ensureDeferred
async def test_slow_downloader_pauses_disk_reads(files, tmp_path):
    alice = await files.user("alice")
    size = 20 * MiB
    file_id = await transfer.upload(alice, make_file(tmp_path, size))
    # Small kernel buffers, so what the socket absorbs is bounded; then stop reading.
    server_conn = [p for p in files.server.connections.all if p.user.user_id == alice.user_id][0]
    server_conn.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    alice.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    alice.transport.pauseProducing()
    reply_d = transfer.download(alice, file_id, str(tmp_path / "dest.bin"), verify=False)
    await until(lambda: files.server.files.downloads)
    producer = list(files.server.files.downloads.values())[0]
    seen = []

    def settled():  # the kernel buffers are full: the position stopped moving
        seen.append(producer.pos)
        return producer.paused and len(seen) > 5 and len(set(seen[-5:])) == 1
    await until(settled)
    before = producer.pos
    await task.deferLater(reactor, 0.2, lambda: None)
    assert producer.paused and producer.pos == before < 2 * MiB  # nothing more read from disk
    alice.transport.resumeProducing()
    await reply_d
    assert os.path.getsize(tmp_path / "dest.bin") == size


@pytest_twisted.ensureDeferred
async def test_download_at_a_limited_rate_is_paced_on_the_engines_clock(store, tmp_path):
    rate = 512 * 1024
    rs = await start(store, tmp_path, download_rate=rate)
    try:
        alice = await rs.user("alice")
        src = make_file(tmp_path, 2 * MiB + 7)
        file_id = await transfer.upload(alice, src)
        engine, clock = rs.server.files, task.Clock()
        engine.clock = clock  # the paced waits run on the engine's clock: simulated time
        dest = tmp_path / "dest.bin"
        d = transfer.download(alice, file_id, str(dest))
        await until(lambda: engine.downloads)
        producer = list(engine.downloads.values())[0]
        chunk = producer.chunk
        assert chunk == rate // 10
        await until(lambda: dest.exists() and dest.stat().st_size == chunk)  # the burst
        steps = 0
        while not d.called:
            clock.advance(0.1)
            steps += 1
            # Never ahead of the rate (a hair's slack for float sums), and what was sent arrives.
            assert producer.pos <= chunk + rate * steps / 10 + 1
            await until(lambda: d.called or dest.stat().st_size == producer.pos)
        assert (await d)["size"] == os.path.getsize(dest) and digest(dest) == digest(src)
        # At the rate throughout: one step per tenth of a second's bytes, give or take one.
        assert abs(steps - (os.path.getsize(src) - chunk) / (rate / 10)) <= 1
    finally:
        await stop(rs)


@pytest_twisted.ensureDeferred
async def test_deleting_the_last_reference_while_the_same_content_finishes_uploading(
        files_user_scope, tmp_path):
    rs = files_user_scope
    alice, bob = await rs.user("alice"), await rs.user("bob")
    src = make_file(tmp_path, 500_000)
    sha, data = digest(src), open(src, "rb").read()
    blob = tmp_path / "data" / "blobs" / sha[:2] / sha[2:4] / sha
    for _ in range(3):
        alice_file = await transfer.upload(alice, src)
        upload_id = (await bob.request("upload_begin", name="b", size=len(data),
                                       sha256=sha))["upload"]
        done = collect(bob)
        send_range(bob, upload_id, data, 0, len(data))  # the last chunk starts the commit
        await alice.request("file_delete", file=alice_file)
        await until(lambda: any(m.get("op") == "upload_done" for m in done))
        assert await refcount(rs, sha) == (1, 1)
        assert blob.read_bytes() == data  # bob's file kept its bytes
        bob_file = [m for m in done if m.get("op") == "upload_done"][0]["file"]
        await bob.request("file_delete", file=bob_file)
        assert await refcount(rs, sha) == (0, 0)
        assert not blob.exists()


@pytest.mark.parametrize("upload_sync", ["fsync", "none"])
@pytest_twisted.ensureDeferred
async def test_upload_sync_setting_stores_a_verified_file_and_syncs_only_when_asked(
        store, tmp_path, monkeypatch, upload_sync):
    synced, written_back, real_fsync = [], [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(uploads, "start_writeback",
                        lambda fd, offset, length: written_back.append((offset, length)))
    rs = await start(store, tmp_path, upload_sync=upload_sync)
    try:
        alice = await rs.user("alice")
        size = 3 * MiB + 5
        src = make_file(tmp_path, size)
        sha = digest(src)
        file_id = await transfer.upload(alice, src)
        blob = tmp_path / "data" / "blobs" / sha[:2] / sha[2:4] / sha
        assert digest(blob) == sha and os.path.getsize(blob) == size
        dest = str(tmp_path / "dest.bin")
        await transfer.download(alice, file_id, dest)
        assert digest(dest) == sha
    finally:
        await stop(rs)
    if upload_sync == "fsync":
        assert len(synced) >= 2  # the part file, then the directory it was renamed into
        assert [offset for offset, _ in written_back] == \
            [sum(n for _, n in written_back[:i]) for i in range(len(written_back))]
        assert sum(n for _, n in written_back) == size  # every batch's writeback was started
    else:
        assert synced == [] and written_back == []


@pytest_twisted.ensureDeferred
async def test_tls_upload_and_download(files, tmp_path):
    plain = await files.user("alice")
    c = await files.client(tls=True)
    await c.resume(plain.token)
    src = make_file(tmp_path, 8 * MiB + 3)
    file_id = await transfer.upload(c, src)
    dest = str(tmp_path / "dest.bin")
    await transfer.download(c, file_id, dest)
    assert open(dest, "rb").read() == open(src, "rb").read()
    await c.close()  # a clean TLS close: the upload's producer was unregistered


@pytest_twisted.ensureDeferred
async def test_client_upload_fails_when_the_connection_drops_and_resumes_elsewhere(files, tmp_path):
    alice = await files.user("alice")
    src = make_file(tmp_path, 100 * MiB)
    d = transfer.upload(alice, src)
    sessions = files.server.files.sessions
    await until(lambda: sessions and list(sessions.values())[0].received > 0)
    assert not d.called
    alice.transport.abortConnection()
    with pytest.raises(ConnectionError):
        await d
    again = await files.client()
    await again.resume(alice.token)
    status = await again.request("upload_status", upload=list(sessions)[0])
    assert 0 < status["offset"] < 100 * MiB
    file_id = await transfer.upload(again, src)
    dest = str(tmp_path / "dest.bin")
    await transfer.download(again, file_id, dest)
    assert digest(dest) == digest(src)
