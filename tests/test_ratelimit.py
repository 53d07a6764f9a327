"""The client-side sliding windows on their own: order, cancellation, slots held until answered, and
admission in batches (a busy event loop must not slow admission below the budget)."""

from __future__ import annotations

import asyncio

from monitor.clock import ManualClock, SystemClock
from monitor.exchange.bitget.endpoints import SPOT_ASSETS
from monitor.exchange.bitget.ratelimit import PACE_WINDOW, IpBudget, pacing
from monitor.exchange.bitget.window import SlidingWindow, release

CLOCK = SystemClock()


async def test_room_that_appears_is_handed_out_in_one_pass() -> None:
    """Handing a lock from waiter to waiter admits one request per turn of the event loop: on a busy loop,
    fewer than the budget allows, while the queue grows. Every waiter that fits goes in the same turn."""
    clock = ManualClock()
    window = SlidingWindow(50, 0.2, clock)
    for _ in range(50):
        await window.take()  # full for the next 0.2 s, all 50 ending at the same moment
    turns = 0
    admitted_at: list[int] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def one() -> None:
        await window.take()
        admitted_at.append(turns)

    ticking = asyncio.create_task(ticker())
    waiting = asyncio.gather(*(one() for _ in range(50)))
    await asyncio.sleep(0.01)
    clock.advance(0.2)  # seen when the window's timer fires
    await waiting
    ticking.cancel()
    assert len(admitted_at) == 50 and turns > 10  # the ticker ran all along
    assert max(admitted_at) - min(admitted_at) <= 1


async def test_waiters_go_in_the_order_they_came_and_a_cancelled_one_gives_its_turn_away() -> None:
    window = SlidingWindow(1, 0.1, CLOCK)
    await window.take()
    order: list[int] = []

    async def one(n: int) -> None:
        await window.take()
        order.append(n)

    tasks = [asyncio.create_task(one(n)) for n in range(4)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 2, 3]


async def test_a_slot_counts_until_a_window_after_its_answer() -> None:
    window = SlidingWindow(2, 0.2, CLOCK)
    answered = asyncio.Event()
    admitted: list[float] = []

    async def request() -> None:
        await window.acquire()
        admitted.append(CLOCK.monotonic())
        await answered.wait()
        window.release()

    held = [asyncio.create_task(request()) for _ in range(2)]
    third = asyncio.create_task(request())
    await asyncio.sleep(0.3)  # longer than the window: the two held slots still count
    assert len(admitted) == 2 and not third.done()
    answered_at = CLOCK.monotonic()
    answered.set()
    await asyncio.gather(*held, third)
    assert admitted[2] >= answered_at + 0.2


async def test_a_waiter_cancelled_after_its_turn_came_gives_the_slot_back() -> None:
    window = SlidingWindow(1, 60.0, CLOCK)
    window.pause(60)
    entered: list[str] = []

    async def holder(name: str) -> None:
        await window.acquire()
        entered.append(name)
        window.release()

    first = asyncio.create_task(holder("first"))
    second = asyncio.create_task(holder("second"))
    await asyncio.sleep(0)
    window.resume()  # the first gets the only slot ...
    first.cancel()  # ... and is cancelled before it ran
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # not stuck behind a slot nobody holds
    assert entered == ["second"]


def test_pacing_keeps_the_budgets_rate_whole() -> None:
    """About a second's worth at a time, but no rate lost to rounding: 582 a minute is 9.7 a second."""
    for limit, window in ((582, 60.0), (5820, 60.0), (1164, 60.0), (100, 3600.0)):
        pace = pacing(limit, window, CLOCK)
        assert pace is not None and pace.limit >= 1
        assert abs(pace.limit / pace.window - limit / window) < 1e-9
        assert pace.limit <= max(1, limit * 2 * PACE_WINDOW / window)  # a burst stays about a second's worth
    assert pacing(100, 1.0, CLOCK) is None


