"""Authentication: scrypt password hashes off the reactor thread, cred checkers, realm, throttle.

The portal is the only way in: a password login and a token ``resume`` each go through a checker
that yields a ``LoginId``; the realm turns that into a ``User`` avatar, registers the connection
(the *mind*) as online, and hands back the logout callable the connection calls when it ends.
"""
import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from twisted.cred import error as cred_error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.portal import IRealm
from twisted.internet import defer, threads
from zope.interface import Attribute, Interface, implementer

from imserver.clock import now_ms
from imserver.errors import ImError
from imserver.store import accounts

# scrypt with N=2^14, r=8 uses 16 MiB per hash: memory-hard, about 50 ms on this class of machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class PasswordHasher:
    """Hash and verify passwords with scrypt on the reactor's thread pool, never on its thread."""

    def __init__(self, reactor, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, randbytes=os.urandom):
        self.reactor = reactor
        self.n, self.r, self.p = n, r, p
        self.randbytes = randbytes

    def _in_thread(self, fn, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def hash(self, password):
        return self._in_thread(self._hash_sync, password, self.randbytes(16), self.n, self.r, self.p)

    @staticmethod
    def _hash_sync(password, salt, n, r, p):
        key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             maxmem=256 * 1024 * 1024, dklen=32)
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return f"scrypt${n}${r}${p}${b64(salt)}${b64(key)}"

    def verify(self, password, stored):
        return self._in_thread(self._verify_sync, password, stored)

    @classmethod
    def _verify_sync(cls, password, stored):
        try:
            scheme, n, r, p, salt, key = stored.split("$")
            if scheme != "scrypt":
                return False
            again = cls._hash_sync(password, base64.b64decode(salt), int(n), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(again.encode(), stored.encode())


def token_hash(token):
    """Tokens are stored only as their SHA-256, so a database leak does not leak sessions."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ISessionToken(ICredentials):
    token = Attribute("The session token a previous login returned.")


@implementer(ISessionToken)
@dataclass
class SessionToken:
    token: str


@dataclass(frozen=True)
class LoginId:
    """What a checker proves: this user, and (for a resumed token) this existing session."""
    user_id: int
    username: str
    session_id: int | None = None
    device: str | None = None


class IUser(Interface):
    user_id = Attribute("The user's id.")
    session_id = Attribute("The id of this login session.")


@implementer(IUser)
@dataclass
class User:
    """The avatar: one logged-in session of one user on one connection."""
    user_id: int
    username: str
    session_id: int
    device: str
    token: str | None = None  # only set on a fresh password login, to be returned once


@dataclass
class Mind:
    """What the connection tells the realm at login: itself, and the device it calls itself."""
    connection: object
    device: str | None


@implementer(ICredentialsChecker)
class PasswordChecker:
    credentialInterfaces = (IUsernamePassword,)

    # A real hash to verify against when the username is unknown, so timing does not tell.
    _DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

    def __init__(self, db, hasher):
        self.db = db
        self.hasher = hasher

    def requestAvatarId(self, credentials):
        return defer.ensureDeferred(self._check(credentials.username, credentials.password))

    async def _check(self, username, password):
        row = await self.db.run("credentials", accounts.credentials, username)
        ok = await self.hasher.verify(password, row[1] if row else self._DUMMY)
        if not (row and ok):
            raise cred_error.UnauthorizedLogin()
        return LoginId(row[0], username)


@implementer(ICredentialsChecker)
class TokenChecker:
    credentialInterfaces = (ISessionToken,)

    def __init__(self, db, clock):
        self.db = db
        self.clock = clock

    def requestAvatarId(self, credentials):
        return defer.ensureDeferred(self._check(credentials.token))

    async def _check(self, token):
        row = await self.db.run("session_by_token", accounts.session_by_token, token_hash(token),
                                now_ms(self.clock))
        if row is None:
            raise cred_error.UnauthorizedLogin()
        session_id, user_id, device, username = row
        return LoginId(user_id, username, session_id, device)


@implementer(IRealm)
class Realm:
    """Turns a proven LoginId into a User, creating a session for password logins, and attaches
    the connection (the mind) to this process's ``Connections`` as that user's."""

    def __init__(self, db, connections, presence, clock, max_connections):
        self.db = db
        self.connections = connections
        self.presence = presence
        self.clock = clock
        self.max_connections = max_connections

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IUser not in interfaces:
            raise NotImplementedError("Parley's realm only knows IUser")
        return defer.ensureDeferred(self._avatar(avatarId, mind))

    async def _avatar(self, login, mind):
        if await self.presence.device_count(login.user_id) >= self.max_connections:
            raise ImError("too_many_connections",
                          f"at most {self.max_connections} connections per user")
        token = None
        session_id, device = login.session_id, login.device
        if session_id is None:
            token = secrets.token_urlsafe(32)
            device = mind.device or "unnamed"
            session_id = await self.db.run("create_session", accounts.create_session,
                                           login.user_id, token_hash(token), device,
                                           now_ms(self.clock))
        user = User(login.user_id, login.username, session_id, device, token)
        self.connections.attach(user, mind.connection)
        return IUser, user, lambda: self.connections.detach(user, mind.connection)


class LoginThrottle:
    """Counts failed logins per key (account, address): slows them, then refuses for a while."""

    def __init__(self, clock, window=900.0, slow_after=3, max_delay=8.0,
                 refuse_after={"user": 10, "addr": 50}):
        self.clock = clock
        self.window = window
        self.slow_after = slow_after
        self.max_delay = max_delay
        self.refuse_after = refuse_after
        self._failures = {}

    def _recent(self, key):
        cutoff = self.clock.seconds() - self.window
        times = [t for t in self._failures.get(key, ()) if t > cutoff]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def check(self, keys):
        for key in keys:
            if len(self._recent(key)) >= self.refuse_after[key[0]]:
                raise ImError("rate_limited", "too many failed logins; try again later",
                              retry_after=int(self.window))

    def failed(self, keys):
        """Record a failure; return how many seconds to hold the failure reply back."""
        if len(self._failures) > 100_000:
            for key in list(self._failures):
                self._recent(key)
        now = self.clock.seconds()
        worst = 0
        for key in keys:
            times = self._recent(key)
            times.append(now)
            self._failures[key] = times
            worst = max(worst, len(times))
        if worst <= self.slow_after:
            return 0.0
        return min(self.max_delay, 0.5 * 2 ** (worst - self.slow_after - 1))

    def succeeded(self, keys):
        for key in keys:
            if key[0] == "user":
                self._failures.pop(key, None)
