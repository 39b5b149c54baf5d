"""imclient.transfer's parts without a network: the ChunkMux interleaves the chunks of several
uploads on one transport (round-robin), pauses with it, and unregisters when idle."""
import os

from twisted.internet.testing import StringTransport

from imclient.protocol import BINARY_HEADER, LENGTH, UPLOAD_CHUNK, binary_head
from imclient.transfer import ChunkMux, UploadSource


class Proto:
    connected = True

    def __init__(self):
        self.transport = StringTransport()


def frames(data):
    """(upload id, offset, data) of each chunk frame written."""
    out, pos = [], 0
    while pos < len(data):
        (n,) = LENGTH.unpack_from(data, pos)
        payload = data[pos + LENGTH.size:pos + LENGTH.size + n]
        _, kind, stream, offset = BINARY_HEADER.unpack_from(payload)
        assert kind == UPLOAD_CHUNK
        out.append((stream, offset, payload[BINARY_HEADER.size:]))
        pos += LENGTH.size + n
    return out


def source(tmp_path, name, data, upload_id, chunk=4):
    path = tmp_path / name
    path.write_bytes(data)
    return UploadSource(os.open(path, os.O_RDONLY), upload_id, 0, len(data), chunk)


def test_binary_head_is_the_documented_layout():
    # docs/protocol.rst: the 3 bytes "abc" at offset 65518 of upload 7.
    assert (binary_head(UPLOAD_CHUNK, 7, 65518, 3) + b"abc").hex() == (
        "00000015" "0001" "0000000000000007" "000000000000ffee" "616263")


def test_two_uploads_share_one_producer_round_robin(tmp_path):
    proto = Proto()
    mux = ChunkMux(proto)
    a = source(tmp_path, "a", b"AAAAaaaaAA", 1)
    b = source(tmp_path, "b", b"BBBBbb", 2)
    a.on_written = lambda pos: pos == 4 and mux.pauseProducing()  # the transport is full
    mux.add(a)
    assert proto.transport.producer is mux and a.pos == 4
    mux.add(b)  # while paused: nothing read yet
    assert b.pos == 0
    mux.resumeProducing()
    assert [(s, o, d) for s, o, d in frames(proto.transport.value())] == [
        (1, 0, b"AAAA"), (2, 0, b"BBBB"), (1, 4, b"aaaa"), (2, 4, b"bb"), (1, 8, b"AA")]
    assert mux.sources == [] and proto.transport.producer is None  # unregistered when idle


def test_a_pause_from_before_the_mux_unregistered_does_not_stall_the_next_upload(tmp_path):
    proto = Proto()
    mux = ChunkMux(proto)
    a = source(tmp_path, "a", b"x" * 8, 1)
    a.on_written = lambda pos: pos == 4 and mux.pauseProducing()
    mux.add(a)
    mux.remove(a)  # paused by the transport, then the program paused the upload: idle
    assert proto.transport.producer is None
    b = source(tmp_path, "b", b"y" * 8, 2)
    mux.add(b)  # registered anew: it writes until the transport says otherwise
    assert b.pos == 8


def test_a_paused_transport_stops_the_reads_and_a_removed_source_stops_its_chunks(tmp_path):
    proto = Proto()
    mux = ChunkMux(proto)
    a = source(tmp_path, "a", b"x" * 40, 1)
    b = source(tmp_path, "b", b"y" * 40, 2)
    written = []
    a.on_written = lambda pos: (written.append(pos), pos == 8 and mux.pauseProducing())
    mux.add(a)
    assert written == [4, 8] and a.pos == 8  # paused by the transport after the second chunk
    mux.add(b)  # while paused: queued, nothing read
    assert b.pos == 0
    mux.remove(a)
    mux.resumeProducing()
    assert a.pos == 8 and b.pos == 40
    assert {s for s, _, _ in frames(proto.transport.value())[2:]} == {2}


def test_a_file_that_shrinks_fails_its_upload_only(tmp_path):
    proto = Proto()
    mux = ChunkMux(proto)
    short = source(tmp_path, "s", b"1234", 1)
    short.size = 12  # the file was longer when it was hashed
    errors = []
    short.on_failed = errors.append
    ok = source(tmp_path, "o", b"abcdefgh", 2)
    mux.add(short)
    mux.add(ok)
    assert isinstance(short.failed, OSError) and errors == [short.failed]
    assert ok.pos == 8 and mux.sources == []
