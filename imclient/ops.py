"""The server's ops as ``Client`` methods: thin wrappers named after the wire ops, plus the few
that also keep the local store (``friends``, ``history``, ``groups``) or resolve names.

Each thin wrapper takes the op's fields, positionally in the order listed in ``WRAPPED`` or by
name, and returns ``request(op, **fields)``: a Deferred firing with the reply dict. Fields left
out (None) are not sent; anything else goes through ``client.request(op, **fields)``.
"""
from twisted.internet import defer

#: op -> its fields, in positional order (docs/protocol.rst).
WRAPPED = {
    "ping": (),
    "logout": (),
    "change_password": ("old_password", "new_password"),
    "profile_get": ("user",),
    "profile_set": ("nickname", "age", "email", "address", "remark", "avatar"),
    "user_search": ("query", "limit"),
    "sessions": (),
    "session_revoke": ("session",),
    "friend_request": ("user", "greeting"),
    "friend_accept": ("user",),
    "friend_reject": ("user",),
    "friend_remove": ("user",),
    "friend_alias": ("user", "alias"),
    "friend_requests": (),
    "block": ("user",),
    "unblock": ("user",),
    "blocked": (),
    "presence_set": ("status", "text"),
    "sync": ("since", "limit"),
    "mark_delivered": ("peer", "msg_id"),
    "mark_read": ("peer", "msg_id"),
    "unread": (),
    # Files (the transfer engine's ops; bytes move in binary frames, see imclient.transfer).
    "upload_begin": ("name", "size", "sha256", "mime"),
    "upload_proof": ("challenge", "proof"),
    "upload_status": ("upload",),
    "upload_cancel": ("upload",),
    "download": ("file", "offset", "length"),
    "download_cancel": ("download",),
    "file_info": ("file",),
    "files_list": ("limit",),
    "file_delete": ("file",),
}


def _wrapper(op, names):
    def call(self, *args, **fields):
        if len(args) > len(names):
            raise TypeError(f"{op}() takes at most {len(names)} positional fields")
        fields.update(zip(names, args))
        return self.request(op, **fields)
    call.__name__ = call.__qualname__ = op
    call.__doc__ = (f"The ``{op}`` op ({', '.join(names) or 'no fields'}); a Deferred firing "
                    "with the reply.")
    return call


class OpsMixin:
    """Needs ``request``, ``store``, ``me`` and ``online`` from the class it is mixed into."""

    def friends(self):
        """The friend list; from the server when online (and stored), else the local copy."""
        if not self.online:
            return defer.succeed(self.store.friends())
        return self.request("friends").addCallback(self._store_friends)

    def _store_friends(self, reply):
        self.store.set_friends(reply["friends"])
        for f in reply["friends"]:  # presence pushes keep it current from here on
            self.presence[f["user_id"]] = {k: f.get(k) for k in ("online", "status", "text")}
        return reply["friends"]

    def groups(self):
        """The ``groups`` op; the list is kept locally."""
        def keep(reply):
            self.store.set_groups(reply.get("groups", []))
            return reply.get("groups", [])
        return self.request("groups").addCallback(keep)

    def history(self, peer, before=None, limit=50):
        """Messages with ``peer`` older than ``before`` (a msg_id), newest first: read from the
        local store, and fetched with the ``history`` op only for what it is missing.

        Fires with ``{"messages", "more", "fetched"}`` (``fetched``: how many came from the
        server). Offline, it answers from the local store alone."""
        return defer.ensureDeferred(self._history(peer, before, limit))

    async def _history(self, peer, before, limit):
        local = self.store.history(peer, before, limit)
        floor = self.store.floor(peer)
        if len(local) >= limit or floor == 0 or not self.online:
            return {"messages": local, "more": len(local) >= limit or floor > 0, "fetched": 0}
        fetch_before = local[-1]["msg_id"] if local else before
        reply = await self.request("history", peer=peer, before=fetch_before, limit=limit - len(local))
        fetched = reply["messages"]
        with self.store.batch():
            for message in fetched:
                self.store.add_message(message, self.me)
            if fetch_before is None or fetch_before > floor:  # contiguous with what we hold
                new_floor = fetched[-1]["msg_id"] - 1 if reply["more"] and fetched else 0
                self.store.set_floor(peer, min(floor, new_floor))
        return {"messages": self.store.history(peer, before, limit), "more": reply["more"],
                "fetched": len(fetched)}

    def resolve(self, who):
        """A user id for ``who``: an id, or a username (known locally, else by ``user_search``)."""
        return defer.ensureDeferred(self._resolve(who))

    async def _resolve(self, who):
        if isinstance(who, int) or str(who).isdigit():
            return int(who)
        user_id = self.store.user_by_name(who)
        if user_id is not None:
            return user_id
        if self.online:
            for user in (await self.request("user_search", query=who, limit=100))["users"]:
                self.store.remember_user(user["user_id"], user["username"], user.get("nickname"))
                if user["username"] == who.lower():
                    return user["user_id"]
        raise LookupError(f"no user called {who!r}")


for _op, _names in WRAPPED.items():
    setattr(OpsMixin, _op, _wrapper(_op, _names))
