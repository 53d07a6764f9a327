"""The one clock, and waiting on it."""

from __future__ import annotations


async def test_a_loop_sleeping_on_an_event_ends_when_cancelled_just_as_the_event_is_set() -> None:
    """asyncio.wait_for on Python 3.11 would return the event's result here and the loop would run for ever."""
    import asyncio

    from monitor.clock import wait_for_event

    event = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await wait_for_event(event, 10)
            event.clear()
            turns += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop waits on the event
    event.set()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done and task.cancelled() and turns == 0


async def test_waiting_for_an_event_says_whether_it_was_set_or_the_time_ran_out() -> None:
    import asyncio

    from monitor.clock import wait_for_event

    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 10) is True
