"""One sender's stream as one receiver sees it: reassembly, duplicates, order and gaps.

Plain data, no timers: the core feeds fragments in and takes whole messages out in sequence
order, and asks for the cumulative ack and missing list to send back.
"""
from imclient.lan.codec import ALL_FRAGMENTS

#: How far past the next expected seq we buffer; anything further is dropped (and re-sent later).
WINDOW = 1024

#: What ``add`` made of a fragment; all but ADDED are also the names of drop counters.
ADDED, DUPLICATE = "added", "duplicate"
OUT_OF_WINDOW, INCONSISTENT = "out_of_window", "inconsistent"


class _Partial:
    __slots__ = ("count", "parts")

    def __init__(self, count):
        self.count = count
        self.parts = {}

    def complete(self):
        return len(self.parts) == self.count

    def missing(self):
        return [i for i in range(self.count) if i not in self.parts]

    def body(self):
        return b"".join(self.parts[i] for i in range(self.count))


class InboundStream:
    """Messages ``expected``, ``expected + 1``, ... of one sender, put back together."""

    def __init__(self, expected):
        self.expected = expected
        self.top = expected - 1
        self._pending = {}

    def add(self, seq, index, count, body):
        """Store one fragment; return ``(status, [(seq, message bytes), ...] now deliverable)``."""
        if seq < self.expected:
            return DUPLICATE, []
        if seq - self.expected >= WINDOW:
            return OUT_OF_WINDOW, []
        partial = self._pending.setdefault(seq, _Partial(count))
        if partial.count != count:
            return INCONSISTENT, []
        if index in partial.parts:
            return DUPLICATE, []
        partial.parts[index] = body
        self.top = max(self.top, seq)
        return ADDED, self._take_ready()

    def skip_to(self, low_water):
        """The sender no longer holds anything below ``low_water``: stop waiting for it.

        Returns the whole messages this makes deliverable (in order, past the gaps), and how
        many seqs were given up.
        """
        if low_water <= self.expected:
            return [], 0
        below = sorted(s for s in self._pending if s < low_water)
        parts = [(s, self._pending.pop(s)) for s in below]
        ready = [(s, p.body()) for s, p in parts if p.complete()]
        skipped = low_water - self.expected - len(ready)
        self.expected = low_water
        self.top = max(self.top, low_water - 1)
        return ready + self._take_ready(), skipped

    def ack(self, max_missing):
        """``(cumulative, top, missing)`` for an ack entry, listing at most ``max_missing`` gaps.

        Every seq in ``(cumulative, top]`` not named in ``missing`` is whole here; if the list
        had to be cut, ``top`` is lowered to the last seq it names.
        """
        missing = []
        top = self.top
        for seq in range(self.expected, self.top + 1):
            if len(missing) >= max_missing:
                top = missing[-1][0]
                break
            partial = self._pending.get(seq)
            if partial is None:
                missing.append((seq, ALL_FRAGMENTS))
            elif not partial.complete():
                room = max_missing - len(missing)
                missing.extend((seq, i) for i in partial.missing()[:room])
        return self.expected - 1, top, tuple(missing)

    def has_gaps(self):
        return self.top >= self.expected

    def _is_complete(self, seq):
        partial = self._pending.get(seq)
        return partial is not None and partial.complete()

    def _take_ready(self):
        ready = []
        while self._is_complete(self.expected):
            ready.append((self.expected, self._pending.pop(self.expected).body()))
            self.expected += 1
        return ready
