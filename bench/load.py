"""Messaging benchmark (issue 4): delivered messages per second and push latency of a real server.

Starts ``twistd -n imserver`` (SQLite or MariaDB, plain TCP and TLS on loopback) and, as the
baseline, the bare relay ``bench/relay.py``, each in its own process, and drives them from
``--workers`` driver processes (``bench/loadclient.py``). Sender/receiver pairs are registered,
logged in and made friends; then, per point:

* closed loop: each of ``pairs`` senders keeps ``window`` sends in flight (saturation);
* open loop: 100 senders offer a fixed total rate, each message stamped with its scheduled time.

Throughput counts pushes received in the measured window; latency is push arrival minus the send
time in the body. Server CPU is read from /proc/<pid>/stat around the window.

    python bench/load.py            # the full matrix, a few minutes
    python bench/load.py --quick    # MariaDB and the relay, 100 pairs, window 50 and 20k/s
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import loadclient  # noqa: E402
from imserver import tls  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User plus system CPU of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_seconds():
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def listener_pid(port):
    """The process listening on TCP ``port`` (the MariaDB the server uses; there may be others)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
        except OSError:
            pass
    return None


def wait_listening(proc, port, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on {port}")


class Target:
    """A process under test: the Parley server on one database, or the bare relay."""

    def __init__(self, name, workdir, mysql_url, pool):
        self.name = name
        self.kind = "relay" if name == "relay" else "parley"
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.cert, self.key, _ = tls.ensure(self.dir)
        self.port, self.tls_port = free_port(), free_port()
        self.db_url, self.db_port = None, None
        if name == "sqlite":
            self.db_url = "sqlite:///bench.db"
        elif name == "mysql":
            self.db_url = fresh_mysql(mysql_url) + (f"?pool={pool}" if pool else "")
            self.db_port = urlsplit(mysql_url).port or 3306
        self.proc = None

    def start(self):
        if self.kind == "relay":
            cmd = [sys.executable, os.path.join(HERE, "relay.py"), str(self.port), str(self.tls_port),
                   self.cert, self.key]
        else:
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            cmd = [twistd, "-n", "--pidfile", "", "--logfile", os.path.join(self.dir, "twistd.log"),
                   "imserver", "--data-dir", self.dir, "--db", self.db_url,
                   "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                   "--listen", f"ssl:{self.tls_port}:interface=127.0.0.1:privateKey={self.key}"
                               f":certKey={self.cert}"]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=subprocess.DEVNULL)
        try:
            wait_listening(self.proc, self.port, self.name)
            wait_listening(self.proc, self.tls_port, self.name)
        except (RuntimeError, TimeoutError):
            log = os.path.join(self.dir, "twistd.log")
            if os.path.exists(log):  # say why the server did not start
                with open(log) as f:
                    sys.stderr.write("".join(f.readlines()[-30:]))
            raise

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def fresh_mysql(url):
    """Drop and recreate the benchmark database; returns the URL to give the server."""
    import pymysql
    from imserver.store import dialects

    d = dialects.from_url(url)
    conn = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password, autocommit=True)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{d.database}`")
        conn.cursor().execute(f"CREATE DATABASE `{d.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    return url


def commit_probe(target, n=10):
    """Median time of a one-row commit on the target's database, in ms: the fsync latency that
    bounds a group-commit pipeline (on a shared disk it swings from ~1 ms to hundreds)."""
    if target.kind == "relay":
        return None
    if target.name == "mysql":
        import pymysql
        from imserver.store import dialects

        d = dialects.from_url(target.db_url)
        conn = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password,
                               database=d.database)
    else:
        import sqlite3

        conn = sqlite3.connect(os.path.join(target.dir, "probe.db"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS probe (id INT PRIMARY KEY, n INT)")
    cur.execute("DELETE FROM probe")
    cur.execute("INSERT INTO probe VALUES (1, 0)")
    conn.commit()
    times = []
    for i in range(n):
        start = time.perf_counter()
        cur.execute(f"UPDATE probe SET n = {i} WHERE id = 1")
        conn.commit()
        times.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(times) * 1000


class Driver:
    """The worker processes, commanded together."""

    def __init__(self, n):
        ctx = multiprocessing.get_context("fork")
        self.pipes, self.procs = [], []
        for i in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=loadclient.main, args=(child, i, n), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    def call(self, name, *args):
        for pipe in self.pipes:
            pipe.send((name, args))
        results = [pipe.recv() for pipe in self.pipes]
        for r in results:
            if isinstance(r, dict) and "failed" in r:
                raise RuntimeError(f"driver {name}: {r['failed']}")
        return results

    def cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self):
        for pipe in self.pipes:
            pipe.send(None)
        for p in self.procs:
            p.join(10)


def percentile(ordered, fraction):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_point(driver, target, mode, pairs, param, args, db_pid, seq):
    """One measured point; returns its figures."""
    probe = commit_probe(target)
    t0 = time.monotonic_ns() + 300_000_000
    warm, dur = int(args.warmup * 1e9), int(args.duration * 1e9)
    tag = b"r%dx" % seq
    for pipe in driver.pipes:
        pipe.send((mode, (pairs, param, t0, warm, dur, tag)))
    time.sleep(max(0, (t0 + warm - time.monotonic_ns()) / 1e9))
    before = (cpu_seconds(target.proc.pid), cpu_seconds(db_pid), driver.cpu(), time.monotonic(),
              busy_seconds())
    time.sleep(max(0, (t0 + warm + dur - time.monotonic_ns()) / 1e9))
    after = (cpu_seconds(target.proc.pid), cpu_seconds(db_pid), driver.cpu(), time.monotonic(),
             busy_seconds())
    results = [pipe.recv() for pipe in driver.pipes]
    for r in results:
        if "failed" in r:
            raise RuntimeError(f"driver {mode}: {r['failed']}")
    lat = array("q")
    for r in results:
        lat.frombytes(r["latencies"])
    ordered = sorted(lat)
    wall = after[3] - before[3]
    measured = sum(r["measured"] for r in results)
    rate = measured / (dur / 1e9)
    server_cpu = (after[0] - before[0]) / wall
    return {
        "rate": rate, "p50": percentile(ordered, 0.5) / 1000, "p99": percentile(ordered, 0.99) / 1000,
        "server_cpu": server_cpu, "us_per_msg": server_cpu * 1e6 / rate if rate else float("nan"),
        "db_cpu": (after[1] - before[1]) / wall if db_pid else None,
        "driver_cpu": (after[2] - before[2]) / wall,
        # Everything else the machine ran meanwhile (other jobs on a shared machine skew figures).
        "other_cpu": ((after[4] - before[4]) - sum(after[i] - before[i] for i in range(3))) / wall,
        "errors": sum(r["errors"] for r in results),
        "drained": all(r["drained"] for r in results),
        "commit_ms": probe,
    }


def median_of(runs):
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in runs)
        elif key == "errors":
            out[key] = sum(r[key] for r in runs)
        elif value is None:
            out[key] = None
        else:
            out[key] = statistics.median(r[key] for r in runs)
    return out


