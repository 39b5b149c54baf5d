"""File transfer throughput: Parley uploads and downloads against bare copies of the same bytes.

Runs a server in a child process (so it has a CPU of its own) and measures, over loopback, the
MiB/s of: a raw socket copy, a bare Twisted ``Int32StringReceiver`` copy in 64 KiB frames, and
Parley upload (written to disk, SHA-256 verified and fsynced by the server) and download, plain
and TLS, on 1 and 4 connections; the plain uploads again to a second server in the same process
run with ``--upload-sync none`` (written and verified, not fsynced); plus the time of an instant
upload (challenge + proof) of the file.
Each figure is the median of ``--runs`` runs. Usage::

    python bench/transfer_bench.py [--size-mib 1024] [--runs 3] [--workdir /tmp/parley-bench]
    python bench/transfer_bench.py --profile upload   # cProfile of the server during one upload
"""
import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

MiB = 1024 * 1024
FRAME = 64 * 1024


# -- the child process: a Parley server, a raw sink and a bare framed sink ----------------------

def serve(workdir, ports, profile):
    from twisted.internet import reactor, ssl
    from twisted.internet.protocol import Factory, Protocol
    from twisted.protocols.basic import Int32StringReceiver

    from imserver import tls
    from imserver.auth import PasswordHasher
    from imserver.config import Config
    from imserver.protocol import ImFactory
    from imserver.server import Server
    from imserver.store import Store, dialects
    from imserver.store.migrate import migrate
    from imserver.store.pool import Database

    def parley(data_dir, upload_sync):
        config = Config(data_dir=data_dir, db_url="sqlite:///bench.db", user_quota=0,
                        max_file_size=1 << 40, max_connections_per_user=64, upload_sync=upload_sync)
        os.makedirs(config.data_dir, exist_ok=True)
        dialect = dialects.from_url(config.db_url, config.data_dir)
        migrate(dialect, log=lambda t: None)
        return Server(config, Store(Database(dialect)), reactor,
                      hasher=PasswordHasher(reactor, n=2 ** 10))

    server = parley(os.path.join(workdir, "data"), "fsync")
    cert, key, _ = tls.ensure(server.config.data_dir)
    with open(key, "rb") as k, open(cert, "rb") as c:
        options = ssl.PrivateCertificate.loadPEM(k.read() + c.read()).options()
    reactor.listenTCP(ports[0], ImFactory(server), interface="127.0.0.1")
    reactor.listenSSL(ports[1], ImFactory(server), options, interface="127.0.0.1")
    # The same server with --upload-sync none, in the same process (plain TCP only).
    unsynced = parley(os.path.join(workdir, "data-nosync"), "none")
    reactor.listenTCP(ports[6], ImFactory(unsynced), interface="127.0.0.1")

    class FramedSink(Int32StringReceiver):
        MAX_LENGTH = 1 << 20

        def stringReceived(self, s):
            if s == b"end":
                self.sendString(b"ok")

    class FramedSource(Int32StringReceiver):
        """Sends N bytes of 64 KiB frames read from a file when asked, through a push producer."""

        def stringReceived(self, s):
            self.fd = os.open(s.decode(), os.O_RDONLY)
            self.left, self.pos, self.paused = os.fstat(self.fd).st_size, 0, False
            self.transport.registerProducer(self, True)
            self.resumeProducing()

        def resumeProducing(self):
            self.paused = False
            while not self.paused and self.left:
                data = os.pread(self.fd, min(FRAME, self.left), self.pos)
                self.transport.writeSequence((len(data).to_bytes(4, "big"), data))
                self.pos += len(data)
                self.left -= len(data)
            if not self.left:
                self.transport.unregisterProducer()
                os.close(self.fd)

        def pauseProducing(self):
            self.paused = True

        def stopProducing(self):
            self.left = 0

    class RawSink(Protocol):
        def dataReceived(self, data):
            pass

    reactor.listenTCP(ports[2], Factory.forProtocol(FramedSink), interface="127.0.0.1")
    reactor.listenTCP(ports[3], Factory.forProtocol(FramedSource), interface="127.0.0.1")
    reactor.listenTCP(ports[4], Factory.forProtocol(RawSink), interface="127.0.0.1")

    class CpuReport(Protocol):
        def connectionMade(self):
            t = os.times()
            self.transport.write(f"{t.user + t.system}".encode())
            self.transport.loseConnection()

    reactor.listenTCP(ports[5], Factory.forProtocol(CpuReport), interface="127.0.0.1")
    print("ready", flush=True)
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        reactor.callLater(0, prof.enable)
        reactor.run()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        reactor.run()


