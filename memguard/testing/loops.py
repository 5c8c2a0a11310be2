"""Measuring what an event loop suffers: the longest it went without turning while work ran."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["longest_loop_stall"]

T = TypeVar("T")


async def longest_loop_stall(work: Awaitable[T], *, tick: float = 0.005) -> tuple[float, T]:
    """Await `work` while a ticker measures the longest gap between its turns (seconds).

    A ticker that sleeps `tick` seconds at a time runs beside `work`; any blocking call on the
    loop (a sync `close()`, a forward pass, a sink write) shows up as one long gap.

    Args:
        work: The awaitable to measure.
        tick: Seconds the ticker sleeps between turns (the smallest gap it can see).

    Returns:
        The longest gap, and what `work` returned.
    """
    gaps = [0.0]
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(tick)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(4 * tick)
    try:
        result = await work
    finally:
        stop.set()
        await task
    return max(gaps), result
