"""Time as the server stores it: integer milliseconds since the epoch, from an injected clock."""


def now_ms(clock):
    """``clock`` is an ``IReactorTime`` (the reactor, or ``task.Clock`` in tests)."""
    return int(clock.seconds() * 1000)
