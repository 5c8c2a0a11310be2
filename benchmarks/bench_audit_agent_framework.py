"""Audit mode's cost on an Agent Framework agent's path: a guarded compaction against the unguarded one.

Agent Framework runs a `CompactionStrategy` before every model call of the tool loop, on the
agent's path. In audit mode `MemGuardCompaction` must add only a small, constant amount of work to
it (docs/audit.md, "What audit mode promises"): the review, the view conversion included, runs on
the guard's worker. This times one `await strategy(messages)` on the same tool-calling conversation,
the `SlidingWindowStrategy` alone and guarded by an audit-mode guard, side by side.

    python benchmarks/bench_audit_agent_framework.py                       # this checkout
    python benchmarks/bench_audit_agent_framework.py --baseline ../main    # and another one

Needs agent-framework-core (`pip install -e integrations/agent_framework`). No model: a stub scorer,
and the tests' scripted chat client answers the probes (`client=`, as under `CompactionProvider`:
the guard submits the review from the strategy call itself). Every call compacts the same history
(the exclusion flags are cleared between calls, outside the timing). Between calls a pause stands
for the model call, and the guard's queued work is waited for, so each call meets an idle worker:
what is timed is the agent's own cost, not its thread waiting for the GIL while the worker (in the
same process) converts and scores 2,000 messages. Prints a Markdown table; JSON with `--json`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import side_by_side

SIZES = (500, 2000)
KEEP_LAST_GROUPS = 20


def conversation(n_messages: int) -> list[Any]:
    """A tool-calling Agent Framework history of `n_messages` messages: the task, then call/result pairs."""
    from agent_framework import Content, Message

    messages = [Message("user", ["Fix the failing test in app.py."])]
    i = 0
    while len(messages) < n_messages:
        call = Content.from_function_call(f"c{i}", "bash", arguments=json.dumps({"command": f"grep -n x file{i}.py"}))
        messages.append(Message("assistant", [Content.from_text(f"step {i}"), call]))
        messages.append(Message("tool", [Content.from_function_result(f"c{i}", result=f"output {i} " + "x" * 400)]))
        i += 1
    return messages[:n_messages]


async def _measure(calls: int, pause: float) -> dict[str, Any]:
    import memguard
    from agent_framework import SlidingWindowStrategy
    from agent_framework._compaction import EXCLUDE_REASON_KEY, EXCLUDED_KEY, annotate_message_groups
    from agent_framework_memguard import MemGuardCompaction
    from maf_doubles import INSTRUCTIONS, ScriptedChatClient
    from memguard import Guard
    from memguard.scoring.base import Score

    class Stub:
        def score(self, prompts: list[str]) -> list[Any]:
            return [Score(p_harmful=0.3, n_tokens=1) for _ in prompts]

    out: dict[str, Any] = {"memguard": str(Path(memguard.__file__).resolve().parent.parent)}
    for size in SIZES:
        messages = conversation(size)
        annotate_message_groups(messages)  # the framework keeps a history annotated from call to call
        guard = Guard(Stub(), mode="audit", audit_queue_size=10 * calls, identical_is_safe=False)
        strategies = {
            "unguarded": SlidingWindowStrategy(keep_last_groups=KEEP_LAST_GROUPS),
            "audit guard": MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=KEEP_LAST_GROUPS), guard,
                                              client=ScriptedChatClient(),
                                              options={"instructions": INSTRUCTIONS}, conversation_id="bench"),
        }
        for name, strategy in strategies.items():
            latencies = []
            for _ in range(calls + 5):
                for message in messages:  # the same history for every call
                    message.additional_properties[EXCLUDED_KEY] = False
                    message.additional_properties.pop(EXCLUDE_REASON_KEY, None)
                started = time.perf_counter()
                changed = await strategy(messages)
                latencies.append(time.perf_counter() - started)
                assert changed, "the strategy must compact for a review to happen"
                await asyncio.sleep(pause)  # the model call: the worker and the probes run meanwhile
                assert await guard.aflush(60.0), "audit work did not finish"  # the next call meets an idle worker
            out[f"{name}@{size}"] = side_by_side.percentiles(latencies[5:])  # the first calls warm up
        stats = guard.stats()
        out.setdefault("reviews", {})[size] = {"completed": stats["audit_completed"],
                                               "failed": stats["audit_failed"], "dropped": guard.audit_dropped}
        await guard.aclose()
    return out


def measure(calls: int, pause: float) -> dict[str, Any]:
    """Agent-path latency (ms) per size, unguarded and audit-guarded, in this process's packages."""
    return asyncio.run(_measure(calls, pause))


def run_in(tree: Path, calls: int, pause: float) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard and the integration from `tree`."""
    return side_by_side.measure_in(tree, "bench_audit_agent_framework", f"measure({calls}, {pause})", integration="agent_framework")


def main(argv: list[str] | None = None) -> int:
    options = (side_by_side.Option("calls", int, 100, "timed calls per size and variant"),
               side_by_side.Option("pause", float, 0.02, "seconds between calls (the agent's own work)"))
    return side_by_side.main(argv, description=__doc__.splitlines()[0], run_in=run_in, options=options,
                             show=lambda results: side_by_side.table_with_reviews(results, "strategy @ messages"))


if __name__ == "__main__":
    raise SystemExit(main())
