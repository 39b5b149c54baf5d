"""Stream positions on a real database of each dialect: ``Positions`` inside a transaction."""
import pytest_twisted

from imserver.store.commit import Positions
from imserver.store.stream import head


def _use(txn, steps):
    """Run ``steps`` ("take" or an int to reserve) on one Positions; what each returned, and
    how often the lock callback ran."""
    locked = []
    positions = Positions(txn, on_locked=lambda: locked.append(True))
    got = [positions.take() if step == "take" else positions.reserve(step) for step in steps]
    positions.save()
    return got, len(locked)


@pytest_twisted.ensureDeferred
async def test_reserve_takes_consecutive_positions_and_the_counter_moves_past_them(store):
    db = store.db
    start = await db.run("head", head)
    got, locked = await db.run("reserve", _use, [3, "take", 2])
    assert got == [start + 1, start + 4, start + 5]
    assert locked == 1
    assert await db.run("head", head) == start + 6
    # Taking first and reserving after counts on from what was taken.
    got, locked = await db.run("take", _use, ["take", 4, "take"])
    assert got == [start + 7, start + 8, start + 12]
    assert locked == 1
    assert await db.run("head", head) == start + 12


@pytest_twisted.ensureDeferred
async def test_a_rolled_back_reservation_gives_its_positions_out_again(store):
    db = store.db
    start = await db.run("head", head)

    def reserve_and_fail(txn):
        Positions(txn).reserve(5)
        raise ValueError("the batch failed")
    try:
        await db.run("fail", reserve_and_fail)
    except ValueError:
        pass
    else:
        raise AssertionError("the transaction should have failed")
    assert await db.run("head", head) == start
    got, _ = await db.run("reserve", _use, [2])
    assert got == [start + 1]
