"""Group fan-out benchmark: one group of 200 online members, one sender pipelining 50 sends.

Three processes per run: the server under test, a load driver (all 201 connections, one
reactor), and this orchestrator. The servers under test:

* ``parley-sqlite`` / ``parley-mysql``: the real Parley server (``Server`` + ``ImFactory``, a
  cheap password hash so set-up is quick); the driver registers and logs in 201 users, the
  sender creates an open group and the 200 others ``group_join`` it; then the sender keeps 50
  ``group_send`` requests in flight. Every send is committed (group commit) before its ack and
  pushed to the 200 members as one encoded ``group_message`` frame written to each connection.
* ``relay``: a bare ``Int32StringReceiver`` relay doing the same fan-out: it writes each frame
  the sender sends to the 200 other connections (encoded once, like Parley) and acks it. No
  database, no JSON: the ceiling the framework's fan-out is measured against.

Reported per run: member deliveries per second (messages x 200 members, from the first send to
the last delivery) and the latency of each delivery (send to the member's frame being parsed by
the driver; p50 and p99). Medians of the runs are printed last.

    python bench/fanout_bench.py [--runs 3] [--messages 3000] [--members 200] [--window 50] \
        [--backends relay sqlite mysql] [--mysql mysql://root@127.0.0.1:3306/parley_bench]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CLIENT_ID = b'"client_id":"'


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# -- the servers under test ------------------------------------------------------------------

def serve_parley(db_url, port, data_dir):
    from twisted.internet import reactor

    from imserver.auth import PasswordHasher
    from imserver.config import Config
    from imserver.protocol import ImFactory
    from imserver.server import Server
    from imserver.store import Store, dialects
    from imserver.store.migrate import migrate
    from imserver.store.pool import Database

    dialect = dialects.from_url(db_url, data_dir)
    migrate(dialect, log=lambda text: None)
    server = Server(Config(max_connections_per_user=8), Store(Database(dialect)), reactor,
                    hasher=PasswordHasher(reactor, n=2 ** 10))
    reactor.listenTCP(port, ImFactory(server), interface="127.0.0.1", backlog=512)
    reactor.run()


def serve_relay(port):
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    class Relay(Int32StringReceiver):
        MAX_LENGTH = 1 << 20

        def connectionMade(self):
            self.factory.members.append(self)

        def connectionLost(self, reason):
            self.factory.members.remove(self)

        def stringReceived(self, payload):
            request = json.loads(payload)
            if request.get("op") == "group_send":
                frame = self.prefix.pack(len(payload)) + payload  # encoded once for every member
                for member in self.factory.members:
                    if member is not self:
                        member.transport.write(frame)
            self.sendString(json.dumps({"re": request.get("id"), "ok": True}).encode())

    import struct
    Relay.prefix = struct.Struct(">I")
    factory = Factory.forProtocol(Relay)
    factory.members = []
    reactor.listenTCP(port, factory, interface="127.0.0.1", backlog=512)
    reactor.run()


# -- the load driver -------------------------------------------------------------------------

async def _setup_parley(reactor, connect, port, members):
    sender = await connect(reactor, "127.0.0.1", port)
    await sender.register("sender", "bench password")
    await sender.login("sender", "bench password")
    gid = (await sender.request("group_create", name="bench", join_policy="open"))["group_id"]

    async def member(i):
        c = await connect(reactor, "127.0.0.1", port)
        await c.register(f"member{i}", "bench password")
        await c.login(f"member{i}", "bench password")
        await c.request("group_join", group=gid)
        return c

    from twisted.internet import defer
    clients = await defer.gatherResults([defer.ensureDeferred(member(i)) for i in range(members)])
    return sender, gid, clients


async def _setup_relay(reactor, connect_raw, port, members):
    sender = await connect_raw(port)
    clients = [await connect_raw(port) for _ in range(members)]
    return sender, 0, clients


def _cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(port, mode, messages, members, window, server_pid):
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from imclient.connect import connect
    from imclient.protocol import ClientProtocol

    sent_at = array("d", [0.0]) * messages
    latencies = array("d")
    state = {"delivered": 0, "last": 0.0}
    expected = messages * members
    done = defer.Deferred()

    def on_frame(payload):
        i = payload.find(CLIENT_ID)
        if i < 0:
            return
        j = payload.index(b'"', i + 13)
        now = time.perf_counter()
        latencies.append(now - sent_at[int(payload[i + 13:j])])
        state["delivered"] += 1
        if state["delivered"] == expected:
            state["last"] = now
            done.callback(None)

    async def connect_raw(port):
        return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), ClientProtocol())

    async def main():
        if mode == "relay":
            sender, gid, clients = await _setup_relay(reactor, connect_raw, port, members)
        else:
            sender, gid, clients = await _setup_parley(reactor, connect, port, members)
        await task.deferLater(reactor, 0.5, lambda: None)  # let set-up pushes drain
        for c in clients:
            c.stringReceived = on_frame  # count from here on, without decoding JSON
        acked = defer.Deferred()
        progress = {"next": 0, "acked": 0}

        def send_next(_=None):
            i = progress["next"]
            if i >= messages:
                return
            progress["next"] += 1
            sent_at[i] = time.perf_counter()
            d = sender.request("group_send", group=gid, body=f"fan-out message {i}", client_id=str(i))
            d.addCallbacks(on_ack, on_failure)

        def on_failure(failure):  # a refused send (the database went away): this run is void
            if not acked.called:
                acked.errback(failure)

        def on_ack(reply):
            progress["acked"] += 1
            if progress["acked"] == messages:
                acked.callback(None)
            send_next()

        start = time.perf_counter()
        cpu_start = (_cpu_seconds(server_pid), time.process_time())
        for _ in range(min(window, messages)):
            send_next()
        await defer.gatherResults([acked, done])
        elapsed = state["last"] - start
        server_cpu = _cpu_seconds(server_pid) - cpu_start[0]
        driver_cpu = time.process_time() - cpu_start[1]
        return {"mode": mode, "messages": messages, "members": members, "window": window,
                "deliveries": state["delivered"], "seconds": round(elapsed, 3),
                "deliveries_per_s": round(state["delivered"] / elapsed),
                "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
                "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
                "server_cpu_pct": round(100 * server_cpu / elapsed),
                "server_us_per_delivery": round(1e6 * server_cpu / state["delivered"], 2),
                "driver_cpu_pct": round(100 * driver_cpu / elapsed)}

    result = {}

    def finish(outcome):
        result["out"] = outcome
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(finish))
    reactor.run()
    out = result.get("out")
    if not isinstance(out, dict):
        print(json.dumps({"error": str(out)}))
        sys.exit(1)
    print(json.dumps(out))


# -- the orchestrator ------------------------------------------------------------------------

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_listening(proc, port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("server did not listen")


def _reset_mysql(url):
    import pymysql

    from imserver.store import dialects

    d = dialects.from_url(url)
    conn = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password, autocommit=True)
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{d.database}`")
    cur.execute(f"CREATE DATABASE `{d.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()


def run_once(backend, args):
    port = _free_port()
    me = [sys.executable, os.path.abspath(__file__)]
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "relay":
            cmd = me + ["serve-relay", "--port", str(port)]
        else:
            url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else args.mysql
            if backend == "mysql":
                _reset_mysql(url)
            cmd = me + ["serve", "--port", str(port), "--db", url, "--data-dir", tmp]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        server = subprocess.Popen(cmd, env=env)
        try:
            _wait_listening(server, port)
            out = subprocess.run(me + ["drive", "--port", str(port), "--mode", backend,
                                       "--messages", str(args.messages), "--members", str(args.members),
                                       "--window", str(args.window), "--server-pid", str(server.pid)],
                                 env=env, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise RuntimeError(f"driver failed: {out.stdout} {out.stderr}")
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait(timeout=30)


def _run_with_retries(backend, args, attempts=3):
    """A run that fails (MariaDB restarted under us, say) is retried, and says so."""
    for attempt in range(1, attempts + 1):
        try:
            return run_once(backend, args)
        except Exception as e:
            print(f"  {backend} run failed ({e!r:.200}); attempt {attempt} of {attempts}", flush=True)
            time.sleep(10)
    raise RuntimeError(f"{backend}: {attempts} failed runs in a row")


def orchestrate(args):
    results = {}
    for run in range(args.runs):
        for backend in args.backends:
            r = _run_with_retries(backend, args)
            results.setdefault(backend, []).append(r)
            print(f"run {run + 1} {backend:7s} {r['deliveries_per_s']:>9,} deliveries/s  "
                  f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  ({r['seconds']} s; CPU: server "
                  f"{r['server_cpu_pct']}% = {r['server_us_per_delivery']} us/delivery, driver "
                  f"{r['driver_cpu_pct']}%)", flush=True)
    print(f"\nmedians of {args.runs} runs: {args.members} members, {args.messages} messages, "
          f"window {args.window}")
    print("| backend | member deliveries/s | p50 latency | p99 latency | server CPU per delivery |"
          " server CPU | driver CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, rs in results.items():
        def median(key):
            return statistics.median(r[key] for r in rs)
        print(f"| {backend} | {median('deliveries_per_s'):,.0f} | {median('p50_ms'):.2f} ms | "
              f"{median('p99_ms'):.2f} ms | {median('server_us_per_delivery'):.2f} us | "
              f"{median('server_cpu_pct'):.0f}% | {median('driver_cpu_pct'):.0f}% |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="bench", choices=("bench", "serve", "serve-relay", "drive"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--backends", nargs="+", default=["relay", "sqlite", "mysql"],
                   choices=("relay", "sqlite", "mysql"))
    p.add_argument("--mysql", default="mysql://root@127.0.0.1:3306/parley_bench")
    p.add_argument("--port", type=int)
    p.add_argument("--db")
    p.add_argument("--data-dir")
    p.add_argument("--mode")
    p.add_argument("--server-pid", type=int)
    args = p.parse_args(argv)
    if args.command == "serve":
        serve_parley(args.db, args.port, args.data_dir)
    elif args.command == "serve-relay":
        serve_relay(args.port)
    elif args.command == "drive":
        drive(args.port, args.mode, args.messages, args.members, args.window, args.server_pid)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
