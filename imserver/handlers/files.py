"""File ops: uploads (new, resumed, instant with proof), downloads, and a user's files.

The rules and the bytes live in the transfer engine (``ctx.server.files``); chunk and download
frames never pass through here. Wire shapes are in docs/protocol.rst under "Files".
"""
from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.errors import ImError
from imserver.store import files as store

domain = Domain("files")

_ID = dict(min=1)


@domain.op("upload_begin", name=Str(max_len=255), size=Int(min=0), sha256=Str(max_len=64),
           mime=Str(required=False, default="application/octet-stream", max_len=127))
async def upload_begin(ctx, name, size, sha256, mime):
    return await ctx.server.files.begin(ctx.user.user_id, name, size, sha256, mime)


@domain.op("upload_proof", challenge=Str(max_len=64), proof=Str(max_len=64))
async def upload_proof(ctx, challenge, proof):
    return await ctx.server.files.proof(ctx.user.user_id, challenge, proof)


@domain.op("upload_status", upload=Int(**_ID))
async def upload_status(ctx, upload):
    return await ctx.server.files.status(ctx.user.user_id, upload)


@domain.op("upload_cancel", upload=Int(**_ID))
async def upload_cancel(ctx, upload):
    await ctx.server.files.cancel(ctx.user.user_id, upload)
    return {}


@domain.op("download", file=Int(**_ID), offset=Int(required=False, default=0, min=0),
           length=Int(required=False, min=0))
async def download(ctx, file, offset, length):
    return await ctx.server.files.download(ctx.conn, ctx.user.user_id, file, offset, length)


@domain.op("download_cancel", download=Int(**_ID))
def download_cancel(ctx, download):
    ctx.server.files.cancel_download(ctx.conn, download)
    return {}


@domain.op("file_info", file=Int(**_ID))
async def file_info(ctx, file):
    info = await ctx.server.read("file_readable", store.readable_file, file, ctx.user.user_id)
    if info is None:
        raise ImError("not_found", "no such file")
    return {"file": _public(info)}


@domain.op("files_list", limit=Int(required=False, default=100, min=1, max=1000))
async def files_list(ctx, limit):
    rows = await ctx.server.read("files_list", store.list_files, ctx.user.user_id, limit)
    return {"files": [_public(r) for r in rows]}


@domain.op("file_delete", file=Int(**_ID))
async def file_delete(ctx, file):
    await ctx.server.files.delete(ctx.user.user_id, file)
    return {}


def _public(info):
    out = dict(info)
    out["file"] = out.pop("id")
    return out
