"""The server's ops as ``Client`` methods: thin wrappers named after the wire ops, plus the few
that also keep the local store (``friends``, ``history``, ``groups``, ``group_history``), go
through the outbox (``group_send``; ``send`` is the client's) or resolve names.

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
    # Groups (docs/protocol.rst, "Groups"); group_send and group_history are methods below, and
    # ``groups`` keeps the list in the local store.
    "group_create": ("name", "members", "join_policy"),
    "group_info": ("group",),
    "group_members": ("group",),
    "group_invite": ("group", "user"),
    "group_join": ("group",),
    "group_join_request": ("group", "greeting"),
    "group_requests": ("group",),
    "group_approve": ("group", "user"),
    "group_deny": ("group", "user"),
    "group_leave": ("group",),
    "group_kick": ("group", "user"),
    "group_set_role": ("group", "user", "role"),
    "group_transfer": ("group", "user"),
    "group_update": ("group", "name", "announcement", "join_policy"),
    "group_disband": ("group",),
    "group_mark_read": ("group", "msg_id"),
    "group_files": ("group", "before", "limit"),
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
    """Needs ``request``, ``store`` (a ``StoreWorker``), ``outbox``, ``me``, ``presence`` and
    ``online`` from the class it is mixed into."""

    def friends(self):
        """The friend list; from the server when online (and stored), else the local copy."""
        if not self.online:
            return self.store.friends()
        return self.request("friends").addCallback(self._store_friends)

    def _store_friends(self, reply):
        for f in reply["friends"]:  # presence pushes keep it current from here on
            self.presence[f["user_id"]] = {k: f.get(k) for k in ("online", "status", "text")}
        return self.store.set_friends(reply["friends"]).addCallback(lambda _: reply["friends"])

    def groups(self):
        """Your groups (the ``groups`` op's rows); stored, and from the store when offline."""
        if not self.online:
            return self.store.groups()

        def keep(reply):
            groups = reply.get("groups", [])
            return self.store.set_groups(groups).addCallback(lambda _: groups)
        return self.request("groups").addCallback(keep)

    def group_send(self, group, body, client_id=None, file=None):
        """Send to a group through the outbox, like ``send`` (same states, same Deferred)."""
        return self.outbox.add(group=group, body=body, client_id=client_id,
                                extra={"file": file} if file else None)

    def group_history(self, group, before=None, limit=50):
        """Messages of a group older than ``before``, newest first: from the server when online
        (and stored), else from the local store. Fires with ``{"messages", "more"}``."""
        return defer.ensureDeferred(self._group_history(group, before, limit))

    async def _group_history(self, group, before, limit):
        if not self.online:
            local = await self.store.group_history(group, before, limit)
            return {"messages": local, "more": len(local) >= limit}
        reply = await self.request("group_history", group=group, before=before, limit=limit)
        await self.store.run(_store_group_rows, reply["messages"])
        return {"messages": reply["messages"], "more": reply["more"]}

    def history(self, peer, before=None, limit=50):
        """Messages with ``peer`` older than ``before`` (a msg_id), newest first: read from the
        local store, and fetched with the ``history`` op only for what it is missing.

        Fires with ``{"messages", "more", "fetched"}`` (``fetched``: how many came from the
        server). Offline, it answers from the local store alone."""
        return defer.ensureDeferred(self._history(peer, before, limit))

    async def _history(self, peer, before, limit):
        local, floor = await self.store.run(_local_history, peer, before, limit)
        if len(local) >= limit or floor == 0 or not self.online:
            return {"messages": local, "more": len(local) >= limit or floor > 0, "fetched": 0}
        fetch_before = local[-1]["msg_id"] if local else before
        reply = await self.request("history", peer=peer, before=fetch_before, limit=limit - len(local))
        fetched = reply["messages"]
        page = await self.store.run(_store_history, peer, before, limit, fetched, fetch_before,
                                    floor, reply["more"], self.me)
        return {"messages": page, "more": reply["more"], "fetched": len(fetched)}

    def resolve(self, who):
        """A user id for ``who``: an id, or a username (known locally, else by ``user_search``)."""
        return defer.ensureDeferred(self._resolve(who))

    async def _resolve(self, who):
        if isinstance(who, int) or str(who).isdigit():
            return int(who)
        user_id = await self.store.user_by_name(who)
        if user_id is not None:
            return user_id
        if self.online:
            users = (await self.request("user_search", query=who, limit=100))["users"]
            await self.store.run(_remember_users, users)
            for user in users:
                if user["username"] == who.lower():
                    return user["user_id"]
        raise LookupError(f"no user called {who!r}")


# Transaction functions (run on the store's thread by StoreWorker.run).
def _local_history(store, peer, before, limit):
    return store.history(peer, before, limit), store.floor(peer)


def _store_history(store, peer, before, limit, fetched, fetch_before, floor, more, me):
    for message in fetched:
        store.add_message(message, me, state="acked" if message["from"] == me else None)
    if fetch_before is None or fetch_before > floor:  # contiguous with what we hold
        new_floor = fetched[-1]["msg_id"] - 1 if more and fetched else 0
        store.set_floor(peer, min(floor, new_floor))
    return store.history(peer, before, limit)


def _store_group_rows(store, rows):
    for row in rows:
        store.add_group_message(row)


def _remember_users(store, users):
    for user in users:
        store.remember_user(user["user_id"], user["username"], user.get("nickname"))


for _op, _names in WRAPPED.items():
    setattr(OpsMixin, _op, _wrapper(_op, _names))
