"""The policy answers each user's quota and download rate in Deferreds, from Config today."""
import pytest_twisted

from imserver.config import Config
from imserver.policy import Policy


@pytest_twisted.ensureDeferred
async def test_answers_come_from_the_config():
    policy = Policy(Config(user_quota=1234, download_rate=5678))
    assert await policy.quota(1) == 1234 and await policy.download_rate(1) == 5678
    default = Policy(Config())
    assert await default.quota(2) == Config.user_quota and await default.download_rate(2) == 0
