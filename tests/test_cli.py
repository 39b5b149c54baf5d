"""The ``imclient`` command line used as a person would: subprocesses against a real twistd server."""
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

import pytest

from imserver import tls
from serverproc import ServerProcess, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "correct horse\n"


def wait_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"twistd exited: {proc.log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(proc.log())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``twistd -n imserver`` on a TLS port of its own, with its certificate's fingerprint."""
    work = tmp_path_factory.mktemp("cli-server")
    data = work / "data"
    data.mkdir()
    cert, key, _ = tls.ensure(str(data))
    port = free_port()
    proc = ServerProcess(work, ["--data-dir", str(data), "--listen",
                                f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"], port)
    proc.start()
    try:
        wait_port(port, proc)
        yield {"address": f"127.0.0.1:{port}", "fingerprint": tls.fingerprint_file(cert), "data": data}
    finally:
        proc.stop()


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def imclient(home, *args, input=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "imclient", "--home", str(home), *args],
                          input=input, capture_output=True, text=True, timeout=timeout, env=env())


def ok(result):
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def one_line_failure(result):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imclient: "), result.stderr
    return lines[0]


def signed_up(tmp_path, server, name):
    home = tmp_path / name
    ok(imclient(home, "register", name, "--server", server["address"], input=PASSWORD))
    ok(imclient(home, "login", name, "--server", server["address"], input=PASSWORD))
    return home


def test_register_login_friends_send_history_end_to_end(server, tmp_path):
    alice_home = tmp_path / "alice"
    out = ok(imclient(alice_home, "register", "alice", "--server", server["address"], input=PASSWORD))
    assert "registered alice" in out
    out = ok(imclient(alice_home, "--json", "login", "alice", "--server", server["address"], input=PASSWORD))
    login = json.loads(out)
    assert login["fingerprint"] == server["fingerprint"] and login["user_id"] > 0
    pins = json.loads((alice_home / "known_servers.json").read_text())
    assert pins == {server["address"]: server["fingerprint"]}
    bob_home = signed_up(tmp_path, server, "bob")

    assert "pending" in ok(imclient(alice_home, "friends", "add", "bob", "--greeting", "hi bob"))
    requests = json.loads(ok(imclient(bob_home, "friends", "requests", "--json")))
    assert [(r["username"], r["greeting"]) for r in requests["incoming"]] == [("alice", "hi bob")]
    ok(imclient(bob_home, "friends", "accept", "alice"))
    friends = json.loads(ok(imclient(alice_home, "--json", "friends")))["friends"]
    assert [f["username"] for f in friends] == ["bob"]
    assert "bob" in ok(imclient(alice_home, "friends"))

    sent = json.loads(ok(imclient(alice_home, "--json", "send", "bob", "hello", "there")))
    assert sent["msg_id"] > 0 and sent["duplicate"] is False
    ok(imclient(bob_home, "send", "alice", "hi alice"))
    history = json.loads(ok(imclient(bob_home, "--json", "history", "alice")))
    assert [(m["from"] == login["user_id"], m["body"]) for m in history["messages"]] == [
        (True, "hello there"), (False, "hi alice")]
    text = ok(imclient(alice_home, "history", "bob"))
    assert text.splitlines()[0].endswith("alice: hello there")
    assert text.splitlines()[1].endswith("bob: hi alice")
    # With the server gone, history still comes from the local store.
    [account_file] = alice_home.glob("accounts/*/account.json")
    saved = json.loads(account_file.read_text())
    account_file.write_text(json.dumps(dict(saved, port=free_port())))
    offline = imclient(alice_home, "history", "bob")
    assert offline.returncode == 0 and "offline" in offline.stderr, offline.stderr
    assert offline.stdout == text


def test_errors_are_one_line_and_a_failing_status(server, tmp_path):
    home = signed_up(tmp_path, server, "carol")
    line = one_line_failure(imclient(tmp_path / "other", "login", "carol", "--server", server["address"],
                                     input="wrong password\n"))
    assert "bad_credentials" in line
    assert "no account" in one_line_failure(imclient(tmp_path / "empty", "send", "bob", "x"))
    assert "no user" in one_line_failure(imclient(home, "send", "nobody-here", "x"))
    closed = f"127.0.0.1:{free_port()}"
    assert "cannot reach" in one_line_failure(imclient(tmp_path / "x", "register", "dan",
                                                       "--server", closed, input=PASSWORD))
    usage = imclient(home, "send")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert "no such file" in one_line_failure(imclient(home, "upload", str(tmp_path / "missing.bin")))
    # The cloud drive is not on this server yet: one clear line, no pretending.
    assert "unknown_op" in one_line_failure(imclient(home, "drive", "ls"))


def test_upload_and_download_round_trip(server, tmp_path):
    home = signed_up(tmp_path, server, "fay")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 1000)
    up = imclient(home, "--json", "upload", str(payload))
    assert up.returncode == 0, up.stderr
    file_id = json.loads(up.stdout.splitlines()[-1])["file"]
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    down = imclient(home, "download", str(file_id), "--output", str(out_dir))
    assert down.returncode == 0, down.stderr
    assert (out_dir / "payload.bin").read_bytes() == payload.read_bytes()


def test_unfinished_transfers_are_offered_after_a_restart(server, tmp_path):
    from imclient.account import Account
    from imclient.store import LocalStore

    home = signed_up(tmp_path, server, "hank")
    assert "no unfinished" in ok(imclient(home, "transfers"))
    store = LocalStore(Account.load(str(home)).store_path)  # as a crashed upload left it
    store.transfer_add("upload", "/data/big.iso", "big.iso", 1 << 30, "ab" * 32, 1)
    store.close()
    [row] = json.loads(ok(imclient(home, "--json", "transfers")))["transfers"]
    assert (row["path"], row["size"], row["state"]) == ("/data/big.iso", 1 << 30, "active")
    payload = tmp_path / "small.bin"
    payload.write_bytes(b"y" * 10)
    result = imclient(home, "upload", str(payload))
    assert "1 unfinished upload(s)" in result.stderr and "upload --resume" in result.stderr
    assert result.returncode == 0, result.stderr  # the new upload itself goes through
    assert len(json.loads(ok(imclient(home, "--json", "transfers")))["transfers"]) == 1