# -- the client side ---------------------------------------------------------------------------

def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def make_source(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:])
        f.write(block[:size % MiB])


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while data := f.read(4 * MiB):
            h.update(data)
    return h.hexdigest()


def raw_copy(port, path):
    """Plain sockets, no framing: the ceiling of loopback from a file in the page cache."""
    s = socket.create_connection(("127.0.0.1", port))
    with open(path, "rb", buffering=0) as f:
        start = time.perf_counter()
        s.sendfile(f)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    elapsed = time.perf_counter() - start
    s.close()
    return elapsed


async def framed_copy_up(reactor, port, path):
    from twisted.internet import defer
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols.basic import Int32StringReceiver

    class Sender(Int32StringReceiver):
        def __init__(self):
            self.done = defer.Deferred()

        def stringReceived(self, s):
            self.done.callback(None)

    proto = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Sender())
    fd, size = os.open(path, os.O_RDONLY), os.path.getsize(path)
    state = {"pos": 0, "paused": False}

    class Producer:
        def resumeProducing(self):
            state["paused"] = False
            while not state["paused"] and state["pos"] < size:
                data = os.pread(fd, min(FRAME, size - state["pos"]), state["pos"])
                proto.transport.writeSequence((len(data).to_bytes(4, "big"), data))
                state["pos"] += len(data)
            if state["pos"] >= size and proto.transport.producer is not None:
                proto.transport.unregisterProducer()
                proto.sendString(b"end")

        def pauseProducing(self):
            state["paused"] = True

        def stopProducing(self):
            pass

    start = time.perf_counter()
    proto.transport.registerProducer(Producer(), True)
    proto.transport.producer.resumeProducing()
    await proto.done
    elapsed = time.perf_counter() - start
    os.close(fd)
    proto.transport.loseConnection()
    return elapsed


async def framed_copy_down(reactor, port, path):
    from twisted.internet import defer
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols.basic import Int32StringReceiver

    size = os.path.getsize(path)

    class Receiver(Int32StringReceiver):
        MAX_LENGTH = 1 << 20

        def __init__(self):
            self.got, self.done = 0, defer.Deferred()

        def stringReceived(self, s):
            self.got += len(s)
            if self.got >= size:
                self.done.callback(None)

    proto = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Receiver())
    start = time.perf_counter()
    proto.sendString(path.encode())
    await proto.done
    elapsed = time.perf_counter() - start
    proto.transport.loseConnection()
    return elapsed


class Bench:
    def __init__(self, reactor, ports, fingerprint, path, size, sha, plain_port=None):
        self.reactor, self.ports, self.fingerprint = reactor, ports, fingerprint
        self.path, self.size, self.sha = path, size, sha
        self.plain_port = ports[0] if plain_port is None else plain_port

    async def client(self, tls, token=None):
        from imclient.connect import connect

        port = self.ports[1] if tls else self.plain_port
        c = await connect(self.reactor, "127.0.0.1", port, tls=tls, fingerprint=self.fingerprint)
        if token:
            await c.resume(token)
        return c

    async def login(self, name):
        c = await self.client(False)
        await c.register(name, "bench password")
        self.token = (await c.login(name, "bench password"))["token"]
        return c

    async def upload(self, tls, conns, part_paths):
        """Upload ``conns`` files at once, one per connection; returns (seconds, file ids)."""
        from twisted.internet import defer

        from imclient import transfer

        clients = [await self.client(tls, self.token) for _ in range(conns)]
        digests = [(os.path.getsize(p), self.sha if p == self.path else digest(p)) for p in part_paths]
        start = time.perf_counter()
        ids = await defer.gatherResults([
            transfer.upload(c, p, size=s, sha256=h)
            for c, p, (s, h) in zip(clients, part_paths, digests)])
        elapsed = time.perf_counter() - start
        await defer.gatherResults([c.close() for c in clients])
        return elapsed, ids

    async def download(self, tls, conns, file_id):
        """Download the file in ``conns`` ranges on as many connections; data is counted, not kept."""
        from twisted.internet import defer

        clients = [await self.client(tls, self.token) for _ in range(conns)]
        step = -(-self.size // conns)
        start = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(_count_download(
            c, file_id, i * step, min(step, self.size - i * step))) for i, c in enumerate(clients)])
        elapsed = time.perf_counter() - start
        await defer.gatherResults([c.close() for c in clients])
        return elapsed


