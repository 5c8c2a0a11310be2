"""Audit mode's cost on an OpenHands agent's path: a guarded condense against the unguarded condenser.

OpenHands asks its condenser for a view before every LLM call, on the agent's path. In audit mode
`MemGuardCondenser` must add only a small amount of work to it (docs/audit.md, "What audit mode
promises"): the guard's views of the events are built on the guard's worker
(`CompactionEvent.deferred`); the agent's path copies the lists of event references and counts the
assistant turns. This times one `condense(view)` on the same event history, a condenser that
forgets 30% of it alone and guarded by an audit-mode guard, side by side.

    python benchmarks/bench_audit_openhands.py                       # this checkout
    python benchmarks/bench_audit_openhands.py --baseline ../main    # and another one

Needs openhands-sdk (Python >= 3.12: run it with the venv `scripts/setup_openhands_venv.sh` makes).
No model: a stub scorer, and the tests' fake LLM answers the probes. Between calls a pause stands
for the LLM call and the guard's queued work is waited for, so each call meets an idle worker:
what is timed is the agent's own cost. Prints a Markdown table; JSON with `--json`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import side_by_side

SIZES = (500, 2000)
FORGOTTEN = 0.3


def events(n_events: int) -> list[Any]:
    """An OpenHands event history of `n_events` events: the task, then shell action/observation pairs."""
    from openhands.sdk.event import ActionEvent, MessageEvent, ObservationEvent
    from openhands.sdk.llm import Message, MessageToolCall, TextContent

    from oh_doubles import ShellAction, ShellObservation

    task = Message(role="user", content=[TextContent(text="Fix the test.")])
    out: list[Any] = [MessageEvent(source="user", llm_message=task)]
    i = 0
    while len(out) < n_events:
        command = f"grep -n x file{i}.py"
        call = MessageToolCall(id=f"c{i}", name="terminal", arguments=json.dumps({"command": command}),
                               origin="completion")
        action = ActionEvent(thought=[TextContent(text=f"step {i}")], action=ShellAction(command=command),
                             tool_name="terminal", tool_call_id=f"c{i}", llm_response_id=f"r{i}", tool_call=call)
        observation = ObservationEvent(observation=ShellObservation.from_text(f"output {i} " + "x" * 400),
                                       action_id=action.id, tool_name="terminal", tool_call_id=f"c{i}")
        out += [action, observation]
        i += 1
    return out[:n_events]


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1e3 * t for t in seconds)
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3)}


def measure(calls: int, pause: float) -> dict[str, Any]:
    """Agent-path latency (ms) per size, unguarded and audit-guarded, in this process's packages."""
    import memguard
    from memguard import Guard, Score
    from openhands.sdk.context.condenser import CondenserBase
    from openhands.sdk.context.view import View
    from openhands.sdk.event import Condensation
    from openhands.sdk.llm.call_context import LLMCallContext, llm_call_context_scope

    from oh_doubles import agent_llm
    from openhands_memguard import MemGuardCondenser

    class Forgetting(CondenserBase):
        """Forgets the oldest 30% of the events behind a summary (no LLM)."""

        def condense(self, view: Any, agent_llm: Any = None) -> Any:
            forgotten = {event.id for event in view.events[1:int(FORGOTTEN * len(view.events))]}
            return Condensation(forgotten_event_ids=forgotten, summary="s", summary_offset=1, llm_response_id="fixed")

    class Stub:
        def score(self, prompts: list[str]) -> list[Any]:
            return [Score(p_harmful=0.3, n_tokens=1) for _ in prompts]

    out: dict[str, Any] = {"memguard": str(Path(memguard.__file__).resolve().parent.parent)}
    llm = agent_llm()
    for size in SIZES:
        view = View(events=events(size))
        guard = Guard(Stub(), mode="audit", identical_is_safe=False, cooldown=0, audit_queue_size=10 * calls)
        condensers = {"unguarded": Forgetting(), "audit guard": MemGuardCondenser(Forgetting(), guard)}
        with llm_call_context_scope(LLMCallContext(session_id="bench")):
            for name, condenser in condensers.items():
                latencies = []
                for _ in range(calls + 5):
                    started = time.perf_counter()
                    result = condenser.condense(view, agent_llm=llm)
                    latencies.append(time.perf_counter() - started)
                    assert isinstance(result, Condensation), "the condenser must condense for a review to happen"
                    time.sleep(pause)  # the LLM call: the worker runs meanwhile
                    assert guard.flush(120.0), "audit work did not finish"  # the next call meets an idle worker
                out[f"{name}@{size}"] = _stats(latencies[5:])  # the first calls warm up
        stats = guard.stats()
        out.setdefault("reviews", {})[size] = {"completed": stats["audit_completed"],
                                               "failed": stats["audit_failed"], "dropped": guard.audit_dropped}
        guard.close()
    return out


def run_in(tree: Path, calls: int, pause: float) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard and openhands_memguard from `tree`."""
    paths = [str(tree), str(tree / "integrations" / "openhands"), str(tree / "integrations" / "openhands" / "tests"),
             str(Path(__file__).parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    code = (f"import json, sys; sys.path[:0] = {paths!r}; "
            f"import bench_audit_openhands as b; print(json.dumps(b.measure({calls}, {pause})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def show(results: dict[str, dict[str, Any]]) -> str:
    """The latency table, then how the audit reviews ended in each checkout."""
    reviews = "; ".join(f"{name}: {figures['reviews']}" for name, figures in results.items())
    return side_by_side.table(results, "condenser @ events") + f"\n\naudit reviews by size ({reviews})"


def main(argv: list[str] | None = None) -> int:
    return side_by_side.main(argv, description=__doc__.splitlines()[0], run_in=run_in, calls=60, pause=0.02,
                             calls_help="timed calls per size and condenser", show=show)


if __name__ == "__main__":
    raise SystemExit(main())
