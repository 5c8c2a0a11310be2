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
                out[f"{name}@{size}"] = side_by_side.percentiles(latencies[5:])  # the first calls warm up
        stats = guard.stats()
        out.setdefault("reviews", {})[size] = {"completed": stats["audit_completed"],
                                               "failed": stats["audit_failed"], "dropped": guard.audit_dropped}
        guard.close()
    return out


def run_in(tree: Path, calls: int, pause: float) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard and the integration from `tree`."""
    return side_by_side.measure_in(tree, "bench_audit_openhands", f"measure({calls}, {pause})", integration="openhands")


def main(argv: list[str] | None = None) -> int:
    options = (side_by_side.Option("calls", int, 60, "timed calls per size and variant"),
               side_by_side.Option("pause", float, 0.02, "seconds between calls (the agent's own work)"))
    return side_by_side.main(argv, description=__doc__.splitlines()[0], run_in=run_in, options=options,
                             show=lambda results: side_by_side.table_with_reviews(results, "condenser @ events"))


if __name__ == "__main__":
    raise SystemExit(main())
