"""``imclient upload|download|transfers|drive``: a thin view over ``client.transfers``.

The transfers themselves (queue, progress, resume after a crash) are the client library's
(``imclient.transfers``); these commands start them, draw their ``TransferProgress`` events, and
wait. A server without file support answers ``unknown_op``, and the command says so in one line
and fails. ``imclient upload --resume`` continues what a crash interrupted.

The drive op names (``drive_list``, ``drive_put``, ``drive_get``, ``drive_share``) follow the
server's naming; docs/protocol.rst does not document the drive yet.
"""
import os
import sys

from tqdm import tqdm

from imclient.account import Account
from imclient.cli_common import Fail, online_client
from imclient.events import TransferProgress, format_progress
from imclient.worker import StoreWorker


class ProgressLine:
    """Shows ``TransferProgress`` events as a tqdm bar per transfer on stderr (on a terminal);
    elsewhere one summary line when a transfer finishes, so logs and scripts are not flooded."""

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


async def upload_file(client, path):
    """Upload one local file through the client's transfer queue; returns the file id."""
    if not os.path.isfile(path):
        raise Fail(f"no such file: {path}")
    return await (await client.transfers.upload(path)).done


async def download_file(client, file_id, dest):
    """Download a file by id into ``dest`` (a directory or a path); returns the local path."""
    return await (await client.transfers.download(file_id, dest)).done


async def cmd_transfers(reactor, args, out):
    """Unfinished transfers from the local store (no server needed): what a crash interrupted."""
    store = StoreWorker(Account.load(args.home, args.account).store_path, reactor)
    try:
        rows = await store.transfers()
    finally:
        await store.close()
    out.result({"transfers": rows}, "\n".join(
        f"#{t['transfer_id']} {t['direction']} {t['path']}  {t['offset']}/{t['size']} bytes"
        for t in rows) or "(no unfinished transfers)")


async def cmd_upload(reactor, args, out):
    client = await online_client(reactor, args)
    client.on(TransferProgress, ProgressLine())
    try:
        waiting = [t for t in await client.transfers.unfinished() if t.direction == "upload"]
        if args.resume:
            done = []
            for t in waiting:
                done.append({"path": t.path, "file": await t.resume().done})
            out.result({"uploaded": done}, "\n".join(f"{d['path']}: file {d['file']}" for d in done)
                       or "(no unfinished uploads)")
            return
        if not args.path:
            raise Fail("upload wants a PATH (or --resume)", 2)
        if waiting:
            print(f"imclient: {len(waiting)} unfinished upload(s) from before; continue them with "
                  "imclient upload --resume", file=sys.stderr)
        file_id = await upload_file(client, args.path)
        out.result({"path": args.path, "file": file_id}, f"uploaded {args.path}: file {file_id}")
    finally:
        await client.close()


async def cmd_download(reactor, args, out):
    client = await online_client(reactor, args)
    client.on(TransferProgress, ProgressLine())
    try:
        path = await download_file(client, args.file, args.output)
        out.result({"file": args.file, "path": path}, f"downloaded file {args.file} to {path}")
    finally:
        await client.close()


async def cmd_drive(reactor, args, out):
    client = await online_client(reactor, args)
    client.on(TransferProgress, ProgressLine())
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
