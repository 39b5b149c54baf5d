"""LAN chat benchmark: five LanChat members on loopback multicast in one reactor.

For each loss rate (dropped in the adapter, on send) it measures:
  * throughput: a burst of messages from all members, messages delivered everywhere per second;
  * latency: messages paced at a steady rate, send() to delivery at each other member (p50/p99).
Every phase is bounded by a message count and a time limit and says so if the limit was hit.

    python bench/lan_bench.py [--burst 5000] [--paced 500] [--rate 100] [--loss 0 0.1]
"""
import argparse
import random
import statistics
import sys
import time

from twisted.internet import defer, task

from imclient.lan import LanChat, MessageDelivered

PEERS = 5
TIME_LIMIT = 60.0


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


class Bench:
    """Five members on a fresh group and port; records when each message is delivered where."""

    def __init__(self, reactor, loss, seed):
        rng = random.Random(seed)
        group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        port = rng.randrange(20000, 60000)
        self.reactor = reactor
        self.chats = [LanChat(reactor, f"bench{i}", group, port, interface="127.0.0.1",
                              rng=random.Random(seed * 10 + i), drop_rate=loss)
                      for i in range(PEERS)]
        self.sent_at = {}
        self.latencies = []
        self.deliveries = 0
        for chat in self.chats:
            chat.subscribe(self._on_event)

    def _on_event(self, event):
        if isinstance(event, MessageDelivered) and event.message_id in self.sent_at:
            self.deliveries += 1
            self.latencies.append(time.perf_counter() - self.sent_at[event.message_id])

    def send(self, chat, text):
        now = time.perf_counter()
        self.sent_at[chat.send(text)] = now

    @defer.inlineCallbacks
    def start(self):
        for chat in self.chats:
            yield chat.start()
        yield self.wait(lambda: all(len(c.members) == PEERS - 1 for c in self.chats), 20)

    def stop(self):
        return defer.gatherResults([chat.stop() for chat in self.chats])

    @defer.inlineCallbacks
    def wait(self, condition, limit=TIME_LIMIT):
        """Poll until ``condition()``; returns False if ``limit`` seconds pass first."""
        deadline = time.perf_counter() + limit
        while not condition():
            if time.perf_counter() > deadline:
                return False
            yield task.deferLater(self.reactor, 0.005, lambda: None)
        return True

    def reset(self):
        self.sent_at.clear()
        self.latencies.clear()
        self.deliveries = 0


@defer.inlineCallbacks
def burst(bench, count):
    bench.reset()
    begin = time.perf_counter()
    for n in range(count):
        bench.send(bench.chats[n % PEERS], f"burst {n}")
    want = count * (PEERS - 1)
    done = yield bench.wait(lambda: bench.deliveries >= want)
    elapsed = time.perf_counter() - begin
    return {"messages": count, "seconds": elapsed, "per_second": bench.deliveries / (PEERS - 1)
            / elapsed, "complete": done, "delivered": bench.deliveries, "wanted": want}


@defer.inlineCallbacks
def paced(bench, count, rate):
    bench.reset()
    for n in range(count):
        bench.send(bench.chats[n % PEERS], f"paced {n}")
        yield task.deferLater(bench.reactor, 1.0 / rate, lambda: None)
    want = count * (PEERS - 1)
    done = yield bench.wait(lambda: bench.deliveries >= want)
    lat = bench.latencies
    return {"messages": count, "rate": rate, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * _percentile(lat, 0.99), "max_ms": 1000 * max(lat),
            "complete": done, "delivered": bench.deliveries, "wanted": want}


@defer.inlineCallbacks
def run(reactor, options):
    for loss in options.loss:
        bench = Bench(reactor, loss, options.seed)
        yield bench.start()
        b = yield burst(bench, options.burst)
        p = yield paced(bench, options.paced, options.rate)
        stats = sum((c.stats for c in bench.chats), start=type(bench.chats[0].stats)())
        yield bench.stop()
        print(f"loss {loss:.0%}: burst {b['messages']} msgs in {b['seconds']:.2f} s = "
              f"{b['per_second']:.0f} msgs/s delivered to all {PEERS - 1} others"
              f"{'' if b['complete'] else ' (TIME LIMIT HIT: %(delivered)d/%(wanted)d)' % b}")
        print(f"         paced {p['messages']} msgs at {p['rate']}/s: latency p50 "
              f"{p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms"
              f"{'' if p['complete'] else ' (TIME LIMIT HIT: %(delivered)d/%(wanted)d)' % p}")
        print(f"         datagrams dropped on purpose {stats['dropped_on_purpose']}, "
              f"NAK re-sends {stats['nak_retransmitted']}, timer re-sends "
              f"{stats['retransmitted']}, send failures {stats['send_failed']}")
        sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--paced", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    task.react(run, [options])


if __name__ == "__main__":
    main()
