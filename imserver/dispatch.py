"""The op table: each op declares its fields once; one validator and one error mapping serve all.

``OpTable.op(name, auth=..., **fields)`` declares a handler ``fn(ctx, **fields)`` returning a dict,
or a ``Reply`` (the dict and the effects to announce), directly, as a Deferred, or as a
coroutine. ``dispatch`` turns a decoded request into a reply handed to a continuation:
``{"re": id, "ok": true, ...}`` or an error reply; a ``Reply``'s effects are announced (through
``ctx.announce``) just before it. An unexpected exception is logged once and the client sees
only ``internal``.
"""
import inspect
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure

from imserver.effects import Reply
from imserver.errors import ImError, bad_request

_log = Logger()
_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "a list",
               dict: "an object", float: "a number"}


@dataclass
class Field:
    kind: tuple
    required: bool = True
    default: object = None
    max_len: int | None = None
    min: int | None = None
    max: int | None = None
    choices: tuple | None = None

    def check(self, name, value):
        kinds = self.kind
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            want = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise bad_request(f"field {name!r} must be {want}")
        if self.max_len is not None and len(value) > self.max_len:
            raise bad_request(f"field {name!r} is longer than {self.max_len}")
        if self.min is not None and value < self.min:
            raise bad_request(f"field {name!r} must be at least {self.min}")
        if self.max is not None and value > self.max:
            raise bad_request(f"field {name!r} must be at most {self.max}")
        if self.choices is not None and value not in self.choices:
            raise bad_request(f"field {name!r} must be one of {', '.join(map(str, self.choices))}")
        return value


def Str(**kw):
    return Field((str,), **kw)


def Int(**kw):
    kw.setdefault("min", -(2 ** 63))
    kw.setdefault("max", 2 ** 63 - 1)
    return Field((int,), **kw)


def Bool(**kw):
    return Field((bool,), **kw)


def List(**kw):
    return Field((list,), **kw)


def Obj(**kw):
    return Field((dict,), **kw)


@dataclass
class Op:
    name: str
    fn: object
    fields: dict = field(default_factory=dict)
    auth: bool = True
    #: The handler answers through a callable instead of returning: ``fn(ctx, answer, **fields)``
    #: calls ``answer(result_dict)`` or ``answer(exception)`` exactly once, later or at once
    #: (raising before it has answered also answers). For the few ops run tens of thousands of
    #: times a second, whose work finishes in a batch: no Deferred per request.
    answers: bool = False

    def __post_init__(self):
        # (name, required, default, exact type or None, field): an ``int`` or ``str`` value with
        # no other limit is accepted by one type test; anything else goes through Field.check.
        self._plan = tuple((name, spec.required, spec.default, _plain_type(spec), spec)
                           for name, spec in self.fields.items())

    def arguments(self, request):
        args = {}
        get = request.get
        for name, required, default, plain, spec in self._plan:
            value = get(name)
            if value is None:
                if required:
                    raise bad_request(f"missing field {name!r}")
                args[name] = default
            elif type(value) is plain:
                args[name] = value
            else:
                args[name] = spec.check(name, value)
        return args


def _plain_type(spec):
    """``str`` for a string field with no length or choice limit (any string will do), else None."""
    if spec.kind == (str,) and spec.max_len is None and spec.choices is None:
        return str
    return None


class OpTable:
    def __init__(self):
        self.ops = {}

    def op(self, name, /, auth=True, answers=False, **fields):
        def register(fn):
            if name in self.ops:
                raise ValueError(f"op {name!r} registered twice")
            self.ops[name] = Op(name, fn, fields, auth, answers)
            return fn
        return register

    def merge(self, other):
        """Add every op of ``other`` (an OpTable); an op name declared twice is an error."""
        for name, op in other.ops.items():
            if name in self.ops:
                raise ValueError(f"op {name!r} registered twice")
            self.ops[name] = op


def _request_id(request):
    rid = request.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    return rid


def _resolve(table, ctx, request, rid):
    """The op a request names and its checked arguments; ImError if the request is not valid.
    ``rid`` is ``_request_id(request)``: None if the id is missing or of the wrong type."""
    name = request.get("op")
    if not isinstance(name, str):
        raise bad_request("missing field 'op'")
    if rid is None:
        raise bad_request("field 'id' must be a string or an integer")
    op = table.ops.get(name)
    if op is None:
        raise ImError("unknown_op", f"unknown op {name!r}")
    if op.auth and ctx.user is None:
        raise ImError("not_authenticated", f"log in before {name!r}")
    return op, op.arguments(request)


def _ok(ctx, result, rid):
    if type(result) is Reply:
        ctx.announce(result.effects)
        result = result.fields
    reply = {"re": rid, "ok": True}
    if result:
        reply.update(result)
    return reply


def _failed(f, rid, request):
    if f.check(ImError):
        return {"re": rid, "ok": False, "error": f.value.to_wire()}
    _log.failure("op {op!r} failed", f, op=request.get("op"))
    return {"re": rid, "ok": False, "error": {"code": "internal", "message": "internal server error"}}


def dispatch(table, ctx, request, respond):
    """Answer one decoded request: ``respond(reply)`` is called once with the reply dict,
    ``{"re": id, "ok": true, ...}`` or an error reply; at once if the handler returned a dict,
    or when its Deferred (or coroutine) fires, or when an ``answers`` handler answers. Never
    raises for anything a handler does.
    """
    rid = _request_id(request)
    answer = None
    try:
        op, args = _resolve(table, ctx, request, rid)
        if op.answers:
            answer = _Answer(ctx, rid, request, respond)
            op.fn(ctx, answer, **args)
            return
        result = op.fn(ctx, **args)
    except Exception:
        if answer is None:
            respond(_failed(failure.Failure(), rid, request))
        else:
            answer(failure.Failure())
        return
    if not isinstance(result, defer.Deferred):
        if not inspect.isawaitable(result):
            respond(_ok(ctx, result, rid))
            return
        result = defer.ensureDeferred(result)
    result.addBoth(_Answer(ctx, rid, request, respond))


class _Answer:
    """Turns a handler's outcome into its reply: the ``answer`` callable given to an ``answers``
    handler, and the callback of a handler's Deferred. The first call is the reply."""

    __slots__ = ("ctx", "rid", "request", "respond")

    def __init__(self, ctx, rid, request, respond):
        self.ctx, self.rid, self.request, self.respond = ctx, rid, request, respond

    def __call__(self, result):
        respond, self.respond = self.respond, None
        if respond is None:
            return  # answered already (a handler that raised after answering)
        if isinstance(result, BaseException):
            result = failure.Failure(result)
        if isinstance(result, failure.Failure):
            respond(_failed(result, self.rid, self.request))
        else:
            respond(_ok(self.ctx, result, self.rid))

