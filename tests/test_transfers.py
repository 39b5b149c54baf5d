"""client.transfers on a real loopback file server: several transfers at once on one
connection, pause and resume, a dropped connection, a restart, cancel; states and progress come
as events."""
import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from imclient.account import Account
from imclient.client import Client
from imclient.events import TransferProgress, TransferState
from imclient import transfers
from imclient.transfer import mux_for
from imclient.transfers import TransferFailed
from test_client import FAST, Recorder, account, wait_until
from test_files import digest, files, make_file  # noqa: F401  (files is a fixture)

MiB = 1024 * 1024


async def client_on(files, tmp_path, name="alice"):
    await (await files.client()).register(name, "correct horse")
    client = Client(reactor, account(tmp_path, name, files.port), password="correct horse",
                    retry=FAST)
    await client.start()
    return client


def states(seen, t):
    return [e.state for e in seen.of(TransferState) if e.transfer == t.id]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_several_uploads_at_once_on_one_connection_then_downloads(files, tmp_path):
    client = await client_on(files, tmp_path)
    seen = Recorder(client)
    srcs = [make_file(tmp_path, size, f"src{i}.bin", seed=i)
            for i, size in enumerate([9 * MiB, 6 * MiB, 3 * MiB + 7])]
    mux = mux_for(client.protocol)
    most = []
    add = mux.add
    mux.add = lambda source: (add(source), most.append(len(mux.sources)))
    ups = [await client.transfers.upload(p) for p in srcs]
    file_ids = await defer.gatherResults([t.done for t in ups])
    assert max(most) >= 2  # one producer carried chunks of several files at once
    for t, p in zip(ups, srcs):
        assert states(seen, t) == ["queued", "running", "done"] and t.state == "done"
        info = (await client.file_info(t.file_id))["file"]
        assert info["sha256"] == digest(p) and info["name"] == os.path.basename(p)
    last = {e.transfer: e for e in seen.of(TransferProgress)}
    assert all(last[t.id].done and last[t.id].total == t.size for t in ups)
    out = tmp_path / "out"
    out.mkdir()
    downs = [await client.transfers.download(f, str(out)) for f in file_ids]
    paths = await defer.gatherResults([t.done for t in downs])
    assert [digest(p) for p in paths] == [digest(p) for p in srcs]
    assert await client.transfers.unfinished() == []
    await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_pause_resume_and_a_dropped_connection_continue_from_the_server_offset(
        files, tmp_path, monkeypatch):
    begun = []
    real_begin = transfers.wire.begin_upload

    async def begin(*args, **kw):
        begun.append(await real_begin(*args, **kw))
        return begun[-1]
    monkeypatch.setattr(transfers.wire, "begin_upload", begin)
    client = await client_on(files, tmp_path)
    seen = Recorder(client)
    src = make_file(tmp_path, 60 * MiB)
    t = await client.transfers.upload(src)
    sessions = files.server.files.sessions
    await wait_until(lambda: sessions and list(sessions.values())[0].received > 0, what="bytes")
    t.pause()
    assert t.state == "paused" and mux_for(client.protocol).sources == []
    t.resume()
    assert t.state == "running"
    await wait_until(lambda: list(sessions.values())[0].received > 10 * MiB, what="10 MiB")
    client.protocol.transport.abortConnection()  # the link drops mid-upload
    await wait_until(lambda: t.state == "done" or len(seen.of("online")) >= 1, what="reconnect")
    file_id = await t.done
    assert len(seen.of("online")) >= 1 and len(sessions) == 0
    # Begun once, then continued on the new connection from what the server held.
    assert [b[2] for b in begun][0] == 0 and len(begun) == 2 and begun[1][2] >= 10 * MiB
    assert begun[0][1] == begun[1][1]  # the same upload id
    assert states(seen, t) == ["queued", "running", "paused", "running", "done"]
    dest = tmp_path / "back.bin"
    d = await client.transfers.download(file_id, str(dest))
    await wait_until(lambda: d.offset > 0, what="download bytes")
    client.protocol.transport.abortConnection()  # and again while downloading
    assert await d.done == str(dest) and digest(str(dest)) == digest(src)
    await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_unfinished_transfers_are_offered_after_a_restart_and_cancel_ends_one(files, tmp_path):
    client = await client_on(files, tmp_path)
    src = make_file(tmp_path, 40 * MiB)
    other = make_file(tmp_path, 30 * MiB, "other.bin", seed=3)
    t = await client.transfers.upload(src)
    u = await client.transfers.upload(other)
    sessions = files.server.files.sessions
    await wait_until(lambda: len(sessions) == 2 and all(s.received > 0 for s in sessions.values()),
                     what="both uploads under way")
    await client.close()  # the program exits mid-upload
    assert not t.done.called and not u.done.called  # left to resume, not failed
    again = Client(reactor, Account.load(client.account.home), retry=FAST)
    await again.start()
    offered = {x.path: x for x in await again.transfers.unfinished()}
    assert set(offered) == {src, other} and {x.state for x in offered.values()} == {"paused"}
    resumed = offered[src].resume()
    file_id = await resumed.done
    assert (await again.file_info(file_id))["file"]["sha256"] == digest(src)
    cancelled = offered[other]
    upload_id = cancelled.upload_id
    cancelled.cancel()
    with pytest.raises(defer.CancelledError):
        await cancelled.done
    assert cancelled.state == "cancelled" and await again.transfers.unfinished() == []
    await wait_until(lambda: upload_id not in sessions, what="the server to drop the upload")
    with pytest.raises(Exception) as info:
        await again.upload_status(upload_id)
    assert info.value.code == "not_found"
    await again.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_refused_download_fails_its_transfer(files, tmp_path):
    owner = await client_on(files, tmp_path, "olga")
    src = make_file(tmp_path, 1000)
    file_id = await (await owner.transfers.upload(src)).done
    stranger = await client_on(files, tmp_path, "sven")
    with pytest.raises(Exception) as info:
        await stranger.transfers.download(file_id, str(tmp_path / "x"))
    assert info.value.code == "forbidden"  # file_info says so before anything is queued
    assert await stranger.transfers.unfinished() == []
    await owner.close()
    await stranger.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_refused_chunk_makes_the_upload_continue_from_the_server_offset(files, tmp_path):
    from imclient.protocol import UPLOAD_CHUNK, binary_head

    client = await client_on(files, tmp_path)
    seen = Recorder(client)
    src = make_file(tmp_path, 30 * MiB)
    t = await client.transfers.upload(src)
    sessions = files.server.files.sessions
    await wait_until(lambda: sessions and list(sessions.values())[0].received > 0, what="bytes")
    # A stray chunk at an offset the server does not hold: refused with an error frame about
    # this upload, which stops its chunks; the upload asks where the server stands and goes on.
    client.protocol.transport.write(binary_head(UPLOAD_CHUNK, t.upload_id, 1, 3) + b"bad")
    file_id = await t.done
    assert [e.code for e in seen.of("server_error")] == ["bad_request"]
    assert t._realigned == 1 and t.state == "done"
    assert (await client.file_info(file_id))["file"]["sha256"] == digest(src)
    await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_the_queue_runs_max_running_at_a_time_and_downloads_pause_and_cancel(files, tmp_path):
    client = await client_on(files, tmp_path)
    client.transfers.max_running = 1
    seen = Recorder(client)
    big = make_file(tmp_path, 40 * MiB)
    small = make_file(tmp_path, 1 * MiB, "small.bin", seed=5)
    first = await client.transfers.upload(big)
    second = await client.transfers.upload(small)
    assert (first.state, second.state) == ("running", "queued")
    big_id = await first.done
    small_id = await second.done
    order = [(e.transfer, e.state) for e in seen.of(TransferState)]
    assert order.index((first.id, "done")) < order.index((second.id, "running"))
    # A download paused keeps its bytes; resumed, it asks again from what is on disk.
    dest = tmp_path / "big.copy"
    d = await client.transfers.download(big_id, str(dest))
    await wait_until(lambda: d.offset > 0, what="download bytes")
    d.pause()
    assert d.state == "paused"
    held = os.path.getsize(dest)
    d.resume()
    assert await d.done == str(dest) and digest(str(dest)) == digest(big)
    assert held > 0
    # Cancelled, a download leaves no partial file and its Deferred fails.
    gone = await client.transfers.download(small_id, str(tmp_path / "small.copy"))
    gone.cancel()
    with pytest.raises(defer.CancelledError):
        await gone.done
    assert gone.state == "cancelled" and not (tmp_path / "small.copy").exists()
    await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_an_upload_whose_file_changed_before_it_ran_fails(files, tmp_path):
    client = await client_on(files, tmp_path)
    seen = Recorder(client)
    src = make_file(tmp_path, 2 * MiB)
    client.transfers.max_running = 0  # nothing runs yet
    t = await client.transfers.upload(src)
    with open(src, "ab") as f:
        f.write(b"more")
    client.transfers.max_running = 1
    t.pause()
    t.resume()
    with pytest.raises(TransferFailed) as info:
        await t.done
    assert "changed" in str(info.value) and t.state == "failed"
    assert states(seen, t)[-1] == "failed" and await client.transfers.unfinished() == []
    await client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_download_left_by_a_previous_run_resumes_from_the_bytes_on_disk(files, tmp_path):
    client = await client_on(files, tmp_path)
    src = make_file(tmp_path, 40 * MiB)
    file_id = await (await client.transfers.upload(src)).done
    dest = tmp_path / "copy.bin"
    d = await client.transfers.download(file_id, str(dest))
    await wait_until(lambda: d.offset > 0, what="download bytes")
    await client.close()  # the program exits mid-download
    held = os.path.getsize(dest)
    again = Client(reactor, Account.load(client.account.home), retry=FAST)
    await again.start()
    [left] = await again.transfers.unfinished()
    assert (left.direction, left.path, left.state) == ("download", str(dest), "paused")
    offsets = []
    again.on(TransferProgress, lambda e: offsets.append(e.bytes_done))
    assert await left.resume().done == str(dest)
    assert digest(str(dest)) == digest(src) and 0 < held and offsets[0] >= held
    await again.close()
