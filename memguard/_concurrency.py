"""Running user callables (policies, scorers) with timeouts, from sync and async code alike.

Timed calls run on daemon threads: a hung model or agent call must never keep the process from
exiting, which a `ThreadPoolExecutor` worker (joined at interpreter exit) would.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["call_blocking", "call_async", "run_coroutine_blocking"]


def run_coroutine_blocking(awaitable: Awaitable[T]) -> T:
    """Drive a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(_await(awaitable))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="memguard-coroutine", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _resolve(value: Any) -> Any:
    return run_coroutine_blocking(value) if inspect.isawaitable(value) else value


def call_blocking(fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """Call `fn` (sync, or returning an awaitable) and wait at most `timeout` seconds."""
    if timeout is None:
        return _resolve(fn(*args))
    box: dict[str, Any] = {}
    done = threading.Event()

    def runner() -> None:
        try:
            box["value"] = _resolve(fn(*args))
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=runner, name="memguard-call", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


async def call_async(
    fn: Callable[..., Any], *args: Any, timeout: float | None = None, prefer_thread: bool = True
) -> Any:
    """Await `fn(*args)`: coroutine functions directly, sync ones on a daemon thread."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
        return await asyncio.wait_for(fn(*args), timeout)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, setter, value)
        except RuntimeError:  # the caller gave up (timeout) and its loop has closed since
            pass

    def runner() -> None:
        try:
            value = fn(*args)
            if inspect.isawaitable(value):
                value = run_coroutine_blocking(value)
        except BaseException as exc:  # noqa: BLE001
            deliver(future.set_exception, exc)
        else:
            deliver(future.set_result, value)

    threading.Thread(target=runner, name="memguard-acall", daemon=True).start()
    return await asyncio.wait_for(future, timeout)
