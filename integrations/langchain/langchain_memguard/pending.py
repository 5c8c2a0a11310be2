"""Audit mode's hand-over from the `before_model` hook to the model call of the same step.

In audit mode a state compaction (`SummarizationMiddleware`) runs exactly where it runs without
memguard, in `before_model`, and its update reaches the state and the stream unchanged. The model
call that follows is the step's proposed action; reviewing it needs the context as it was before
the update. `before_model` leaves that context here, keyed by the compacted context it produced
(its length and the ids of its first and last message: O(1), and unique, since the update's
messages get their ids before the graph applies it); the model call takes it back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["PendingCompactions"]


def _key(messages: Sequence[Any]) -> tuple[int, str | None, str | None] | None:
    if not messages:
        return None
    return (len(messages), getattr(messages[0], "id", None), getattr(messages[-1], "id", None))


class PendingCompactions:
    """Contexts before a compaction, waiting for the model call that follows it (thread-safe, bounded).

    An entry whose model call never comes (the run was interrupted, a later hook rewrote the
    messages again) is dropped once `capacity` newer ones arrived.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, str | None, str | None], list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, compacted: Sequence[Any], before: Sequence[Any]) -> None:
        """Remember `before` for the model call that will see `compacted`."""
        key = _key(compacted)
        if key is None or key[1] is None or key[2] is None:
            return
        with self._lock:
            self._entries[key] = list(before)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def take(self, messages: Sequence[Any]) -> list[Any] | None:
        """The context before the compaction that produced `messages`, once; None if there was none."""
        key = _key(messages)
        if key is None:
            return None
        with self._lock:
            return self._entries.pop(key, None)
