"""Account ops: register, login, resume, logout, password, profile, search and sessions."""
import re

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import task

from imserver.auth import IUser, Mind, SessionToken
from imserver.dispatch import Int, Str
from imserver.errors import ImError
from imserver.handlers import ops
from imserver.store.accounts import EDITABLE

USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")
PASSWORD = dict(max_len=1024)
MIN_PASSWORD = 8


def _username(name):
    name = name.strip().lower()
    if not USERNAME.match(name):
        raise ImError("bad_request", "username must be 3-32 characters of a-z, 0-9, '_', '.', '-'")
    return name


def _check_password(password):
    if len(password) < MIN_PASSWORD:
        raise ImError("bad_request", f"password must be at least {MIN_PASSWORD} characters")


@ops.op("register", auth=False, username=Str(max_len=64), password=Str(**PASSWORD),
        nickname=Str(required=False, max_len=64), phone=Str(required=False, max_len=32))
async def register(ctx, username, password, nickname, phone):
    username = _username(username)
    _check_password(password)
    if phone is not None and not re.fullmatch(r"\+?[0-9]{5,20}", phone):
        raise ImError("bad_request", "phone must be 5-20 digits, optionally after '+'")
    server = ctx.server
    hashed = await server.hasher.hash(password)
    user_id = await server.store.accounts.create_user(username, phone, hashed,
                                                      nickname or username, server.now_ms())
    return {"user_id": user_id}


def _throttle_keys(ctx, username):
    return [("user", username.strip().lower()), ("addr", getattr(ctx.conn.peer, "host", "?"))]


async def _login(ctx, credentials, throttle_keys, mind):
    if ctx.user is not None:
        raise ImError("bad_request", "already logged in on this connection; logout first")
    server = ctx.server
    server.throttle.check(throttle_keys)
    try:
        _, user, logout = await server.portal.login(credentials, mind, IUser)
    except UnauthorizedLogin:
        delay = server.throttle.failed(throttle_keys)
        if delay:
            await task.deferLater(server.clock, delay, lambda: None)
        raise ImError("bad_credentials", "wrong username, password or token") from None
    server.throttle.succeeded(throttle_keys)
    if not ctx.conn.connected:  # the client left while we checked: undo the registration
        logout()
        raise ImError("bad_request", "connection closed during login")
    ctx.conn.set_session(user, logout)
    for hook in server.login_hooks:
        hook(ctx, user)
    return user


@ops.op("login", auth=False, username=Str(max_len=64), password=Str(**PASSWORD),
        device=Str(required=False, max_len=64))
async def login(ctx, username, password, device):
    user = await _login(ctx, UsernamePassword(username.strip().lower(), password),
                        _throttle_keys(ctx, username), Mind(ctx.conn, device))
    return {"user_id": user.user_id, "token": user.token, "session": user.session_id}


@ops.op("resume", auth=False, token=Str(max_len=200))
async def resume(ctx, token):
    keys = [("addr", getattr(ctx.conn.peer, "host", "?"))]
    user = await _login(ctx, SessionToken(token), keys, Mind(ctx.conn, None))
    return {"user_id": user.user_id, "session": user.session_id, "device": user.device}


@ops.op("logout")
async def logout(ctx):
    user = ctx.user
    ctx.conn.clear_session()
    await ctx.server.store.accounts.delete_session(user.user_id, user.session_id)
    return {}


@ops.op("change_password", old_password=Str(**PASSWORD), new_password=Str(**PASSWORD))
async def change_password(ctx, old_password, new_password):
    _check_password(new_password)
    server, user = ctx.server, ctx.user
    stored = await server.store.accounts.password_hash(user.user_id)
    if not await server.hasher.verify(old_password, stored or ""):
        raise ImError("bad_credentials", "the old password is wrong")
    hashed = await server.hasher.hash(new_password)
    ended = await server.store.accounts.set_password(user.user_id, hashed, user.session_id)
    for session_id in ended:
        server.notifier.disconnect_session(user.user_id, session_id,
                                           {"op": "session_revoked", "session": session_id})
    return {"sessions_ended": len(ended)}


@ops.op("profile_get", user=Int(required=False))
async def profile_get(ctx, user):
    me = ctx.user.user_id
    profile = await ctx.server.store.accounts.profile(user if user is not None else me)
    if profile is None:
        raise ImError("not_found", "no such user")
    if profile["id"] != me:
        profile = {k: profile[k] for k in ("id", "username", "nickname", "avatar", "remark")}
    profile["user_id"] = profile.pop("id")
    return {"profile": profile}


_PROFILE_FIELDS = dict(nickname=Str(required=False, max_len=64),
                       age=Int(required=False, min=0, max=200),
                       email=Str(required=False, max_len=255),
                       address=Str(required=False, max_len=255),
                       remark=Str(required=False, max_len=255),
                       avatar=Str(required=False, max_len=255))
assert set(_PROFILE_FIELDS) == set(EDITABLE)


@ops.op("profile_set", **_PROFILE_FIELDS)
async def profile_set(ctx, **fields):
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise ImError("bad_request", f"give at least one of: {', '.join(EDITABLE)}")
    if "email" in changes and changes["email"] and "@" not in changes["email"]:
        raise ImError("bad_request", "field 'email' is not an email address")
    await ctx.server.store.accounts.update_profile(ctx.user.user_id, changes)
    return {"updated": sorted(changes)}


@ops.op("user_search", query=Str(max_len=64), limit=Int(required=False, default=20, min=1, max=100))
async def user_search(ctx, query, limit):
    query = query.strip()
    if not query:
        raise ImError("bad_request", "field 'query' is empty")
    users = await ctx.server.store.accounts.search(query, limit)
    for u in users:
        u["user_id"] = u.pop("id")
    return {"users": users}


@ops.op("sessions")
async def sessions(ctx):
    user = ctx.user
    rows = await ctx.server.store.accounts.sessions(user.user_id)
    online = {u.session_id for u in ctx.server.notifier.sessions(user.user_id)}
    for row in rows:
        row["current"] = row["session"] == user.session_id
        row["online"] = row["session"] in online
    return {"sessions": rows}


@ops.op("session_revoke", session=Int())
async def session_revoke(ctx, session):
    user = ctx.user
    if session == user.session_id:
        raise ImError("bad_request", "use logout to end this session")
    if not await ctx.server.store.accounts.delete_session(user.user_id, session):
        raise ImError("not_found", "no such session")
    ctx.server.notifier.disconnect_session(user.user_id, session,
                                           {"op": "session_revoked", "session": session})
    return {}
