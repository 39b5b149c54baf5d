"""Token buckets per key on an injected clock: refuse work that comes too fast, or pace it.

``take`` is for requests (spend or be told when to retry); ``delay`` is for streams of bytes
(spend, going into debt if need be, and wait the debt off before the work proceeds). A bucket
that has filled up again holds nothing a new one would not, so it is forgotten.
"""
import math

from imserver.errors import ImError

#: Buckets kept before the first sweep for full ones; later sweeps wait for twice as many as
#: the last one kept, so sweeping costs O(1) a call however many keys are busy.
SWEEP_AT = 10_000


class RateLimiter:
    """Per-key token buckets: ``rate`` tokens a second, holding at most ``burst``.

    ``clock`` is an ``IReactorTime``; ``message`` is the text of the ``rate_limited`` error
    that ``take`` raises (for example "you are posting too fast"). Full buckets are swept
    once more than ``sweep_at`` are held.
    """

    def __init__(self, clock, rate, burst, message="too many requests; slow down",
                 sweep_at=SWEEP_AT):
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.message = message
        self._buckets = {}  # key -> (tokens, when); tokens below zero are a debt
        self._min_sweep = self._sweep_at = sweep_at

    def tokens(self, key):
        """The tokens ``key`` holds now (negative while it is in debt)."""
        return self._level(key, self.clock.seconds())

    def _level(self, key, now):
        tokens, then = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def take(self, key, n=1):
        """Spend ``n`` of ``key``'s tokens, or raise ``rate_limited`` with ``retry_after``
        (seconds, rounded up to the millisecond) and spend nothing. ``n`` may not pass the
        burst: such a request could never be granted (pace it with ``delay`` instead)."""
        if n > self.burst:
            raise ValueError(f"take({n}) from buckets holding at most {self.burst}")
        now = self.clock.seconds()
        tokens = self._level(key, now)
        if tokens < n:
            wait = math.ceil((n - tokens) / self.rate * 1000) / 1000
            raise ImError("rate_limited", self.message, retry_after=wait)
        self._spend(key, tokens - n, now)

    def delay(self, key, n):
        """Spend ``n`` tokens, into debt if there are not enough, and return the seconds to wait
        before the work they pay for may proceed (0 when the bucket covered it)."""
        now = self.clock.seconds()
        tokens = self._level(key, now) - n
        self._spend(key, tokens, now)
        return -tokens / self.rate if tokens < 0 else 0.0

    def _spend(self, key, tokens, now):
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._sweep_at:
            self._forget_full(now)

    def _forget_full(self, now):
        self._buckets = {k: v for k, v in self._buckets.items()
                         if v[0] + (now - v[1]) * self.rate < self.burst}
        self._sweep_at = max(self._min_sweep, 2 * len(self._buckets))

    def __len__(self):
        """How many buckets are held (full ones may linger until the next sweep)."""
        return len(self._buckets)
