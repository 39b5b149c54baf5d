"""The reactor thread's work for one 1:1 send, without the database, repeatably.

A real ``Server`` with two logged-in ``ImProtocol`` connections on StringTransports; each
request frame goes through ``dataReceived``, dispatch, the ``send`` handler and, with the group
committer's answer faked at once, the delivery: the push to the recipient and the ack to the
sender. Nothing waits on another thread, so under callgrind the instruction count repeats
exactly, whatever else the machine is doing. Instructions per send are the difference of two
sizes (start-up cancels out)::

    for n in 2000 12000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/delivery_ir.py --root . $n 2>&1 | grep Collected; done
    # (second - first) / 10000 = instructions per send

``--root`` names the checkout whose ``imserver`` to import, so two versions can be compared
with one interpreter. Without callgrind it prints the thread CPU time per send (noisy).
"""
import argparse
import os
import sys
import tempfile
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sends", type=int)
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = p.parse_args()
    sys.path.insert(0, os.path.abspath(args.root))
    from twisted.internet import reactor
    from twisted.internet.testing import StringTransport

    from imserver import wire
    from imserver.auth import User
    from imserver.config import Config
    from imserver.protocol import ImProtocol
    from imserver.runtime import tune_for_server
    from imserver.server import Server
    from imserver.store import Store, dialects
    from imserver.store.pool import Database

    data_dir = tempfile.mkdtemp(prefix="parley-delivery-")
    store = Store(Database(dialects.from_url("sqlite:///unused.db", data_dir)))
    server = Server(Config(data_dir=data_dir), store, reactor)
    # Before the announce seams (08d7e29) the local registry was the notifier.
    attach = getattr(server.connections, "attach", None) or server.notifier.attach
    ends = []
    for user_id in (1, 2):
        proto, transport = ImProtocol(server), StringTransport()
        proto.makeConnection(transport)
        user = User(user_id, f"user{user_id}", user_id, "bench")
        proto.set_session(user, lambda: None)
        attach(user, proto)
        ends.append((proto, transport))
    (sender, sent_to), (_, received) = ends
    positions = iter(range(1, 10 ** 9))

    def committed(kind, job, on_result):  # the group committer, answering at once
        pos = next(positions)
        on_result(({"op": "message", "pos": pos, "msg_id": pos, "from": job.sender,
                    "to": job.recipient, "body": job.body, "kind": "text", "ts": job.ts,
                    "client_id": job.client_id}, False))

    server.writer.enqueue = committed
    tune_for_server()
    frames = [wire.encode({"op": "send", "id": i, "to": 2, "body": "hello there",
                           "client_id": f"c{i}"}) for i in range(args.sends)]
    acks = pushes = 0
    start = time.thread_time()
    for frame in frames:
        sender.dataReceived(frame)
        if sent_to.io.tell() > 1 << 20:
            acks += sent_to.value().count(b'"ok":true')
            pushes += received.value().count(b'"op":"message"')
            sent_to.clear()
            received.clear()
    elapsed = time.thread_time() - start
    acks += sent_to.value().count(b'"ok":true')
    pushes += received.value().count(b'"op":"message"')
    if acks != args.sends or pushes != args.sends:
        sys.exit(f"expected {args.sends} acks and pushes, got {acks} and {pushes}")
    print(f"{args.root}: {args.sends} sends, {elapsed / args.sends * 1e6:.2f} us of thread CPU each")
    store.close()


if __name__ == "__main__":
    main()