async def _count_download(c, file_id, offset, length):
    from twisted.internet import defer

    done, state = defer.Deferred(), {"got": 0}

    def on_binary(payload):
        state["got"] += len(payload) - 18
        if state["got"] >= length:
            done.callback(None)
    c.on_binary = on_binary
    await c.request("download", file=file_id, offset=offset, length=length)
    await done


def split_file(path, n, workdir):
    """n files of 1/n of ``path`` each (different content, so none is an instant upload)."""
    size = os.path.getsize(path)
    step = -(-size // n)
    out = []
    with open(path, "rb") as f:
        for i in range(n):
            p = os.path.join(workdir, f"part{n}-{i}.bin")
            if not (os.path.exists(p) and os.path.getsize(p) == min(step, size - i * step)):
                with open(p, "wb") as o:
                    o.write(f.read(step))
            else:
                f.seek(step, 1)
            out.append(p)
    return out


async def prepare(reactor, args, ports, fingerprint):
    from twisted.internet import threads

    path = os.path.join(args.workdir, "source.bin")
    size = args.size_mib * MiB
    await threads.deferToThread(make_source, path, size)
    sha = await threads.deferToThread(digest, path)
    b = Bench(reactor, ports, fingerprint, path, size, sha)
    return b, await b.login("bench")


def client_cpu():
    """CPU seconds (user + system) this process (the clients) has used so far."""
    t = os.times()
    return t.user + t.system


def machine_busy():
    """CPU seconds every process on the machine has used so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def server_cpu(port):
    """CPU seconds (user + system) the server process has used so far."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        return float(s.makefile().read())


async def run(reactor, args, ports, fingerprint):
    from twisted.internet import threads

    b, main = await prepare(reactor, args, ports, fingerprint)
    path, size = b.path, b.size
    results, cpu = {}, {}

    async def measure(name, fn, *a):
        before = server_cpu(ports[5]), client_cpu(), machine_busy()
        out = await fn(*a)
        seconds, rest = (out, None) if isinstance(out, float) else out
        server, client = server_cpu(ports[5]) - before[0], client_cpu() - before[1]
        others = max(0.0, machine_busy() - before[2] - server - client)
        results.setdefault(name, []).append(size / MiB / seconds)
        gib = size / 1024 ** 3
        cpu.setdefault(name, []).append((server / gib, client / gib, others / seconds))
        return rest

    async def in_thread(fn, *a):
        return await threads.deferToThread(fn, *a)

    quarters = split_file(path, 4, args.workdir)
    unsynced = None
    if "nosync" in args.scenarios:
        unsynced = Bench(reactor, ports, fingerprint, path, size, b.sha, plain_port=ports[6])
        unsynced.main = await unsynced.login("bench")
    for _ in range(args.runs):
        if "baseline" in args.scenarios:
            await measure("raw socket copy (up)", in_thread, raw_copy, ports[4], path)
            await measure("bare Int32StringReceiver 64 KiB frames (up)", framed_copy_up, reactor,
                          ports[2], path)
            await measure("bare Int32StringReceiver 64 KiB frames (down)", framed_copy_down,
                          reactor, ports[3], path)
        for kind in ("plain", "nosync", "TLS"):
            if kind not in args.scenarios:
                continue
            if kind == "nosync":
                await unsynced_uploads(unsynced, measure, quarters)
                continue
            tls = kind == "TLS"
            (file_id,) = await measure(f"Parley upload, {kind}, 1 connection", b.upload, tls, 1, [path])
            await measure(f"Parley download, {kind}, 1 connection", b.download, tls, 1, file_id)
            await measure(f"Parley download, {kind}, 4 connections", b.download, tls, 4, file_id)
            await main.request("file_delete", file=file_id)
            ids = await measure(f"Parley upload, {kind}, 4 connections (4 files of 1/4)",
                                b.upload, tls, 4, quarters)
            for i in ids:
                await main.request("file_delete", file=i)
    instants = []
    if "instant" in args.scenarios:
        instants = await instant_uploads(b, args.runs)
    return results, cpu, instants


async def unsynced_uploads(b, measure, quarters):
    """The plain uploads again, to the server run with ``--upload-sync none`` (no fsync)."""
    ids = await measure("Parley upload, plain, 1 connection, --upload-sync none",
                        b.upload, False, 1, [b.path])
    ids += await measure("Parley upload, plain, 4 connections, --upload-sync none",
                         b.upload, False, 4, quarters)
    for i in ids:
        await b.main.request("file_delete", file=i)


async def instant_uploads(b, runs):
    """Another user proves possession of the file the first user holds: seconds per upload."""
    from imclient import transfer

    await b.upload(False, 1, [b.path])
    other = await b.login("other")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        other_id = await transfer.upload(other, b.path, size=b.size, sha256=b.sha)
        times.append(time.perf_counter() - start)
        await other.request("file_delete", file=other_id)
    return times


def report(results, cpu, instants, args):
    lines = [f"size {args.size_mib} MiB, median of {args.runs} runs; server and client CPU are "
             "user+system seconds of each process per GiB; 'others' is the CPU (in cores) every "
             "other process on the machine used during the transfer", "",
             f"{'':<56} {'MiB/s':>6} {'server':>7} {'client':>7} {'others':>7}   runs (MiB/s)"]
    for name, values in results.items():
        server, client, others = (statistics.median(c) for c in zip(*cpu[name]))
        lines.append(f"{name:<56} {statistics.median(values):6.0f} {server:7.2f} {client:7.2f} "
                     f"{others:7.2f}   {', '.join(f'{v:.0f}' for v in values)}")
    if instants:
        lines.append("")
        lines.append(f"instant upload of the {args.size_mib} MiB file by another user (upload_begin, "
                     f"challenge, proof): median {statistics.median(instants) * 1000:.1f} ms")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/parley-bench")
    parser.add_argument("--scenarios", default="baseline,plain,nosync,TLS,instant",
                        help="comma-separated subset of baseline, plain, nosync (plain uploads "
                             "with --upload-sync none), TLS, instant")
    parser.add_argument("--profile", choices=["upload", "download"], default=None,
                        help="profile the server (cProfile) during one plain upload or download")
    parser.add_argument("--serve", nargs=7, type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--profile-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.scenarios = args.scenarios.split(",")
    if args.serve:
        serve(args.workdir, args.serve, args.profile_server)
        return
    os.makedirs(args.workdir, exist_ok=True)
    for data in ("data", "data-nosync"):
        shutil.rmtree(os.path.join(args.workdir, data), ignore_errors=True)
    ports = free_ports(7)
    cmd = [sys.executable, os.path.abspath(__file__), "--workdir", args.workdir, "--serve",
           *map(str, ports)] + (["--profile-server"] if args.profile else [])
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    from imserver import tls

    fingerprint = tls.fingerprint_file(os.path.join(args.workdir, "data", "tls-cert.pem"))
    from twisted.internet import defer, reactor

    outcome = {}

    async def go():
        try:
            if args.profile:
                outcome["text"] = await profile_one(reactor, args, ports, fingerprint)
            else:
                outcome["text"] = report(*await run(reactor, args, ports, fingerprint), args)
            outcome["text"] += f"\n\ncommand: {' '.join(sys.argv)}"
        finally:
            reactor.stop()
    reactor.callWhenRunning(lambda: defer.ensureDeferred(go()).addErrback(
        lambda f: outcome.setdefault("error", f)))
    reactor.run()
    child.terminate()
    out, _ = child.communicate()
    if "error" in outcome:
        outcome["error"].raiseException()
    print(outcome["text"])
    if args.profile:
        print(out)


async def profile_one(reactor, args, ports, fingerprint):
    b, _ = await prepare(reactor, args, ports, fingerprint)
    size = b.size
    seconds, (file_id,) = await b.upload(False, 1, [b.path])
    text = f"upload: {size / MiB / seconds:.0f} MiB/s"
    if args.profile == "download":
        text += f"\ndownload: {size / MiB / await b.download(False, 1, file_id):.0f} MiB/s"
    return text


if __name__ == "__main__":
    main()
