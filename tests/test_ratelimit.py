"""The rate limiter on ``task.Clock``: take (refuse with retry_after), delay (debt), forgetting."""
import pytest
from twisted.internet import task

from imserver.errors import ImError
from imserver.ratelimit import RateLimiter


def limiter(rate=2.0, burst=3, **kw):
    clock = task.Clock()
    return clock, RateLimiter(clock, rate, burst, **kw)


def test_take_refills_at_rate_up_to_burst_and_says_when_to_retry():
    clock, limit = limiter(message="you are posting too fast")
    for _ in range(3):
        limit.take("k")
    with pytest.raises(ImError) as info:
        limit.take("k")
    assert info.value.code == "rate_limited" and info.value.message == "you are posting too fast"
    assert info.value.to_wire()["retry_after"] == pytest.approx(0.5)
    limit.take("other")  # every key has its own bucket
    clock.advance(10)  # refills to the burst, not beyond
    for _ in range(3):
        limit.take("k")
    with pytest.raises(ImError):
        limit.take("k")


def test_take_of_several_tokens_spends_nothing_when_refused():
    clock, limit = limiter(rate=10.0, burst=10)
    limit.take("k", 7)
    with pytest.raises(ImError) as info:
        limit.take("k", 5)
    assert info.value.extra["retry_after"] == pytest.approx(0.2)
    assert limit.tokens("k") == pytest.approx(3)
    clock.advance(0.2)
    limit.take("k", 5)
    assert limit.tokens("k") == pytest.approx(0)


def test_delay_goes_into_debt_and_the_wait_pays_it_off():
    clock, limit = limiter(rate=100.0, burst=50)
    assert limit.delay("k", 50) == 0.0  # the burst covers it
    assert limit.delay("k", 100) == pytest.approx(1.0)  # 100 tokens of debt at 100 a second
    assert limit.tokens("k") == pytest.approx(-100)
    with pytest.raises(ImError) as info:  # a debtor's take waits for the debt and the token
        limit.take("k")
    assert info.value.extra["retry_after"] == pytest.approx(1.01)
    clock.advance(0.5)
    assert limit.delay("k", 10) == pytest.approx(0.6)  # the rest of the debt, and its own
    clock.advance(0.6)
    assert limit.tokens("k") == pytest.approx(0)
    assert limit.delay("k", 0) == 0.0


def test_paced_spending_averages_the_rate():
    clock, limit = limiter(rate=1000.0, burst=100)
    spent = 0
    while clock.seconds() < 10:
        clock.advance(limit.delay("k", 64))
        spent += 64
    # What went in 10 s is the burst plus 10 s of rate, to within one spend.
    assert 1000 * 10 + 100 - 64 <= spent <= 1000 * 10 + 100 + 64


def test_full_buckets_are_forgotten_and_busy_ones_kept():
    clock, limit = limiter(rate=1.0, burst=2, sweep_at=10)
    for key in range(10):
        limit.take(key)
    assert len(limit) == 10
    clock.advance(1)  # every bucket is full again
    limit.take("busy", 2)
    limit.delay("debtor", 5)
    assert len(limit) == 2  # the sweep forgot the ten full ones
    clock.advance(2)  # "busy" refilled; "debtor" still owes
    for key in range(20):
        limit.take(("new", key))
    assert "busy" not in limit._buckets and "debtor" in limit._buckets
    assert limit.tokens("debtor") == pytest.approx(-1)
    assert limit.tokens("busy") == 2  # a forgotten key starts full


def test_sweeps_are_spaced_by_what_they_kept():
    clock, limit = limiter(rate=1.0, burst=1, sweep_at=4)
    for key in range(9):
        limit.take(key)  # none refills: the sweeps keep all of them
    assert len(limit) == 9 and limit._sweep_at == 10


def test_take_of_more_than_the_burst_is_a_bug_not_a_retry():
    _, limit = limiter(burst=3)
    with pytest.raises(ValueError):
        limit.take("k", 4)
    assert limit.tokens("k") == 3


def test_rate_and_burst_must_be_positive():
    with pytest.raises(ValueError):
        RateLimiter(task.Clock(), 0, 1)
    with pytest.raises(ValueError):
        RateLimiter(task.Clock(), 1, 0)
