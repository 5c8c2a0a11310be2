"""Audit mode's cost on the agent's path, by conversation length.

In audit mode the agent's own compaction is used and the review runs on the guard's worker: what
the agent pays is the time `Guard.review` (or a decorated compaction function) takes to hand the
work over. It must not grow with the conversation (issue 20, item 7: 14.5 ms at 502 messages and
50.6 ms at 2,002 before the step was counted in the background).

    python benchmarks/bench_audit_caller.py                       # this checkout
    python benchmarks/bench_audit_caller.py --baseline ../main    # and another one, side by side

No model: the scorer is a stub (the worker's scoring is not what is measured), the agent answers
at once. Each call is timed on the caller's thread while the worker runs the earlier ones, as in
an agent (a pause between calls stands for the agent's own work). Prints a Markdown table; JSON
with `--json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import side_by_side

SIZES = (500, 2000)


def conversation(n_messages: int) -> list[dict[str, Any]]:
    """A SWE-style tool-calling conversation of about `n_messages` messages."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a programmer."},
                                      {"role": "user", "content": "Fix the failing test in app.py."}]
    i = 0
    while len(messages) < n_messages:
        call = {"id": f"c{i}", "type": "function",
                "function": {"name": "bash", "arguments": json.dumps({"command": f"grep -n x file{i}.py"})}}
        messages.append({"role": "assistant", "content": f"step {i}", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"output {i} " + "x" * 400})
        i += 1
    return messages


def measure(calls: int, pause: float) -> dict[str, Any]:
    """Caller latency (ms) of audit reviews, per size and entry point, in this process's memguard."""
    import memguard
    from memguard import CompactionEvent, Guard
    from memguard.scoring.base import Score

    class Stub:
        def score(self, prompts: list[str]) -> list[Any]:
            return [Score(p_harmful=0.3, n_tokens=1) for _ in prompts]

    def agent(messages: list[Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": "ls -la"}

    out: dict[str, Any] = {"memguard": str(Path(memguard.__file__).resolve().parent.parent)}
    for size in SIZES:
        before = conversation(size)
        candidate = [*before[:2], {"role": "user", "content": "[Summary] work so far"}, *before[-4:]]
        for entry in ("review", "decorator"):
            guard = Guard(Stub(), mode="audit", audit_queue_size=10 * calls, identical_is_safe=False)
            compact = guard.compaction(policy=agent)(lambda messages, c=candidate: c)
            latencies = []
            for _ in range(calls + 5):
                started = time.perf_counter()
                if entry == "review":
                    guard.review(CompactionEvent(before=before, candidate=candidate), agent)
                else:
                    compact(before)
                latencies.append(time.perf_counter() - started)
                time.sleep(pause)
            guard.close()
            timed = latencies[5:]  # the first calls warm up
            out[f"{entry}@{len(before)}"] = {**side_by_side.percentiles(timed), "max_ms": round(1e3 * max(timed), 3),
                                             "dropped": guard.audit_dropped}
    return out


def run_in(tree: Path, calls: int, pause: float) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard from `tree`."""
    return side_by_side.measure_in(tree, "bench_audit_caller", f"measure({calls}, {pause})")


def main(argv: list[str] | None = None) -> int:
    options = (side_by_side.Option("calls", int, 200, "timed calls per size and entry point"),
               side_by_side.Option("pause", float, 0.005, "seconds between calls (the agent's own work)"))
    return side_by_side.main(argv, description=__doc__.splitlines()[0], run_in=run_in, options=options,
                             show=lambda results: side_by_side.table(results, "entry point @ messages"))


if __name__ == "__main__":
    raise SystemExit(main())
