"""``imclient upload|download|drive``: files through the server's transfer engine.

The bytes move through ``imclient.transfer``. A server without file support answers
``unknown_op``, and the command says so in one line and fails. Every transfer is recorded in the local store (path, size, SHA-256) before it starts, so
``imclient upload --resume`` can continue what a crash interrupted.

The drive op names (``drive_list``, ``drive_put``, ``drive_get``, ``drive_share``) follow the
server's naming; docs/protocol.rst does not document the drive yet.
"""
import os
import sys
import time

from tqdm import tqdm
from twisted.internet import task, threads

from imclient import transfer
from imclient.account import Account
from imclient.cli_common import Fail, online_client
from imclient.store import LocalStore
from imclient.events import format_progress
from imclient.protocol import RemoteError


class ProgressLine:
    """Shows ``progress`` events as a tqdm bar per transfer on stderr (on a terminal); elsewhere
    one summary line when a transfer finishes, so logs and scripts are not flooded."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.bars = {}

    def __call__(self, event):
        if not self.tty:
            if event.done:
                self.stream.write(format_progress(event) + "\n")
            return
        bar = self.bars.get(event.transfer)
        if bar is None:
            bar = self.bars[event.transfer] = tqdm(
                total=event.total, initial=event.bytes_done, desc=event.file_name, unit="B",
                unit_scale=True, unit_divisor=1024, file=self.stream, leave=True,
                mininterval=0, miniters=1)  # events come throttled already (ProgressMeter)
        bar.update(event.bytes_done - bar.n)
        if event.done:
            bar.close()
            del self.bars[event.transfer]


def _watch(client, meter, measure, interval=0.25):
    """Poll ``measure()`` (bytes done) into ``meter`` until stopped; returns the LoopingCall."""
    loop = task.LoopingCall(lambda: meter.update(measure()))
    loop.clock = client.clock
    loop.start(interval, now=True)
    return loop


async def upload_file(client, path):
    """Upload one local file, recorded as a transfer; returns the server's file id."""
    if not os.path.isfile(path):
        raise Fail(f"no such file: {path}")
    size, sha256 = await threads.deferToThread(transfer.file_digest, path)
    name = os.path.basename(path)
    rows = [t for t in await client.store.transfers() if t["direction"] == "upload"
            and t["path"] == os.path.abspath(path) and t["sha256"] == sha256]
    tid = rows[0]["transfer_id"] if rows else await client.store.transfer_add(
        "upload", os.path.abspath(path), name, size, sha256, int(time.time() * 1000))
    try:
        return await _upload_transfer(client, tid, path, name, size, sha256)
    except RemoteError as e:
        if e.code == "unknown_op":  # nothing began: there is nothing to resume either
            await client.store.transfer_remove(tid)
        raise


async def _upload_transfer(client, tid, path, name, size, sha256):
    meter = client.progress_meter(tid, "upload", name, size)
    # The server says how far it has written (an upload_progress push every 4 MiB).
    unsubscribe = client.protocol.subscribe(
        lambda push: meter.update(push["offset"]) if push.get("op") == "upload_progress" else None)
    try:
        file_id = await transfer.upload(client.protocol, path, name=name, size=size, sha256=sha256)
    finally:
        unsubscribe()
    meter.update(size)
    await client.store.transfer_update(tid, file_id=file_id, offset=size, state="done",
                                 updated=int(time.time() * 1000))
    return file_id


async def cmd_transfers(reactor, args, out):
    """Unfinished transfers from the local store (no server needed): what a crash interrupted."""
    store = LocalStore(Account.load(args.home, args.account).store_path)
    try:
        rows = store.transfers()
    finally:
        store.close()
    out.result({"transfers": rows}, "\n".join(
        f"#{t['transfer_id']} {t['direction']} {t['path']}  {t['offset']}/{t['size']} bytes"
        for t in rows) or "(no unfinished transfers)")


async def _offer_resume(client):
    waiting = [t for t in await client.store.transfers() if t["direction"] == "upload"]
    if waiting:
        print(f"imclient: {len(waiting)} unfinished upload(s) from before; continue them with "
              "imclient upload --resume", file=sys.stderr)


async def cmd_upload(reactor, args, out):
    client = await online_client(reactor, args)
    client.on("progress", ProgressLine())
    try:
        if args.resume:
            done = []
            for t in [t for t in await client.store.transfers() if t["direction"] == "upload"]:
                file_id = await _upload_transfer(client, t["transfer_id"], t["path"], t["name"],
                                                 t["size"], t["sha256"])
                done.append({"path": t["path"], "file": file_id})
            out.result({"uploaded": done}, "\n".join(f"{d['path']}: file {d['file']}" for d in done)
                       or "(no unfinished uploads)")
            return
        if not args.path:
            raise Fail("upload wants a PATH (or --resume)", 2)
        await _offer_resume(client)
        file_id = await upload_file(client, args.path)
        out.result({"path": args.path, "file": file_id}, f"uploaded {args.path}: file {file_id}")
    finally:
        await client.close()


