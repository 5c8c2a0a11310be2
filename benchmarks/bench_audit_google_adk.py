"""Audit mode's cost on a Google ADK run's path, by session length: guarded vs unguarded.

One run of an ADK agent whose session already holds N events: before its model call ADK's token
threshold fires, the app's summarizer compacts (in-flow), and the model answers. The same run is
timed unguarded and with `guard_app(app, Guard(..., mode="audit"))`, on the same summarizer and
a session of the same events, the two interleaved (the machine's noise falls on both alike).
Printed per size:

- **run**: the whole `runner.run_async` on the run's event loop (ADK's own O(n) work included:
  its session copy and request building, which both sides pay). The audit run also shares the
  interpreter with the guard's worker, which builds the review while the run goes on;
- **memguard hooks**: the time memguard's plugin callbacks and summarizer wrapper spend on the
  run's path (the inner summarizer's own time left out): what audit mode adds to the run itself.

    PY=~/.cache/memguard/google-adk-2.13.0/bin/python
    $PY benchmarks/bench_audit_google_adk.py                          # this checkout
    $PY benchmarks/bench_audit_google_adk.py --baseline path/to/main  # and another one, side by side

No model: the agent's model is a fake `BaseLlm` that answers at once with a fixed text (no
per-message work of its own, so what is timed is ADK's and memguard's), the scorer a stub. The
guard's queued audit work is drained after each run, untimed, so each run starts on an idle worker.
Prints a Markdown table; JSON with `--json`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import side_by_side

SIZES = (500, 2000)


def measure(runs: int) -> dict[str, Any]:
    """Per-run timings (ms) at each size, unguarded and audit-guarded, in this process's memguard."""
    return asyncio.run(_measure(runs))