async def test_requests_held_back_by_a_pause_leave_paced_when_it_ends() -> None:
    """While the budget is paused (a lock-out probe asks), requests queue; when it ends they go out at the
    budget's rate, not all at once, so Bitget never sees more than the margin allows in a burst."""
    budget = IpBudget(1200, 60.0, CLOCK)  # 1164 kept: 19 every 0.98 s
    budget.window.pause(2.0)
    left: list[float] = []

    async def request() -> None:
        held = await budget.acquire(SPOT_ASSETS)
        left.append(CLOCK.monotonic())
        release(held)

    await asyncio.gather(*(request() for _ in range(60)))
    assert budget.pace is not None
    first = min(left)
    assert sum(t < first + 0.5 for t in left) <= 2 * budget.pace.limit


async def test_a_pause_also_holds_back_what_waits_for_pacing() -> None:
    """Requests admitted by the minute window but still waiting for pacing must not go out into a lock-out."""
    clock = ManualClock()
    budget = IpBudget(1200, 60.0, clock)
    clock.advance(61)  # past the assumed earlier use: the minute window admits everything at once
    left: list[float] = []

    async def request() -> None:
        held = await budget.acquire(SPOT_ASSETS)
        left.append(clock.monotonic())
        release(held)

    tasks = [asyncio.create_task(request()) for _ in range(60)]
    await asyncio.sleep(0.05)
    assert budget.pace is not None and len(left) == budget.pace.limit  # the first pacing window's worth
    budget.pause(300)
    clock.advance(5)  # pacing alone would let five more windows' worth go
    await asyncio.sleep(1.2)  # its timer has fired
    assert len(left) == budget.pace.limit
    budget.resume()  # the probe found no lock-out: the next pacing window's worth goes at once
    await asyncio.sleep(0.05)
    assert len(left) == 2 * budget.pace.limit
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_priority_waiters_go_ahead_of_ordinary_ones_and_keep_their_own_order() -> None:
    window = SlidingWindow(1, 60.0, CLOCK)
    window.pause(60)
    order: list[str] = []

    async def one(name: str, priority: bool) -> None:
        await window.take(priority=priority)
        order.append(name)

    tasks = [asyncio.create_task(one(name, name.startswith("p"))) for name in ("o1", "p1", "o2", "p2", "o3")]
    await asyncio.sleep(0)
    window.limit = 5  # room for everyone once the pause ends: the order of the queue decides
    window.resume()
    await asyncio.gather(*tasks)
    assert order == ["p1", "p2", "o1", "o2", "o3"]


async def test_a_priority_request_leaves_first_from_a_full_ip_budget_but_never_overdraws_it() -> None:
    """The market feed's read, queued behind a backlog of signed reads, is the next to leave when room
    appears, through the minute window and pacing alike; and it waits for that room like everyone else."""
    clock = ManualClock()
    budget = IpBudget(120, 60.0, clock)  # 116 kept; pacing: 2 every ~1.03 s
    clock.advance(61)  # past the assumed earlier use
    left: list[str] = []

    async def request(name: str, priority: bool = False) -> None:
        held = await budget.acquire(SPOT_ASSETS, priority=priority)
        left.append(name)
        release(held)

    ordinary = [asyncio.create_task(request(f"signed-{n}")) for n in range(10)]
    await asyncio.sleep(0.05)
    assert budget.pace is not None and len(left) == budget.pace.limit  # the rest wait for pacing
    feed = asyncio.create_task(request("feed", priority=True))
    await asyncio.sleep(0.05)
    assert "feed" not in left  # no room yet: priority reorders, it does not overdraw
    clock.advance(budget.pace.window)
    await asyncio.sleep(1.2)  # the pacing timer has fired
    assert left[budget.pace.limit] == "feed" and feed.done()
    for task in ordinary:
        task.cancel()
    await asyncio.gather(*ordinary, return_exceptions=True)


async def test_a_pause_holds_back_priority_requests_too() -> None:
    budget = IpBudget(600, 60.0, CLOCK)
    budget.pause(60)  # as during a lock-out
    feed = asyncio.create_task(budget.acquire(SPOT_ASSETS, priority=True))
    await asyncio.sleep(0.2)
    assert not feed.done()
    budget.resume()
    release(await asyncio.wait_for(feed, 2))
