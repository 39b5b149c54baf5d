"""Run a real ``twistd -n imserver`` process for tests, and wait for it to listen."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

from twisted.internet import reactor, task


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ServerProcess:
    def __init__(self, workdir, args=(), port=None, env=None):
        self.workdir = str(workdir)
        self.port = port
        self.args = list(args)
        self.env = env
        self.proc = None
        self.logfile = os.path.join(self.workdir, "twistd.log")

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        cmd = [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile", "",
               "--logfile", self.logfile, "imserver", *self.args]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env or os.environ.copy(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    async def wait_listening(self, port=None, timeout=30.0):
        port = port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                await task.deferLater(reactor, 0.1, lambda: None)
        raise TimeoutError(f"twistd did not listen on {port}: {self.log()}")

    def log(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def fingerprint(self):
        m = re.search(r"fingerprint: ([0-9A-F:]{95})", self.log())
        return m and m.group(1)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self):
        self.kill(signal.SIGTERM)