async def download_file(client, file_id, dest):
    """Download a file by id into ``dest`` (a directory or a path); returns the local path."""
    info = (await client.file_info(file_id))["file"]  # unknown_op ends it here
    if dest is None or os.path.isdir(dest):
        dest = os.path.join(dest or ".", transfer.safe_name(info.get("name", ""), f"file-{file_id}"))
    size = info.get("size", 0)
    tid = await client.store.transfer_add("download", os.path.abspath(dest), os.path.basename(dest), size,
                                    info.get("sha256"), int(time.time() * 1000), file_id=file_id)
    offset = os.path.getsize(dest) if os.path.exists(dest) and os.path.getsize(dest) < size else 0
    meter = client.progress_meter(tid, "download", os.path.basename(dest), size, start=offset)
    watch = _watch(client, meter, lambda: os.path.getsize(dest) if os.path.exists(dest) else 0)
    try:
        await transfer.download(client.protocol, file_id, dest, offset=offset)
    finally:
        watch.stop()
    meter.update(size)
    await client.store.transfer_update(tid, offset=size, state="done", updated=int(time.time() * 1000))
    return dest


async def cmd_download(reactor, args, out):
    client = await online_client(reactor, args)
    client.on("progress", ProgressLine())
    try:
        path = await download_file(client, args.file, args.output)
        out.result({"file": args.file, "path": path}, f"downloaded file {args.file} to {path}")
    finally:
        await client.close()


async def cmd_drive(reactor, args, out):
    client = await online_client(reactor, args)
    client.on("progress", ProgressLine())
    try:
        await _DRIVE[args.action](client, args, out)
    finally:
        await client.close()


async def _drive_ls(client, args, out):
    reply = await client.request("drive_list", path=args.path)
    entries = reply.get("entries", [])
    out.result(reply, "\n".join(f"{e.get('name')}  {e.get('size', '')}" for e in entries) or "(empty)")


async def _drive_put(client, args, out):
    remote = args.remote or "/" + os.path.basename(args.local)
    file_id = await upload_file(client, args.local)
    reply = await client.request("drive_put", path=remote, file=file_id)
    out.result(reply, f"stored {args.local} as {remote}")


async def _drive_get(client, args, out):
    reply = await client.request("drive_get", path=args.remote)
    path = await download_file(client, reply["file"], args.local)
    out.result({"path": path, "remote": args.remote}, f"fetched {args.remote} to {path}")


async def _drive_share(client, args, out):
    reply = await client.request("drive_share", path=args.remote, user=await client.resolve(args.user))
    out.result(reply, f"shared {args.remote} with {args.user}")


_DRIVE = {"ls": _drive_ls, "put": _drive_put, "get": _drive_get, "share": _drive_share}


def add_commands(sub):
    sub.add_parser("transfers", help="unfinished uploads and downloads (from the local store)"
                   ).set_defaults(run=cmd_transfers)
    p = sub.add_parser("upload", help="upload a file (resumable; see --resume)")
    p.add_argument("path", nargs="?", help="the local file")
    p.add_argument("--resume", action="store_true",
                   help="continue every unfinished upload recorded in the local store")
    p.set_defaults(run=cmd_upload)
    p = sub.add_parser("download", help="download a file by id")
    p.add_argument("file", type=int, help="the file id")
    p.add_argument("-o", "--output", help="where to write it (a path or a directory; default: here)")
    p.set_defaults(run=cmd_download)
    p = sub.add_parser("drive", help="your drive on the server: ls, put, get, share")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=sub._parser_class)
    dsub.required = True
    dp = dsub.add_parser("ls", help="list a drive folder (op drive_list)")
    dp.add_argument("path", nargs="?", default="/")
    dp = dsub.add_parser("put", help="upload LOCAL and store it at REMOTE (op drive_put)")
    dp.add_argument("local")
    dp.add_argument("remote", nargs="?")
    dp = dsub.add_parser("get", help="download REMOTE to LOCAL (op drive_get)")
    dp.add_argument("remote")
    dp.add_argument("local", nargs="?")
    dp = dsub.add_parser("share", help="share REMOTE with USER (op drive_share)")
    dp.add_argument("remote")
    dp.add_argument("user")
    p.set_defaults(run=cmd_drive)
