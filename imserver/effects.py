"""What a change announces, as plain data: handlers return effects, ``Announcer`` carries them out.

A handler never writes to a connection. It returns its reply and a list of effects (wrapped in a
``Reply``), or gives them to ``server.announce`` when it is not answering a request (a presence
broadcast, an upload finishing). ``imserver.announce.Announcer`` is the one place that turns
effects into pushes, through the ``INotifier`` (other users' devices, possibly in other
processes) or the local connections (the acting connection, topic subscriptions).
"""
from dataclasses import dataclass

# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, which
# costs a send (made tens of thousands of times a second) about a microsecond. Treat them as
# values all the same.


@dataclass(slots=True)
class Entries:
    """``users`` have a new entry in their streams at ``push["pos"]``; ``push`` is the wire push
    (``{"op": type, "pos": ...}``), encoded once for all of them."""
    users: tuple
    push: dict


@dataclass(slots=True)
class Ephemeral:
    """Deliver ``payload`` to the devices of ``users`` now; it is not stored (presence, typing)."""
    users: tuple
    payload: dict


@dataclass(slots=True)
class Direct:
    """``payload`` to the connection the effects are announced for (the one that made the
    request or started the upload); if that connection has gone, to the devices of
    ``fallback_user`` instead (None: to nobody)."""
    payload: dict
    fallback_user: int | None = None


@dataclass(slots=True)
class Publish:
    """``payload`` to every connection subscribed to ``topic`` (the chat square)."""
    topic: str
    payload: dict


@dataclass(slots=True)
class Subscribe:
    """The acting connection hears ``topic`` from now on, until it unsubscribes or logs out."""
    topic: str


@dataclass(slots=True)
class Unsubscribe:
    topic: str


@dataclass(slots=True)
class EndSession:
    """Tell the connections of one login session ``payload``, then close them (revoked)."""
    user_id: int
    session_id: int
    payload: dict


@dataclass(slots=True)
class Reply:
    """A handler's result with its effects: ``fields`` go into the reply, ``effects`` are
    announced first (excluding the acting connection, which learns from the reply)."""
    fields: dict
    effects: list


def as_push(event):
    """A stored stream event (``{"type": ..., "pos": ...}``) as its push (``{"op": ...}``)."""
    push = {"op": event["type"]}
    push.update(event)
    del push["type"]
    return push


def entries(pairs):
    """``[Entries]`` for committed ``[(user_id or [user_ids], event)]`` from a store function."""
    out = []
    for users, event in pairs or ():
        out.append(Entries((users,) if isinstance(users, int) else tuple(users), as_push(event)))
    return out


def own_pos(effects, user_id):
    """The highest stream position among ``effects`` that lands in ``user_id``'s stream, or None.

    Replies of stream-writing ops carry it as ``pos``: the acting connection gets no push of
    its own writes, so ``pos`` tells its client to ``sync`` past it."""
    best = None
    for effect in effects:
        if type(effect) is Entries and user_id in effect.users:
            pos = effect.push["pos"]
            if best is None or pos > best:
                best = pos
    return best


def reply_with_pos(fields, effects, user_id):
    """``Reply(fields + {"pos"} when the effects wrote to the user's stream, effects)``."""
    pos = own_pos(effects, user_id)
    if pos is not None:
        fields = dict(fields, pos=pos)
    return Reply(fields, effects)