async def _measure(runs: int) -> dict[str, Any]:
    import memguard
    from google.adk.agents import LlmAgent
    from google.adk.apps.app import App, EventsCompactionConfig
    from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions, EventCompaction
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import InMemoryRunner
    from google.genai import types
    from memguard import Guard
    from memguard.scoring.base import Score

    import google_adk_memguard

    class Answering(BaseLlm):
        model: str = "fake"

        async def generate_content_async(self, llm_request: LlmRequest,
                                         stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
            usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=10, candidates_token_count=2)
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="done")]),
                              usage_metadata=usage)

    class Lossy(BaseEventsSummarizer):
        async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
            summary = types.Content(role="model", parts=[types.Part(text=f"Summary of {len(events)} events.")])
            return Event(author="user", actions=EventActions(compaction=EventCompaction(
                start_timestamp=events[0].timestamp, end_timestamp=events[-1].timestamp,
                compacted_content=summary)))

    class Stub:
        def score(self, prompts: list[str]) -> list[Any]:
            return [Score(p_harmful=0.3, n_tokens=1) for _ in prompts]

    def history(n: int) -> list[Event]:
        """A tool-calling session of `n` events; the last model turn reports a prompt past the threshold."""
        start = time.time() - n
        events = [Event(author="user", invocation_id="i0", timestamp=start,
                        content=types.Content(role="user", parts=[types.Part(text="Fix the failing test.")]))]
        i = 0
        while len(events) < n - 1:  # tool steps: a call and its response
            call = types.FunctionCall(id=f"adk-{i}", name="bash", args={"command": f"grep -n x file{i}.py"})
            answer = types.FunctionResponse(id=f"adk-{i}", name="bash", response={"result": f"output {i} " + "x" * 200})
            events.append(Event(author="coder", invocation_id=f"i{i}", timestamp=start + len(events),
                                content=types.Content(role="model", parts=[types.Part(function_call=call)]),
                                usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=100)))
            events.append(Event(author="coder", invocation_id=f"i{i}", timestamp=start + len(events),
                                content=types.Content(role="user", parts=[types.Part(function_response=answer)])))
            i += 1
        events = events[: n - 1]
        usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=1_000_000)  # past the threshold
        events.append(Event(author="coder", invocation_id=f"i{i}", timestamp=start + n, usage_metadata=usage,
                            content=types.Content(role="model", parts=[types.Part(text="Tests pass now.")])))
        return events

    def hook_timer(plugin: Any, summarizer: Any, spent: list[float]) -> None:
        """Time memguard's own callbacks and summarizer on the run's path (the inner summarizer excluded)."""

        def timed(owner: Any, name: str, exclude: list[float] | None = None) -> None:
            original: Callable[..., Any] = getattr(owner, name)

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                mark = len(exclude) if exclude is not None else 0
                try:
                    return await original(*args, **kwargs)
                finally:
                    inner = sum(exclude[mark:]) if exclude is not None else 0.0
                    spent.append(time.perf_counter() - started - inner)

            object.__setattr__(owner, name, wrapper)

        inner_spent: list[float] = []
        original_inner = summarizer.inner.maybe_summarize_events

        async def inner(**kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original_inner(**kwargs)
            finally:
                inner_spent.append(time.perf_counter() - started)

        object.__setattr__(summarizer.inner, "maybe_summarize_events", inner)
        timed(summarizer, "maybe_summarize_events", inner_spent)
        for name in ("before_run_callback", "before_agent_callback", "before_model_callback",
                     "after_model_callback", "after_run_callback"):
            timed(plugin, name)

    out: dict[str, Any] = {"memguard": str(Path(memguard.__file__).resolve().parent.parent),
                           "google_adk_memguard": str(Path(google_adk_memguard.__file__).resolve().parent)}
    message = types.Content(role="user", parts=[types.Part(text="Continue.")])
    for size in SIZES:
        runners: dict[str, Any] = {}
        guard = Guard(Stub(), mode="audit", identical_is_safe=False)
        spent: list[float] = []
        for variant in ("unguarded", "audit"):
            agent = LlmAgent(name="coder", model=Answering(), instruction="You are a programmer.")
            app = App(name="bench", root_agent=agent, events_compaction_config=EventsCompactionConfig(
                summarizer=Lossy(), token_threshold=1000, event_retention_size=4,
                compaction_interval=10**6, overlap_size=0))
            if variant == "audit":
                app = google_adk_memguard.guard_app(app, guard)
                summarizer = app.events_compaction_config.summarizer  # type: ignore[union-attr]
                hook_timer(summarizer.plugin, summarizer, spent)
            runners[variant] = InMemoryRunner(app=app)
        timings: dict[str, list[float]] = {"unguarded": [], "audit": [], "hooks": []}
        for k in range(runs + 3):
            for variant, runner in runners.items():  # interleaved: the machine's noise falls on both alike
                session_id = f"s{size}-{k}"
                session = await runner.session_service.create_session(app_name="bench", user_id="u",
                                                                      session_id=session_id)
                for event in history(size):
                    await runner.session_service.append_event(session=session, event=event)
                del spent[:]
                started = time.perf_counter()
                async for _ in runner.run_async(user_id="u", session_id=session_id, new_message=message):
                    pass
                elapsed = time.perf_counter() - started
                assert await guard.aflush(60), "audit work did not drain"
                if k >= 3:  # the first runs warm up
                    timings[variant].append(elapsed)
                    if variant == "audit":
                        timings["hooks"].append(sum(spent))
                done = await runner.session_service.get_session(app_name="bench", user_id="u", session_id=session_id)
                assert done is not None and any(e.actions.compaction for e in done.events), "no compaction ran"
        stats = guard.stats()
        await guard.aclose()
        out[f"unguarded@{size}"] = {"run": side_by_side.percentiles(timings["unguarded"])}
        out[f"audit@{size}"] = {"run": side_by_side.percentiles(timings["audit"]), "hooks": side_by_side.percentiles(timings["hooks"]),
                                "audit_completed": stats.get("audit_completed"), "audit_failed": stats["audit_failed"]}
    return out


def run_in(tree: Path, runs: int) -> dict[str, Any]:
    """`measure` in a subprocess that imports memguard and google_adk_memguard from `tree`."""
    return side_by_side.measure_in(tree, "bench_audit_google_adk", f"measure({runs})", integration="google_adk",
                                   env={"OTEL_SDK_DISABLED": "true"})


def _cell(entry: dict[str, float]) -> str:
    return f"{entry['p50_ms']:.2f} / {entry['p99_ms']:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| checkout | events | unguarded run p50 / p99 (ms) | audit run p50 / p99 (ms) "
             "| memguard hooks on the run's path p50 / p99 (ms) |", "|---|---|---|---|---|"]
    for name, result in results.items():
        for size in SIZES:
            plain, audit = result[f"unguarded@{size}"], result[f"audit@{size}"]
            cells = [_cell(plain["run"]), _cell(audit["run"]), _cell(audit["hooks"])]
            lines.append(f"| {name} | {size:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = (side_by_side.Option("runs", int, 30, "timed runs per size and variant"),)
    return side_by_side.main(argv, description=(__doc__ or "").splitlines()[0], run_in=run_in, options=options,
                             show=table)


if __name__ == "__main__":
    raise SystemExit(main())
