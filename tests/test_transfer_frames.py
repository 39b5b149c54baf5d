"""The binary chunk frame codec, byte by byte (no network)."""
import pytest

from imserver.transfer import frames


def test_layout_is_mark_kind_id_offset_data():
    payload = frames.header(frames.UPLOAD_CHUNK, 0x0102030405060708, 0x1122334455667788) + b"abc"
    assert payload[:18] == bytes.fromhex("00 01 0102030405060708 1122334455667788")
    kind, stream, offset, data = frames.decode(payload)
    assert (kind, stream, offset, bytes(data)) == (1, 0x0102030405060708, 0x1122334455667788, b"abc")
    head = frames.framed_header(frames.DOWNLOAD_DATA, 7, 9, 3)
    assert head == (21).to_bytes(4, "big") + frames.header(frames.DOWNLOAD_DATA, 7, 9)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x01" + b"\x00" * 16, b"{" + b"\x00" * 30])
def test_short_or_unmarked_payloads_are_frame_errors(payload):
    with pytest.raises(frames.FrameError):
        frames.decode(payload)


def test_every_prefix_of_a_frame_is_refused_and_trailing_bytes_are_data():
    payload = frames.header(frames.UPLOAD_CHUNK, 1, 0) + b"xy"
    for n in range(len(payload) - 2 + 1):
        with pytest.raises(frames.FrameError):
            frames.decode(payload[:n])
    assert bytes(frames.decode(payload + b"junk")[3]) == b"xyjunk"


def test_chunk_size_fits_64k_frames():
    assert frames.chunk_size(1024 * 1024) == 65536 - 18
    assert frames.chunk_size(4096) == 4096 - 18
