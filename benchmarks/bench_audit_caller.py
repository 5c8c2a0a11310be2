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

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
            ms = sorted(1e3 * t for t in latencies[5:])  # the first calls warm up
            out[f"{entry}@{len(before)}"] = {
                "p50_ms": round(statistics.median(ms), 3),
                "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
                "max_ms": round(ms[-1], 3),
                "dropped": guard.audit_dropped,
            }
    return out


def run_in(tree: Path, calls: int, pause: float) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = (f"import json, sys; sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(Path(__file__).parent)!r}); "
            f"import bench_audit_caller as b; print(json.dumps(b.measure({calls}, {pause})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(results: dict[str, dict[str, Any]], label: str = "entry point @ messages") -> str:
    """A Markdown table: one row per measured key (`label` heads it), p50 / p99 per checkout."""
    names = list(results)
    keys = [k for k in results[names[0]] if "@" in k]
    lines = [f"| {label} | " + " | ".join(f"{n}: p50 / p99 (ms)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in keys:
        cells = [f"{results[n][key]['p50_ms']:.3f} / {results[n][key]['p99_ms']:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per size and entry point")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds between calls (the agent's own work)")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure side by side (e.g. main)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    results = {"this checkout": run_in(here, args.calls, args.pause)}
    if args.baseline is not None:
        results[f"baseline ({args.baseline})"] = run_in(args.baseline.resolve(), args.calls, args.pause)
    print(table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