def test_changed_certificate_is_refused_by_the_cli(server, tmp_path):
    home = signed_up(tmp_path, server, "erin")
    pins = home / "known_servers.json"
    pins.write_text(json.dumps({server["address"]: "AB:" * 31 + "AB"}))
    line = one_line_failure(imclient(home, "friends"))
    assert "CHANGED" in line and server["fingerprint"] in line


def test_help_documents_every_command():
    out = ok(imclient("/nonexistent", "--help"))
    commands = ("register", "login", "logout", "send", "history", "friends", "groups", "upload",
                "download", "transfers", "drive", "chat", "lan")
    for command in commands:
        assert command in out, command
        assert "usage: imclient" in ok(imclient("/nonexistent", command, "--help"))
    for action in ("ls", "put", "get", "share"):
        assert "usage: imclient drive" in ok(imclient("/nonexistent", "drive", action, "--help"))


class Interactive:
    """A subprocess whose stdout lines are collected by a thread, to wait for with a timeout."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env())
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, fragment, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"{fragment!r} not in output: {self.seen}; stderr: "
                             f"{self.proc.stderr.read() if self.proc.poll() is not None else ''}")

    def type(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=20):
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.proc.stderr.read()


def test_chat_mode_shows_incoming_messages_and_sends_lines(server, tmp_path):
    frank = signed_up(tmp_path, server, "frank")
    gina = signed_up(tmp_path, server, "gina")
    ok(imclient(frank, "friends", "add", "gina"))
    ok(imclient(gina, "friends", "accept", "frank"))
    chat = Interactive([sys.executable, "-m", "imclient", "--home", str(gina), "chat"])
    try:
        chat.expect("* online")
        chat.type("/to frank")
        chat.expect("talking to frank")
        ok(imclient(frank, "send", "gina", "are you there?"))
        assert chat.expect("are you there?").endswith("frank: are you there?")
        chat.type("yes, here")
        chat.expect("(sent #")
        status, stderr = chat.finish()
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
    assert status == 0 and "Traceback" not in stderr, stderr
    history = json.loads(ok(imclient(frank, "--json", "history", "gina")))
    assert [m["body"] for m in history["messages"]][-1] == "yes, here"


def test_lan_mode_chats_without_a_server(tmp_path):
    port = free_port()
    group = f"239.255.{os.getpid() % 250}.{port % 250 + 1}"
    base = [sys.executable, "-m", "imclient", "--home", str(tmp_path), "lan", "--interface",
            "127.0.0.1", "--group", group, "--port", str(port), "--linger", "0.5"]
    ann, bea = Interactive(base + ["ann"]), Interactive(base + ["bea"])
    try:
        ann.expect("joined")
        bea.expect("joined")
        ann.expect("bea joined")
        bea.type("hello over the lan")
        assert ann.expect("hello over the lan") == "[bea] hello over the lan"
        assert bea.finish()[0] == 0
        ann.expect("bea left")
        assert ann.finish()[0] == 0
    finally:
        for p in (ann, bea):
            if p.proc.poll() is None:
                p.proc.kill()


def test_upload_killed_at_60_percent_resumes_after_restart(server, tmp_path):
    """The client process is killed mid-upload; after a restart `upload --resume` finishes it
    from the bytes the server holds, and the file arrives whole."""
    import hashlib
    import signal

    home = signed_up(tmp_path, server, "ivy")
    payload = tmp_path / "big.bin"
    size = 150 * 1024 * 1024
    with open(payload, "wb") as f:
        for _ in range(size // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    proc = subprocess.Popen([sys.executable, "-m", "imclient", "--home", str(home), "upload", str(payload)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    parts = server["data"] / "parts"
    held = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        held = max([p.stat().st_size for p in parts.glob("*.part")] or [0]) if parts.exists() else 0
        if held >= 0.6 * size:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    assert 0.6 * size <= held < size
    listed = json.loads(ok(imclient(home, "--json", "transfers")))["transfers"]
    assert [t["path"] for t in listed] == [str(payload)]
    resumed = json.loads(ok(imclient(home, "--json", "upload", "--resume", timeout=120)))
    [done] = resumed["uploaded"]
    out_dir = tmp_path / "back"
    out_dir.mkdir()
    ok(imclient(home, "download", str(done["file"]), "--output", str(out_dir), timeout=120))
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out_dir / "big.bin") == digest(payload)


def test_progress_line_draws_a_tqdm_bar_on_a_terminal():
    import io

    from imclient.cli_files import ProgressLine
    from imclient.events import TransferProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    line = ProgressLine(screen)
    for done in (0, 512 * 1024, 1024 * 1024):
        line(TransferProgress(1, "upload", "big.bin", done, 1024 * 1024, 1024.0, 1.0))
    text = screen.getvalue()
    assert "big.bin" in text and "100%" in text and "50%" in text
    assert line.bars == {}  # closed when done
    plain = io.StringIO()
    line = ProgressLine(plain)
    line(TransferProgress(2, "download", "x.bin", 10, 20, 5.0, 2.0))
    line(TransferProgress(2, "download", "x.bin", 20, 20, 5.0, 0.0))
    assert plain.getvalue().count("\n") == 1 and "x.bin" in plain.getvalue()
