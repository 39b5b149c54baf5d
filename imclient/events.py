"""Events a client program subscribes to, and the progress record transfers report.

``Emitter.on(name, fn)`` calls ``fn(event)`` for every event of that name (``"*"``: every event,
as ``fn(name, event)``). ``ProgressMeter`` turns "bytes done so far" into ``ProgressEvent``
records with a rate and an ETA, timed by an injected ``IReactorTime``.
"""
from dataclasses import dataclass

from twisted.logger import Logger


class Emitter:
    """Named events to subscribers; a failing subscriber is logged and does not stop the others."""

    _log = Logger()

    def __init__(self):
        self._subscribers = {}

    def on(self, name, fn):
        """Subscribe ``fn`` to ``name``; returns a function that unsubscribes it."""
        self._subscribers.setdefault(name, []).append(fn)
        return lambda: self._subscribers[name].remove(fn)

    def emit(self, name, event):
        for fn in list(self._subscribers.get(name, ())):
            self._call(name, fn, event)
        for fn in list(self._subscribers.get("*", ())):
            self._call(name, fn, name, event)

    def _call(self, name, fn, *args):
        try:
            fn(*args)
        except Exception:
            self._log.failure("subscriber to {name} failed", name=name)


@dataclass(frozen=True)
class ProgressEvent:
    """Where one transfer stands: emitted as the ``progress`` event.

    ``direction`` is ``"upload"`` or ``"download"``; ``rate`` is bytes per second over the recent
    window; ``eta`` is seconds to go (None while the rate is unknown); ``done`` is true once
    ``bytes_done == total``."""

    transfer: int
    direction: str
    name: str
    bytes_done: int
    total: int
    rate: float
    eta: float | None

    @property
    def done(self):
        return self.bytes_done >= self.total

    @property
    def fraction(self):
        return 1.0 if self.total == 0 else self.bytes_done / self.total


class ProgressMeter:
    """Feeds ``ProgressEvent`` records to ``sink`` as a transfer advances.

    The transfer engine calls ``update(bytes_done)`` whenever it likes; events are emitted at most
    every ``interval`` seconds (and always for the last byte). The rate is a moving average over
    the updates of the last ``window`` seconds."""

    def __init__(self, clock, sink, transfer, direction, name, total, start=0, interval=0.25,
                 window=5.0):
        self.clock, self.sink = clock, sink
        self.transfer, self.direction, self.name, self.total = transfer, direction, name, total
        self.interval, self.window = interval, window
        self._samples = [(clock.seconds(), start)]
        self._last_emit = None
        self.last = None

    def update(self, bytes_done):
        now = self.clock.seconds()
        self._samples.append((now, bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.pop(0)
        final = bytes_done >= self.total
        if not final and self._last_emit is not None and now - self._last_emit < self.interval:
            return None
        self._last_emit = now
        self.last = self._event(now, bytes_done)
        self.sink(self.last)
        return self.last

    def _event(self, now, bytes_done):
        t0, b0 = self._samples[0]
        rate = (bytes_done - b0) / (now - t0) if now > t0 else 0.0
        remaining = max(self.total - bytes_done, 0)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        return ProgressEvent(self.transfer, self.direction, self.name, bytes_done, self.total,
                             rate, eta)


def format_progress(event, width=24):
    """One line for a terminal: ``name  [#####.....]  42%  1.2 MiB/3.0 MiB  800 KiB/s  ETA 3s``."""
    filled = int(event.fraction * width)
    eta = "--" if event.eta is None else f"{event.eta:.0f}s"
    return (f"{event.name}  [{'#' * filled}{'.' * (width - filled)}] {event.fraction:4.0%}  "
            f"{human_bytes(event.bytes_done)}/{human_bytes(event.total)}  "
            f"{human_bytes(event.rate)}/s  ETA {eta}")


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
