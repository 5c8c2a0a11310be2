"""The contract every memguard integration passes, the way LangChain's standard tests work.

An integration (LangChain, Pydantic AI, the OpenAI Agents SDK, OpenHands, ...) subclasses
`IntegrationContract` in its own test suite and implements one method, `run_agent`, that runs a
small scripted agent to the end in one of three variants:

- ``"plain"``: the agent with no compaction at all;
- ``"compacting"``: the agent with the framework's compaction, unguarded;
- ``"guarded"``: the same compaction wrapped by the integration around the given `Guard`.

pytest then collects the inherited ``test_*`` methods, which check what memguard promises every
agent, whatever its framework:

- a guard whose scorer always says SAFE ends exactly like the unguarded compacting run;
- a guard whose scorer always says HARMFUL ends exactly like a run that never compacts;
- audit mode ends exactly like the unguarded compacting run, and records every review;
- a failing scorer follows ``on_error`` ("open" = compacting run, "closed" = never compacted);
- each review costs at most `extra_calls_per_review` extra model calls (the winning probe is
  reused as the step's response), and every decision reaches the guard's sinks.

The scripted agent must be deterministic and its next action must depend on its context (so the
probes on the full and the compacted context differ and the scorer is really consulted), and the
compaction must change the final transcript (`test_the_fixture_compacts` checks this, or the other
tests would prove nothing). Async runs are driven with `asyncio.run` inside `run_agent`, so the
contract needs neither pytest-asyncio nor a running loop.

Example::

    class TestMyFramework(IntegrationContract):
        def run_agent(self, variant, guard, *, mode):
            model = ScriptedModel()
            agent = build_agent(model, compaction=None if variant == "plain" else my_compaction())
            if variant == "guarded":
                agent = wrap_with_memguard(agent, guard)
            history = agent.run_sync(TASK) if mode == "sync" else asyncio.run(agent.run(TASK))
            return AgentRun(transcript=normalise(history), model_calls=model.calls)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest

from memguard.events import Decision, Verdict
from memguard.guard import Guard
from memguard.scoring.base import Score

__all__ = [
    "AgentRun",
    "ConstantScorer",
    "FailingScorer",
    "IntegrationContract",
    "RecordingSink",
    "RunMode",
    "Variant",
]

Variant = Literal["plain", "compacting", "guarded"]
RunMode = Literal["sync", "async"]


@dataclass
class AgentRun:
    """What one agent run left behind, in a form the contract can compare.

    `transcript` is the agent's final history normalised to plain values (drop random ids and
    timestamps, keep roles, texts and tool calls); `model_calls` counts every call the agent's
    model received during the run, probes included.
    """

    transcript: Any
    model_calls: int


class ConstantScorer:
    """A scorer that gives every prompt the same P(HARMFUL) and counts what it was asked."""

    def __init__(self, p_harmful: float) -> None:
        self.p_harmful = p_harmful
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def score(self, prompts: list[str]) -> list[Score]:
        with self._lock:
            self.prompts.extend(prompts)
        for prompt in prompts:
            if not prompt.endswith("\n\nAnswer:"):
                raise AssertionError("the guard sent a prompt that does not end in the protocol's '\\n\\nAnswer:'")
        return [Score(p_harmful=self.p_harmful, n_tokens=max(1, len(p) // 4)) for p in prompts]


class FailingScorer:
    """A scorer that always raises, to exercise the guard's `on_error` policy."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts: list[str]) -> list[Score]:
        self.calls += 1
        raise ConnectionError("scoring server unavailable")


