"""The server's own CPU time per message, in one process and without sockets.

``bench/load.py`` measures a real server under a real load, but on this shared 2-core machine
its latencies swing by a fifth or more within the hour, and at 20,000 msgs/s they follow the
server's CPU time per message: its Python runs under one GIL, shared by the reactor thread and
the database threads. This benchmark measures that CPU time alone, split by thread, which
repeats far more closely than latency (within a few per cent in a quiet spell of the VM), so a
change to the hot path can be compared before and after.

The clients are real ``ImProtocol`` connections of a real server (SQLite by default, or
``--mysql-url``) on in-memory transports. They register, log in and make friends through the
protocol; then each round, every sender sends one message per read (as in ``load.py``'s open
loop) until ``--batch`` messages are in, and the round ends when every ack and push has been
written. What is not counted: the system calls of real sockets (``load.py`` has those).

    python bench/hotpath.py --mysql-url mysql://root@127.0.0.1:3306/parley_bench
    python bench/hotpath.py                 # SQLite (its figures creep up as the file grows)

Even CPU time moves with this VM's load (a fifth between runs of one invocation at worst), so
compare two versions by alternating invocations and looking at the minimum as well as the median.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from imserver import wire  # noqa: E402
from imserver.auth import PasswordHasher  # noqa: E402
from imserver.config import Config  # noqa: E402
from imserver.protocol import ImProtocol  # noqa: E402
from imserver.runtime import tune_for_server  # noqa: E402
from imserver.server import Server  # noqa: E402
from imserver.store import Database, Store, dialects  # noqa: E402
from imserver.store.migrate import migrate  # noqa: E402

BODY = b" hello from the load driver"


class Tally:
    """Acks and pushes written so far; ``wait(n)`` fires once both have reached ``n``."""

    def __init__(self):
        self.acks = self.pushes = 0
        self._target, self._waiting = None, None

    def wait(self, n):
        self._target, self._waiting = n, defer.Deferred()
        self._check()
        return self._waiting

    def _check(self):
        if self._waiting is not None and min(self.acks, self.pushes) >= self._target:
            d, self._waiting = self._waiting, None
            reactor.callLater(0, d.callback, None)  # after the batch's results, not inside them


class Sink(StringTransport):
    """A transport that keeps what is written during set-up, and afterwards only counts it."""

    def __init__(self, tally):
        super().__init__(peerAddress=None)
        self.tally = tally
        self.keep = True

    def write(self, data):
        if self.keep:
            super().write(data)
            return
        tally = self.tally
        tally.acks += data.count(b'"re":')
        tally.pushes += data.count(b'"op":"message"')
        tally._check()


class Client:
    def __init__(self, server, tally):
        self.transport = Sink(tally)
        self.proto = ImProtocol(server)
        self.proto.makeConnection(self.transport)
        self.next_id = 1

    def send_message(self, client_id):
        """A ``send`` request, formatted as cheaply as the load driver does (this process's
        CPU time is what is measured)."""
        rid, self.next_id = self.next_id, self.next_id + 1
        payload = b'{"op":"send","id":%d,"to":%d,"body":"%d%s","client_id":"%s"}' % (
            rid, self.to, time.monotonic_ns(), BODY, client_id.encode())
        self.proto.dataReceived(len(payload).to_bytes(4, "big") + payload)

    def send(self, op, **fields):
        rid, self.next_id = self.next_id, self.next_id + 1
        self.proto.dataReceived(wire.encode({"op": op, "id": rid, **fields}))
        return rid

    async def request(self, op, **fields):
        rid = self.send(op, **fields)
        for _ in range(20000):
            for payload in _frames(self.transport.value()):
                reply = wire.decode(payload)
                if reply.get("re") == rid:
                    if not reply["ok"]:
                        raise RuntimeError(f"{op} failed: {reply['error']}")
                    return reply
            await task.deferLater(reactor, 0.001, lambda: None)
        raise TimeoutError(op)


def _frames(data):
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        yield data[pos + 4:pos + 4 + n]
        pos += 4 + n


def thread_cpu():
    """CPU seconds of every other thread of this process (the database threads)."""
    me = threading.get_ident()
    return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident))
               for t in threading.enumerate() if t.ident != me)


async def setup(server, pairs, tally):
    senders, receivers = [], []
    for i in range(pairs):
        s, r = Client(server, tally), Client(server, tally)
        ids = []
        for c, name in ((s, f"sender{i}"), (r, f"receiver{i}")):
            await c.request("register", username=name, password="hot path password")
            ids.append((await c.request("login", username=name, password="hot path password"))["user_id"])
        await s.request("friend_request", user=ids[1])
        await r.request("friend_accept", user=ids[0])
        s.to = ids[1]
        senders.append(s)
        receivers.append(r)
    for c in senders + receivers:
        c.transport.clear()
        c.transport.keep = False
    return senders, receivers


async def run_rounds(senders, tally, rounds, batch, tag):
    """Send ``rounds`` rounds of ``batch`` messages; returns (messages, reactor s, db s)."""
    tally.acks = tally.pushes = 0
    sent = 0
    cpu0, db0 = time.thread_time(), thread_cpu()
    for r in range(rounds):
        for k in range(batch):
            senders[(sent + k) % len(senders)].send_message(f"{tag}-{r}-{k}")
        sent += batch
        await tally.wait(sent)
    return sent, time.thread_time() - cpu0, thread_cpu() - db0


async def main(args):
    workdir = tempfile.mkdtemp(prefix="parley-hotpath-")
    try:
        url = args.mysql_url or "sqlite:///hotpath.db"
        if args.mysql_url:
            sys.path.insert(0, HERE)
            from load import fresh_mysql
            fresh_mysql(url)
        dialect = dialects.from_url(url, workdir)
        migrate(dialect, log=lambda t: None)
        store = Store(Database(dialect))
        server = Server(Config(data_dir=workdir), store, reactor,
                        hasher=PasswordHasher(reactor, n=2 ** 10))
        tally = Tally()
        senders, _ = await setup(server, args.pairs, tally)
        tune_for_server()
        await run_rounds(senders, tally, 20, args.batch, "warm")
        print(f"{dialect.name}, {args.pairs} pairs, rounds of {args.batch} messages, "
              f"{args.rounds} rounds per run")
        print("run | messages | reactor thread µs/msg | database threads µs/msg | total µs/msg")
        results = []
        for run in range(args.runs):
            n, main_s, db_s = await run_rounds(senders, tally, args.rounds, args.batch, f"r{run}")
            results.append((main_s * 1e6 / n, db_s * 1e6 / n))
            print(f"{run + 1} | {n:,} | {results[-1][0]:.2f} | {results[-1][1]:.2f} | "
                  f"{sum(results[-1]):.2f}")
        for name, pick in (("median", statistics.median), ("min", min)):
            main_us, db_us = (pick(r[i] for r in results) for i in (0, 1))
            print(f"{name} | | {main_us:.2f} | {db_us:.2f} | {main_us + db_us:.2f}")
        store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--batch", type=int, default=300, help="messages per round (one group commit)")
    p.add_argument("--rounds", type=int, default=40, help="rounds per run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--mysql-url", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    task.react(lambda _: defer.ensureDeferred(main(args)))
