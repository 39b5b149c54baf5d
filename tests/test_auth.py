"""Password hashing, the login throttle and the realm, without a network."""
import pytest_twisted
from twisted.internet import reactor, task

from imserver.auth import SCRYPT_N, LoginThrottle, PasswordHasher
from imserver.errors import ImError


@pytest_twisted.ensureDeferred
async def test_scrypt_hash_verifies_and_is_salted():
    hasher = PasswordHasher(reactor)  # the real, memory-hard parameters
    one = await hasher.hash("correct horse")
    two = await hasher.hash("correct horse")
    assert one.startswith(f"scrypt${SCRYPT_N}$8$1$") and one != two
    assert await hasher.verify("correct horse", one)
    assert not await hasher.verify("correct horsf", one)
    assert not await hasher.verify("x", "md5$garbage")
    assert "correct horse" not in one


@pytest_twisted.ensureDeferred
async def test_hash_runs_off_the_reactor_thread():
    import threading

    seen = []
    hasher = PasswordHasher(reactor, n=2 ** 4)
    original = hasher._hash_sync

    def spy(*args):
        seen.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    hasher._hash_sync = spy
    await hasher.hash("pw")
    assert seen == [False]


def test_throttle_slows_then_refuses_then_forgets():
    clock = task.Clock()
    t = LoginThrottle(clock, window=100, slow_after=3, max_delay=8, refuse_after={"user": 5, "addr": 50})
    keys = [("user", "a"), ("addr", "1.2.3.4")]
    assert [t.failed(keys) for _ in range(4)] == [0, 0, 0, 0.5]
    t.check(keys)
    assert t.failed(keys) == 1.0
    try:
        t.check(keys)
        raise AssertionError("not refused")
    except ImError as e:
        assert e.code == "rate_limited"
    clock.advance(101)
    t.check(keys)


def test_success_clears_account_but_not_address():
    clock = task.Clock()
    t = LoginThrottle(clock)
    keys = [("user", "a"), ("addr", "1.2.3.4")]
    for _ in range(3):
        t.failed(keys)
    t.succeeded(keys)
    assert t.failed([("user", "a")]) == 0
    assert len(t._recent(("addr", "1.2.3.4"))) == 3
