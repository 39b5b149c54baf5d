"""Account ops: register, login, resume, logout, password, profile, search and sessions."""
import inspect
import re

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.logger import Logger

from imserver import account_rules
from imserver.auth import IUser, Mind, SessionToken
from imserver.dispatch import Int, Str
from imserver.domain import Domain
from imserver.effects import EndSession, Reply
from imserver.errors import ImError
from imserver.store import accounts as store
from imserver.store.accounts import EDITABLE

domain = Domain("accounts")
_log = Logger()
PASSWORD = dict(max_len=1024)


@domain.op("register", auth=False, username=Str(max_len=64), password=Str(**PASSWORD),
           nickname=Str(required=False, max_len=64), phone=Str(required=False, max_len=32))
async def register(ctx, username, password, nickname, phone):
    username = account_rules.username(username)
    account_rules.check_password(password)
    if phone is not None and not re.fullmatch(r"\+?[0-9]{5,20}", phone):
        raise ImError("bad_request", "phone must be 5-20 digits, optionally after '+'")
    server = ctx.server
    hashed = await server.hasher.hash(password)
    user_id = await server.run("create_user", store.create_user, username, phone, hashed,
                                nickname or username, server.now_ms())
    return {"user_id": user_id}


def _throttle_keys(ctx, username):
    return [("user", username.strip().lower()), ("addr", ctx.peer_host)]


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
    if not ctx.connected:  # the client left while we checked: undo the registration
        logout()
        raise ImError("bad_request", "connection closed during login")
    ctx.log_in(user, logout)
    for hook in server.login_hooks:
        _run_hook(ctx, hook, user)
    return user


def _run_hook(ctx, hook, user):
    """Run one login hook; what it returns is announced for this connection once it is done
    (after the login reply, since every hook waits for the database at least once), if the
    connection is still that user's session. A failing hook is logged; login has succeeded."""
    d = defer.maybeDeferred(_call, hook, ctx.server, user, ctx.peer, user.device)
    d.addCallback(lambda effects: effects and ctx.user is user and ctx.announce(effects))
    d.addErrback(lambda f: _log.failure("login hook {hook} failed", f, hook=hook.__qualname__))


def _call(fn, *args):
    """``fn(*args)``, its coroutine (if it is an ``async def``) as a Deferred."""
    result = fn(*args)
    return defer.ensureDeferred(result) if inspect.isawaitable(result) else result


@domain.op("login", auth=False, username=Str(max_len=64), password=Str(**PASSWORD),
           device=Str(required=False, max_len=64))
async def login(ctx, username, password, device):
    user = await _login(ctx, UsernamePassword(username.strip().lower(), password),
                        _throttle_keys(ctx, username), Mind(ctx.conn, device))
    return {"user_id": user.user_id, "token": user.token, "session": user.session_id}


@domain.op("resume", auth=False, token=Str(max_len=200))
async def resume(ctx, token):
    keys = [("addr", ctx.peer_host)]
    user = await _login(ctx, SessionToken(token), keys, Mind(ctx.conn, None))
    return {"user_id": user.user_id, "session": user.session_id, "device": user.device}


@domain.op("logout")
async def logout(ctx):
    user = ctx.user
    ctx.log_out()
    await ctx.server.run("delete_session", store.delete_session, user.user_id, user.session_id)
    return {}


def _revoked(user_id, session_id):
    return EndSession(user_id, session_id, {"op": "session_revoked", "session": session_id})


@domain.op("change_password", old_password=Str(**PASSWORD), new_password=Str(**PASSWORD))
async def change_password(ctx, old_password, new_password):
    account_rules.check_password(new_password)
    server, user = ctx.server, ctx.user
    stored = await server.read("password_hash", store.password_hash, user.user_id)
    if not await server.hasher.verify(old_password, stored or ""):
        raise ImError("bad_credentials", "the old password is wrong")
    hashed = await server.hasher.hash(new_password)
    ended = await server.run("set_password", store.set_password, user.user_id, hashed,
                              user.session_id)
    return Reply({"sessions_ended": len(ended)}, [_revoked(user.user_id, s) for s in ended])


@domain.op("profile_get", user=Int(required=False))
async def profile_get(ctx, user):
    me = ctx.user.user_id
    profile = await ctx.server.read("profile", store.profile, user if user is not None else me)
    if profile is None:
        raise ImError("not_found", "no such user")
    if profile["id"] != me:
        profile = {k: profile[k] for k in store.PUBLIC_FIELDS}
    profile["user_id"] = profile.pop("id")
    return {"profile": profile}


_PROFILE_FIELDS = dict(nickname=Str(required=False, max_len=64),
                       age=Int(required=False, min=0, max=200),
                       email=Str(required=False, max_len=255),
                       address=Str(required=False, max_len=255),
                       remark=Str(required=False, max_len=255),
                       avatar=Str(required=False, max_len=255))
assert set(_PROFILE_FIELDS) == set(EDITABLE)


@domain.op("profile_set", **_PROFILE_FIELDS)
async def profile_set(ctx, **fields):
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise ImError("bad_request", f"give at least one of: {', '.join(EDITABLE)}")
    if "email" in changes and changes["email"] and "@" not in changes["email"]:
        raise ImError("bad_request", "field 'email' is not an email address")
    await ctx.server.run("update_profile", store.update_profile, ctx.user.user_id, changes)
    return {"updated": sorted(changes)}


@domain.op("user_search", query=Str(max_len=64), limit=Int(required=False, default=20, min=1, max=100))
async def user_search(ctx, query, limit):
    query = query.strip()
    if not query:
        raise ImError("bad_request", "field 'query' is empty")
    users = await ctx.server.read("user_search", store.search, query, limit)
    for u in users:
        u["user_id"] = u.pop("id")
    return {"users": users}


@domain.op("sessions")
async def sessions(ctx):
    user = ctx.user
    rows = await ctx.server.read("sessions", store.sessions, user.user_id)
    online = await ctx.server.presence.online_sessions(user.user_id)
    for row in rows:
        row["current"] = row["session"] == user.session_id
        row["online"] = row["session"] in online
    return {"sessions": rows}


@domain.op("session_revoke", session=Int())
async def session_revoke(ctx, session):
    user = ctx.user
    if session == user.session_id:
        raise ImError("bad_request", "use logout to end this session")
    if not await ctx.server.run("delete_session", store.delete_session, user.user_id, session):
        raise ImError("not_found", "no such session")
    return Reply({}, [_revoked(user.user_id, session)])
