"""Audit mode's cost on a Strands agent's path: a guarded reduction against the unguarded inner manager.

`MemGuardConversationManager` in audit mode must leave the agent's reduction as it is and hand the
review to the guard's worker. What the agent pays is the time ``apply_management`` (the
end-of-invocation path, synchronous in Strands) takes on its thread: the inner manager's own
reduction, plus whatever the wrapper does before handing the review over. Both are timed on the
same SWE-style conversation, side by side, at 500 and 2,000 messages.

    PY=~/.cache/memguard/strands-venv-1.62.0/bin/python
    $PY benchmarks/bench_audit_strands.py                       # this checkout
    $PY benchmarks/bench_audit_strands.py --baseline ../main    # and another one, side by side

No model: a stub scorer (the worker's scoring is not what is measured) and an offline Strands
model that answers at once. One agent per row is reduced again and again, as in a run: before
each reduction (not timed) it gains new steps, up to two messages past the size (the sliding
window then trims one step: an agent at its window size), and the worker is flushed (not timed),
so its background work never lands inside the next timing. ``audit, cold`` gives the agent a
conversation of new message objects before each reduction: the first review of a conversation
(nothing copied at an earlier review can be reused). The summarizer summarizes 30% of the
conversation (its summary call is the offline model's, on both sides), so 30% of it is new at
each of its reductions. Prints a Markdown table; JSON with ``--json``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import side_by_side

SIZES = (500, 2000)


def turn(i: int) -> list[dict[str, Any]]:
    """One agent step: an assistant tool call and the user message with its result."""
    use = {"toolUseId": f"c{i}", "name": "shell", "input": {"command": f"grep -n x file{i}.py"}}
    result = {"toolUseId": f"c{i}", "status": "success", "content": [{"text": f"output {i} " + "x" * 400}]}
    return [{"role": "assistant", "content": [{"text": f"step {i}"}, {"toolUse": use}]},
            {"role": "user", "content": [{"toolResult": result}]}]


def conversation(n_messages: int) -> list[dict[str, Any]]:
    """A SWE-style Strands conversation: a task, then assistant tool calls and user tool results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Fix the failing test in app.py."}]}]
    while len(messages) < n_messages:
        messages.extend(turn(len(messages) // 2))
    return messages


def measure(runs: int) -> dict[str, Any]:
    """Agent-path latency (ms) per size and inner manager, guarded (audit) and not, in this process."""
    import memguard
    import strands_memguard
    from memguard import Guard, Score
    from strands import Agent
    from strands.agent.conversation_manager import (
        ConversationManager,
        SlidingWindowConversationManager,
        SummarizingConversationManager,
    )
    from strands.models import Model
    from strands_memguard import MemGuardConversationManager

    class Instant(Model):
        """An offline Strands model: answers "ok" at once."""

        def __init__(self) -> None:
            self.config: dict[str, Any] = {"model_id": "instant"}

        def update_config(self, **config: Any) -> None:
            self.config.update(config)

        def get_config(self) -> dict[str, Any]:
            return self.config

        async def structured_output(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
            raise NotImplementedError
            yield  # an async generator, as the interface expects

        async def stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
            yield {"messageStart": {"role": "assistant"}}
            yield {"contentBlockDelta": {"delta": {"text": "ok"}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}

    class Stub:
        def score(self, prompts: list[str]) -> list[Any]:
            return [Score(p_harmful=0.3, n_tokens=1) for _ in prompts]

    def timed(kind: str, size: int, guard: Guard | None, *, cold: bool) -> list[float]:
        """One agent, reduced `runs` times; `cold`: a conversation of new objects each time."""
        inner: ConversationManager = (SlidingWindowConversationManager(window_size=size) if kind == "sliding_window"
                                      else SummarizingConversationManager(summary_ratio=0.3,
                                                                          preserve_recent_messages=10))
        manager = inner if guard is None else MemGuardConversationManager(inner, guard)
        agent = Agent(model=Instant(), aux_model=Instant(), conversation_manager=manager, callback_handler=None,
                      system_prompt="You are a programmer.")
        agent.messages[:] = conversation(size)
        step = size
        latencies = []
        for _ in range(runs + 3):
            if cold:
                agent.messages[:] = copy.deepcopy(agent.messages)
            while len(agent.messages) < size + 2:  # the agent's steps since the last reduction
                agent.messages.extend(turn(step))
                step += 1
            started = time.perf_counter()
            if kind == "summarizing":
                manager.reduce_context(agent)  # it reduces on overflow (or proactively) only
            else:
                manager.apply_management(agent)
            latencies.append(time.perf_counter() - started)
            if guard is not None:
                assert guard.flush(60.0)  # the worker's work stays out of the next timing
        return latencies[3:]  # the first runs warm up

    out: dict[str, Any] = {"memguard": str(Path(memguard.__file__).resolve().parent.parent),
                           "strands_memguard": str(Path(strands_memguard.__file__).resolve().parent.parent)}
    for kind in ("sliding_window", "summarizing"):
        for size in SIZES:
            for side in ("inner", "audit", "audit, cold"):
                guard = None if side == "inner" else Guard(Stub(), mode="audit", identical_is_safe=False)
                latencies = timed(kind, size, guard, cold=side.endswith("cold"))
                dropped = 0
                if guard is not None:
                    dropped = guard.stats().get("audit_dropped", 0)
                    guard.close()
                out[f"{kind}@{size}: {side}"] = {**side_by_side.percentiles(latencies), "dropped": dropped}
    return out


def run_in(tree: Path, runs: int) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard and strands_memguard from `tree`."""
    return side_by_side.measure_in(tree, "bench_audit_strands", f"measure({runs})", integration="strands")


def main(argv: list[str] | None = None) -> int:
    options = (side_by_side.Option("runs", int, 100, "timed reductions per size, manager and side"),)
    return side_by_side.main(argv, description=(__doc__ or "").splitlines()[0], run_in=run_in, options=options,
                             show=lambda results: side_by_side.table(results, "inner @ messages: side"))


if __name__ == "__main__":
    raise SystemExit(main())