def points(args):
    out = [("closed", p, w) for p in args.pairs for w in args.windows]
    out += [("open", args.open_pairs, r) for r in args.rates]
    return out


HEADER = ("| target | transport | mode | pairs | window / offered | delivered msg/s | p50 ms | p99 ms "
          "| server CPU (cores) | server µs/msg | MariaDB CPU | driver CPU | other CPU | commit ms | vs relay |")


def row(key, r, relay):
    target, transport, mode, pairs, param = key
    ratio = ""
    base = relay.get((transport, mode, pairs, param))
    if base and target != "relay" and base["rate"]:
        ratio = f"{r['rate'] / base['rate']:.2f}"
    param = f"w={param}" if mode == "closed" else f"{param:,}/s"
    db = f"{r['db_cpu']:.2f}" if r["db_cpu"] is not None else ""
    commit = f"{r['commit_ms']:.1f}" if r["commit_ms"] is not None else ""
    flags = ("" if r["drained"] else " (not drained)") + (f" ({r['errors']} errors)" if r["errors"] else "")
    return (f"| {target} | {transport} | {mode} | {pairs} | {param} | {r['rate']:,.0f}{flags} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['server_cpu']:.2f} | {r['us_per_msg']:.1f} | {db} "
            f"| {r['driver_cpu']:.2f} | {r['other_cpu']:.2f} | {commit} | {ratio} |")


def bench_target(name, args, workdir, driver, relay, lines, seq):
    target = Target(name, workdir, args.mysql_url, args.pool)
    target.start()
    db_pid = listener_pid(target.db_port) if name == "mysql" else None
    total = max(args.pairs + [args.open_pairs])
    try:
        if target.kind == "parley":
            started = time.monotonic()
            driver.call("setup", "127.0.0.1", target.port, total, "b")
            driver.call("close")
            print(f"# {name}: {2 * total} users registered, logged in, befriended in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
        for transport in args.transports:
            port = target.tls_port if transport == "tls" else target.port
            driver.call("connect", "127.0.0.1", port, transport == "tls", target.kind, total)
            for mode, pairs, param in points(args):
                runs = []
                for _ in range(args.repeat):
                    seq[0] += 1
                    runs.append(run_point(driver, target, mode, pairs, param, args, db_pid, seq[0]))
                key = (name, transport, mode, pairs, param)
                result = median_of(runs)
                if len(runs) > 1:  # the runs behind the median, as this VM's speed drifts
                    print(f"# {name} {transport} {mode} {param}: runs "
                          + ", ".join(f"{r['rate']:,.0f} msgs/s p50 {r['p50']:.1f} p99 {r['p99']:.1f} ms"
                                      for r in runs), flush=True)
                if name == "relay":
                    relay[key[1:]] = result
                lines.append(row(key, result, relay))
                print(lines[-1], flush=True)
            driver.call("close")
    finally:
        target.stop()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MariaDB and relay; 100 pairs w=50; 20k/s")
    parser.add_argument("--targets", nargs="+", default=["relay", "sqlite", "mysql"])
    parser.add_argument("--transports", nargs="+", default=["plain", "tls"])
    parser.add_argument("--pairs", nargs="*", type=int, default=[1, 10, 100])
    parser.add_argument("--windows", nargs="*", type=int, default=[1, 50])
    parser.add_argument("--rates", nargs="*", type=int, default=[5000, 10000, 20000])
    parser.add_argument("--open-pairs", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; the median is shown")
    parser.add_argument("--workers", type=int, default=2, help="driver processes")
    parser.add_argument("--pool", type=int, default=None, help="MySQL pool size (?pool=N)")
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306/parley_bench")
    args = parser.parse_args(argv)
    if args.quick:
        args.targets = [t for t in args.targets if t in ("relay", "mysql")]
        args.pairs, args.windows, args.rates = [100], [50], [20000]
    return args


def main(argv=None):
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="parley-bench-")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; driver on "
          f"{'uvloop' if loadclient.uvloop else 'asyncio'}; {' '.join(sys.argv)}", flush=True)
    driver = Driver(args.workers)
    relay, lines, seq = {}, [], [0]
    try:
        for name in sorted(args.targets, key=lambda t: t != "relay"):
            bench_target(name, args, workdir, driver, relay, lines, seq)
    finally:
        driver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
