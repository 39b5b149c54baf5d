"""File and voice messages: a message carries a file reference, and the recipient may then
download the file; nobody else may. Real sockets, both dialects."""
import pytest_twisted

from helpers import Pushes, befriend, error_code
from imclient.transfer import download, upload


@pytest_twisted.ensureDeferred
async def test_voice_message_lets_the_recipient_download(running, tmp_path):
    alice, bob, eve = await running.user("alice"), await running.user("bob"), await running.user("eve")
    await befriend(alice, bob)
    src = tmp_path / "hello.ogg"
    src.write_bytes(b"OggS" + bytes(range(256)) * 40)
    file_id = await upload(alice, str(src), mime="audio/ogg")
    # Before the message, bob may not download it.
    assert await error_code(bob.request("download", file=file_id, offset=0)) == "forbidden"
    pushes = Pushes(bob)
    sent = await alice.request("send", to=bob.user_id, client_id="v1",
                               file={"id": file_id, "kind": "voice", "duration": 2.5})
    push = await pushes.next("message")
    assert push["kind"] == "voice" and push["body"] == ""
    assert push["file"]["id"] == file_id and push["file"]["duration"] == 2.5
    assert push["file"]["size"] == src.stat().st_size and push["file"]["name"] == "hello.ogg"
    dest = tmp_path / "got.ogg"
    await download(bob, file_id, str(dest))
    assert dest.read_bytes() == src.read_bytes()
    # The message is in bob's stream with its file, and eve still may not download.
    events = (await bob.request("sync", since=0))["events"]
    assert [e["file"]["id"] for e in events if e.get("msg_id") == sent["msg_id"]] == [file_id]
    assert await error_code(eve.request("download", file=file_id, offset=0)) == "forbidden"


@pytest_twisted.ensureDeferred
async def test_file_message_errors(running, tmp_path):
    alice, bob, eve = await running.user("alice"), await running.user("bob"), await running.user("eve")
    await befriend(alice, bob)
    await befriend(eve, bob)
    src = tmp_path / "secret.txt"
    src.write_bytes(b"alice's secret")
    file_id = await upload(alice, str(src))
    # eve cannot forward a file she has no access to
    assert await error_code(eve.request("send", to=bob.user_id, client_id="e1",
                                        file={"id": file_id, "kind": "file"})) == "forbidden"
    assert await error_code(alice.request("send", to=bob.user_id, client_id="a1",
                                          file={"id": 987654, "kind": "file"})) == "not_found"
    assert await error_code(alice.request("send", to=bob.user_id, client_id="a2",
                                          file={"id": file_id, "kind": "voice"})) == "bad_request"
    assert await error_code(alice.request("send", to=bob.user_id, client_id="a3",
                                          file={"id": file_id, "kind": "movie"})) == "bad_request"
    assert await error_code(alice.request("send", to=bob.user_id, client_id="a4",
                                          file="not an object")) == "bad_request"
    assert await error_code(bob.request("download", file=file_id, offset=0)) == "forbidden"
    # An image with a caption works.
    reply = await alice.request("send", to=bob.user_id, client_id="a5", body="look",
                                file={"id": file_id, "kind": "image"})
    assert reply["msg_id"]
    history = (await bob.request("history", peer=alice.user_id))["messages"]
    assert [(m["kind"], m["body"]) for m in history] == [("image", "look")]


@pytest_twisted.ensureDeferred
async def test_group_file_message_members_may_download_others_may_not(running, tmp_path):
    alice, bob, eve = await running.user("alice"), await running.user("bob"), await running.user("eve")
    await befriend(alice, bob)
    group = (await alice.request("group_create", name="team", members=[bob.user_id]))["group_id"]
    src = tmp_path / "plan.pdf"
    src.write_bytes(b"%PDF" + b"x" * 5000)
    file_id = await upload(alice, str(src), mime="application/pdf")
    pushes = Pushes(bob)
    sent = await alice.request("group_send", group=group, client_id="g1", body="the plan",
                               file={"id": file_id, "kind": "file"})
    push = await pushes.next("group_message")
    assert push["msg_id"] == sent["msg_id"] and push["kind"] == "file"
    assert push["file"]["id"] == file_id and push["file"]["name"] == "plan.pdf"
    listed = (await bob.request("group_files", group=group))["files"]
    assert [f["id"] for f in listed] == [file_id]
    dest = tmp_path / "got.pdf"
    await download(bob, file_id, str(dest))
    assert dest.read_bytes() == src.read_bytes()
    # Not a member: no listing, no download. A member who leaves loses access.
    assert await error_code(eve.request("group_files", group=group)) == "not_member"
    assert await error_code(eve.request("download", file=file_id, offset=0)) == "forbidden"
    await bob.request("group_leave", group=group)
    assert await error_code(bob.request("download", file=file_id, offset=0)) == "forbidden"
    # A file the sender may not read cannot be posted.
    secret = tmp_path / "eve.txt"
    secret.write_bytes(b"eve's")
    eve_file = await upload(eve, str(secret))
    assert await error_code(alice.request("group_send", group=group, client_id="g2",
                                          file={"id": eve_file, "kind": "file"})) == "forbidden"
    history = (await alice.request("group_history", group=group))["messages"]
    assert [(m["kind"], m["file"]["id"]) for m in history if m.get("file")] == [("file", file_id)]