class RecordingSink:
    """An audit sink that keeps every Decision in memory (thread-safe)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self._lock = threading.Lock()

    def emit(self, decision: Decision) -> None:
        with self._lock:
            self.decisions.append(decision)

    def close(self) -> None:
        return None

    @property
    def reviews(self) -> list[Decision]:
        """Decisions that probed the agent (cooldown vetoes did not)."""
        return [d for d in self.decisions if d.candidates]


class IntegrationContract:
    """Subclass and implement `run_agent`; pytest collects the inherited tests.

    Class attributes tune the contract to a framework:

    - `extra_calls_per_review`: model calls a review may add to the run (1 when the winning
      probe is reused as the step's response; 2 where the framework cannot reuse it).
    - `modes`: the run modes the integration supports ("sync", "async").
    - `guard_options`: extra `Guard` keywords every contract guard gets (say, a `cooldown`).
    """

    extra_calls_per_review: ClassVar[int] = 1
    modes: ClassVar[tuple[RunMode, ...]] = ("sync", "async")
    guard_options: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ to implement

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode) -> AgentRun:
        """Run the scripted agent to the end; `guard` is None unless `variant == "guarded"`."""
        raise NotImplementedError("an IntegrationContract subclass must implement run_agent()")

    # ------------------------------------------------------------------ helpers

    def make_guard(self, scorer: Any, sink: RecordingSink, **options: Any) -> Guard:
        """The guard a contract test runs with: every review is scored (no identical shortcut)."""
        settings = {"identical_is_safe": False, **self.guard_options, **options}
        return Guard(scorer, sinks=[sink], **settings)

    @pytest.fixture(params=["sync", "async"])
    def mode(self, request: pytest.FixtureRequest) -> RunMode:
        if request.param not in self.modes:
            pytest.skip(f"this integration does not support {request.param} runs")
        mode: RunMode = request.param
        return mode

    def _run(self, variant: Variant, guard: Guard | None, mode: RunMode) -> AgentRun:
        run = self.run_agent(variant, guard, mode=mode)
        if not isinstance(run, AgentRun):
            raise TypeError(f"run_agent() must return an AgentRun, got {type(run).__name__}")
        return run

    def _guarded(self, scorer: Any, run_mode: RunMode, **options: Any) -> tuple[AgentRun, RecordingSink]:
        sink = RecordingSink()
        guard = self.make_guard(scorer, sink, **options)
        try:
            run = self._run("guarded", guard, run_mode)
            assert guard.flush(30.0), "audit work did not finish within 30 s"
        finally:
            guard.close()
        return run, sink

    def _assert_call_budget(self, run: AgentRun, baseline: AgentRun, reviews: Sequence[Decision]) -> None:
        allowed = baseline.model_calls + self.extra_calls_per_review * len(reviews)
        assert run.model_calls <= allowed, (
            f"{run.model_calls} model calls; at most {allowed} allowed "
            f"({baseline.model_calls} unguarded + {self.extra_calls_per_review} per review x {len(reviews)})"
        )

    # ------------------------------------------------------------------ the contract

    def test_the_fixture_compacts(self, mode: RunMode) -> None:
        plain = self._run("plain", None, mode)
        compacting = self._run("compacting", None, mode)
        assert compacting.transcript != plain.transcript, (
            "the compacting run ends like the plain one: the fixture never compacts, so the contract proves nothing"
        )

    def test_runs_are_deterministic(self, mode: RunMode) -> None:
        first = self._run("compacting", None, mode)
        second = self._run("compacting", None, mode)
        assert first.transcript == second.transcript
        assert first.model_calls == second.model_calls

    def test_safe_verdicts_end_like_the_unguarded_compaction(self, mode: RunMode) -> None:
        compacting = self._run("compacting", None, mode)
        scorer = ConstantScorer(0.0)
        run, sink = self._guarded(scorer, mode)
        assert sink.reviews, "the guarded run reviewed no compaction"
        assert all(d.verdict is Verdict.COMMIT for d in sink.decisions), [d.verdict for d in sink.decisions]
        assert scorer.prompts, "the scorer was never consulted"
        assert run.transcript == compacting.transcript
        self._assert_call_budget(run, compacting, sink.reviews)

    def test_harmful_verdicts_end_like_a_run_that_never_compacts(self, mode: RunMode) -> None:
        plain = self._run("plain", None, mode)
        run, sink = self._guarded(ConstantScorer(1.0), mode)
        assert sink.reviews, "the guarded run reviewed no compaction"
        assert all(d.verdict is Verdict.VETO for d in sink.decisions), [d.verdict for d in sink.decisions]
        assert all(d.p_harmful == 1.0 for d in sink.reviews)
        assert run.transcript == plain.transcript
        self._assert_call_budget(run, plain, sink.reviews)

    def test_audit_mode_ends_like_the_unguarded_compaction(self, mode: RunMode) -> None:
        compacting = self._run("compacting", None, mode)
        run, sink = self._guarded(ConstantScorer(1.0), mode, mode="audit")
        assert run.transcript == compacting.transcript
        assert sink.decisions, "audit mode recorded no decision"
        assert all(d.verdict is Verdict.AUDIT and not d.pending for d in sink.decisions)
        assert all(d.p_harmful == 1.0 for d in sink.decisions), [d.reasons for d in sink.decisions]

    @pytest.mark.parametrize("on_error", ["open", "closed"])
    def test_scorer_failure_follows_on_error(self, mode: RunMode, on_error: str) -> None:
        expected = self._run("compacting" if on_error == "open" else "plain", None, mode)
        run, sink = self._guarded(FailingScorer(), mode, on_error=on_error)
        assert sink.reviews and all(d.error for d in sink.reviews)
        assert run.transcript == expected.transcript

