"""The contract every memguard integration passes, the way LangChain's standard tests work.

An integration (LangChain, Pydantic AI, the OpenAI Agents SDK, OpenHands, ...) subclasses
`IntegrationContract` in its own test suite and implements how a small scripted agent runs to the
end, in one of these variants:

- ``"plain"``: the agent with no compaction at all;
- ``"compacting"``: the agent with the framework's compaction, unguarded;
- ``"guarded"``: the same compaction wrapped by the integration around the given `Guard`;
- ``"must_reduce"`` (optional, `must_reduce_variant = True`): a guarded run where the framework
  *must* shrink its context (overflow, a HARD requirement, context_overflow).

Two methods: ``run_agent(variant, guard, *, mode, conversation=0)`` (sync runs) and
``async arun_agent(variant, guard, *, conversation=0)`` (async runs, awaited inside the
contract's own event loop). `conversation` (0, 1, 2, ...) selects one of several independent
conversations: vary the task text and the thread/session id by it. An older subclass that drives
``mode="async"`` with `asyncio.run` inside `run_agent` still works for the tests that need no more.

pytest then collects the inherited ``test_*`` methods, which check what memguard promises every
agent, whatever its framework:

- a guard whose scorer always says SAFE ends exactly like the unguarded compacting run, and one
  that says HARMFUL like a run that never compacts; each review costs at most
  `extra_calls_per_review` extra model calls (the winning probe is reused as the step's response);
- audit mode ends exactly like the unguarded compacting run, records every review, and adds
  nothing the agent can see: its stream, its usage and its requests are the compacting run's;
- a failing scorer follows ``on_error`` ("open" = compacting run, "closed" = never compacted);
- during a cooldown the inner compaction is not even called (`compactions` == reviews);
- probes carry the run's settings (every guarded request signature occurs in the unguarded run);
- several conversations run at once on one guard (threads for sync, tasks in one loop for
  async) end exactly as each does alone;
- ``await guard.aclose()`` and a sync ``guard.close()`` inside the running loop write every
  decision without blocking it; a guard dropped without closing leaves no thread behind;
- a must-reduce run never vetoes (when the integration supports the variant).

What `AgentRun` reports beyond the transcript makes the later checks possible; a field left None
skips the tests that need it, naming the field (`pytest.skip`), never passing silently.

The scripted agent must be deterministic and its next action must depend on its context (so the
probes on the full and the compacted context differ and the scorer is really consulted), and the
compaction must change the final transcript (`test_the_fixture_compacts` checks this, or the other
tests would prove nothing). Its model settings must not be the defaults (a temperature, a max
tokens, a tool_choice), so that a probe that drops them is caught.

For example (the framework's names are placeholders):

```python
class TestMyFramework(IntegrationContract):
    def run_agent(self, variant, guard, *, mode="sync", conversation=0):
        model = ScriptedModel()
        agent = build_agent(model, compaction=None if variant == "plain" else my_compaction())
        if guard is not None:
            agent = wrap_with_memguard(agent, guard)
        history = agent.run_sync(task(conversation), thread_id=f"t-{conversation}")
        return AgentRun(transcript=normalise(history), model_calls=model.calls,
                        compactions=agent.compaction.calls, requests=model.signatures,
                        streamed=None, usage=history.usage)

    async def arun_agent(self, variant, guard, *, conversation=0):
        ...  # the same with `await agent.run(...)`
```
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest

from memguard.events import Decision, Verdict
from memguard.guard import Guard
from memguard.testing.doubles import ConstantScorer, FailingScorer, HashScorer, RecordingSink
from memguard.testing.loops import longest_loop_stall

__all__ = [
    "AgentRun",
    "ConstantScorer",
    "FailingScorer",
    "HashScorer",
    "IntegrationContract",
    "RecordingSink",
    "RunMode",
    "Variant",
]

Variant = Literal["plain", "compacting", "guarded", "must_reduce"]
"""Which agent `run_agent` runs: no compaction, the framework's compaction unguarded, that
compaction guarded by the given `Guard`, or a guarded run that must shrink its context."""
RunMode = Literal["sync", "async"]
"""How a contract test runs the agent: the framework's sync API, or its async one in an event loop."""


@dataclass
class AgentRun:
    """What one agent run left behind, in a form the contract can compare."""

    transcript: Any
    """The agent's final history normalised to plain values (drop random ids and timestamps, keep
    roles, texts and tool calls).
    """
    model_calls: int
    """Every call the agent's model received during the run, probes included."""
    compactions: int | None = None
    """How many times the inner (wrapped) compaction was invoked (None: not measurable)."""
    requests: list[Hashable] | None = None
    """One signature per model call, probes included: model name, settings, tools, tool_choice (and
    output schema), not the messages (None: not recorded).
    """
    streamed: Any = None
    """What a streaming consumer of the run saw (None: the run has no stream)."""
    usage: Any = None
    """The run's usage as the framework reports it, requests and tokens (None: none)."""


def _by_conversation(decisions: Sequence[Decision]) -> Counter[tuple[Any, ...]]:
    """Per conversation id: its verdicts, skips and scores in order (the id itself left out)."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for d in decisions:
        grouped.setdefault(d.conversation_id, []).append((d.verdict, d.skipped, d.p_harmful, d.step))
    return Counter(tuple(steps) for steps in grouped.values())


def _audit_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "memguard-audit" and t.is_alive()}


class IntegrationContract:
    """Subclass and implement `run_agent` (and `arun_agent`); pytest collects the inherited tests.

    Class attributes tune the contract to a framework.
    """

    extra_calls_per_review: ClassVar[int] = 1
    """Model calls a review may add to the run (1 when the winning probe is reused as the step's
    response; 2 where the framework cannot reuse it).
    """
    modes: ClassVar[tuple[RunMode, ...]] = ("sync", "async")
    """The run modes the integration supports ("sync", "async"); tests in another mode are skipped."""
    guard_options: ClassVar[dict[str, Any]] = {}
    """Extra `Guard` keywords every contract guard gets (say, a `cooldown`)."""
    must_reduce_variant: ClassVar[bool] = False
    """True when `run_agent` supports ``variant="must_reduce"``."""
    conversations: ClassVar[int] = 3
    """How many conversations the concurrency test runs at once."""

    # ------------------------------------------------------------------ to implement

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        """Run the scripted agent to the end with the framework's sync API.

        Args:
            variant: Which agent to run (`Variant`).
            guard: The guard to wrap the compaction with ("guarded" and "must_reduce"); None for
                "plain" and "compacting".
            mode: "sync" (an older subclass may also take "async" here, driving its own loop).
            conversation: Which of several independent conversations to run (0, 1, 2, ...):
                vary the task text and the thread/session id by it.

        Returns:
            What the run left behind.

        Raises:
            NotImplementedError: The subclass does not implement it.
        """
        raise NotImplementedError("an IntegrationContract subclass must implement run_agent()")

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        """Run the scripted agent to the end with the framework's async API, on the running loop.

        Optional: without it, async runs go through ``run_agent(mode="async")``, and the tests
        that need several conversations in one loop are skipped.

        Args:
            variant: Which agent to run (`Variant`).
            guard: The guard to wrap the compaction with; None for "plain" and "compacting".
            conversation: Which of several independent conversations to run (0, 1, 2, ...).

        Returns:
            What the run left behind.

        Raises:
            NotImplementedError: The subclass does not implement it.
        """
        raise NotImplementedError("this IntegrationContract subclass does not implement arun_agent()")

    # ------------------------------------------------------------------ helpers

    def make_guard(self, scorer: Any, sink: RecordingSink, **options: Any) -> Guard:
        """The guard a contract test runs with: every review is scored (no identical shortcut).

        Args:
            scorer: The stand-in scorer (`ConstantScorer`, `FailingScorer`, `HashScorer`).
            sink: Collects the guard's decisions.
            **options: `Guard` keywords for this test; they win over `guard_options`.

        Returns:
            A new guard with ``identical_is_safe=False`` (unless `options` say otherwise).
        """
        settings = {"identical_is_safe": False, **self.guard_options, **options}
        return Guard(scorer, sinks=[sink], **settings)

    @pytest.fixture(params=["sync", "async"])
    def mode(self, request: pytest.FixtureRequest) -> RunMode:
        """The run mode of each test, once "sync" and once "async"; a mode not in `modes` is skipped."""
        if request.param not in self.modes:
            pytest.skip(f"this integration does not support {request.param} runs")
        mode: RunMode = request.param
        return mode

    def _has_arun(self) -> bool:
        return type(self).arun_agent is not IntegrationContract.arun_agent

    def _takes_conversation(self) -> bool:
        return "conversation" in inspect.signature(self.run_agent).parameters

    def _require_conversations(self, mode: RunMode) -> None:
        if mode == "sync" and not self._takes_conversation():
            pytest.skip("run_agent() does not accept conversation=: several conversations cannot be run")
        if mode == "async" and not self._has_arun():
            pytest.skip("arun_agent() is not implemented: conversations cannot share one event loop")

    def _checked(self, run: Any) -> AgentRun:
        if not isinstance(run, AgentRun):
            raise TypeError(f"run_agent() must return an AgentRun, got {type(run).__name__}")
        return run

    def _run(self, variant: Variant, guard: Guard | None, mode: RunMode, conversation: int = 0) -> AgentRun:
        if conversation:
            self._require_conversations(mode)
        if mode == "async" and self._has_arun():
            return self._checked(asyncio.run(self.arun_agent(variant, guard, conversation=conversation)))
        if conversation or self._takes_conversation():
            return self._checked(self.run_agent(variant, guard, mode=mode, conversation=conversation))
        return self._checked(self.run_agent(variant, guard, mode=mode))

    def _guarded(self, scorer: Any, run_mode: RunMode, *, variant: Variant = "guarded",
                 **options: Any) -> tuple[AgentRun, RecordingSink]:
        sink = RecordingSink()
        guard = self.make_guard(scorer, sink, **options)
        try:
            run = self._run(variant, guard, run_mode)
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

    @staticmethod
    def _need(run: AgentRun, field: str) -> Any:
        value = getattr(run, field)
        if value is None:
            pytest.skip(f"AgentRun.{field} is None: this integration's run_agent does not report it yet")
        return value

    # ------------------------------------------------------------------ the contract

    def test_the_fixture_compacts(self, mode: RunMode) -> None:
        """The compacting run ends unlike the plain one, or the other tests would prove nothing."""
        plain = self._run("plain", None, mode)
        compacting = self._run("compacting", None, mode)
        assert compacting.transcript != plain.transcript, (
            "the compacting run ends like the plain one: the fixture never compacts, so the contract proves nothing"
        )

    def test_runs_are_deterministic(self, mode: RunMode) -> None:
        """Two compacting runs end alike with as many model calls, so runs can be compared at all."""
        first = self._run("compacting", None, mode)
        second = self._run("compacting", None, mode)
        assert first.transcript == second.transcript
        assert first.model_calls == second.model_calls

    def test_safe_verdicts_end_like_the_unguarded_compaction(self, mode: RunMode) -> None:
        """A scorer that always says SAFE: every review commits, and the run ends like the unguarded
        compacting run, within `extra_calls_per_review` extra model calls per review."""
        compacting = self._run("compacting", None, mode)
        scorer = ConstantScorer(0.0)
        run, sink = self._guarded(scorer, mode)
        assert sink.reviews, "the guarded run reviewed no compaction"
        assert all(d.verdict is Verdict.COMMIT for d in sink.decisions), [d.verdict for d in sink.decisions]
        assert scorer.prompts, "the scorer was never consulted"
        assert run.transcript == compacting.transcript
        self._assert_call_budget(run, compacting, sink.reviews)

    def test_harmful_verdicts_end_like_a_run_that_never_compacts(self, mode: RunMode) -> None:
        """A scorer that always says HARMFUL: every decision vetoes, and the run ends like the plain
        run, within `extra_calls_per_review` extra model calls per review."""
        plain = self._run("plain", None, mode)
        run, sink = self._guarded(ConstantScorer(1.0), mode)
        assert sink.reviews, "the guarded run reviewed no compaction"
        assert all(d.verdict is Verdict.VETO for d in sink.decisions), [d.verdict for d in sink.decisions]
        assert all(d.p_harmful == 1.0 for d in sink.reviews)
        assert run.transcript == plain.transcript
        self._assert_call_budget(run, plain, sink.reviews)

    def test_audit_mode_ends_like_the_unguarded_compaction(self, mode: RunMode) -> None:
        """Audit mode, even with HARMFUL scores, ends like the unguarded compacting run and records
        every review, finished and scored."""
        compacting = self._run("compacting", None, mode)
        run, sink = self._guarded(ConstantScorer(1.0), mode, mode="audit")
        assert run.transcript == compacting.transcript
        assert sink.decisions, "audit mode recorded no decision"
        assert all(d.verdict is Verdict.AUDIT and not d.pending for d in sink.decisions)
        assert all(d.p_harmful == 1.0 for d in sink.decisions), [d.reasons for d in sink.decisions]

    def test_audit_adds_nothing_to_the_stream(self, mode: RunMode) -> None:
        """Audit probes never reach the run's stream (needs `AgentRun.streamed`)."""
        compacting = self._run("compacting", None, mode)
        streamed = self._need(compacting, "streamed")
        run, sink = self._guarded(ConstantScorer(1.0), mode, mode="audit")
        assert sink.decisions, "audit mode recorded no decision"
        assert run.streamed == streamed, "audit probes reached the run's stream"

    def test_audit_adds_nothing_to_the_usage(self, mode: RunMode) -> None:
        """Audit probes are not billed to the run's usage (needs `AgentRun.usage`)."""
        compacting = self._run("compacting", None, mode)
        usage = self._need(compacting, "usage")
        run, sink = self._guarded(ConstantScorer(1.0), mode, mode="audit")
        assert sink.decisions, "audit mode recorded no decision"
        assert run.usage == usage, "audit probes were billed to the run's usage"

    def test_audit_probes_are_requests_the_run_makes(self, mode: RunMode) -> None:
        """Audit probes send exactly the requests the run itself sends: settings, tools and tool_choice
        included (needs `AgentRun.requests`)."""
        compacting = self._run("compacting", None, mode)
        requests = self._need(compacting, "requests")
        run, sink = self._guarded(ConstantScorer(1.0), mode, mode="audit")
        assert sink.decisions, "audit mode recorded no decision"
        assert set(self._need(run, "requests")) == set(requests), (
            "audit probes sent requests the run itself never sends (settings, tools or tool_choice differ)")

    @pytest.mark.parametrize("on_error", ["open", "closed"])
    def test_scorer_failure_follows_on_error(self, mode: RunMode, on_error: str) -> None:
        """A failing scorer follows `on_error`: "open" ends like the compacting run, "closed" like the
        plain run, and each review records the error."""
        expected = self._run("compacting" if on_error == "open" else "plain", None, mode)
        run, sink = self._guarded(FailingScorer(), mode, on_error=on_error)
        assert sink.reviews and all(d.error for d in sink.reviews)
        assert run.transcript == expected.transcript

    def test_cooldown_skips_the_inner_compaction(self, mode: RunMode) -> None:
        """After a veto, steps skipped for the cooldown do not call the inner compaction at all (needs
        `AgentRun.compactions`)."""
        cooldown = max(int(self.guard_options.get("cooldown", 2)), 1)
        run, sink = self._guarded(ConstantScorer(1.0), mode, cooldown=cooldown)
        compactions = self._need(run, "compactions")
        skipped = [d for d in sink.decisions if d.skipped == "cooldown"]
        assert skipped, "no step was skipped for a cooldown: the fixture never re-proposes after a veto"
        reviews = [d for d in sink.decisions if d.reviewed]
        assert compactions == len(reviews), (
            f"the inner compaction ran {compactions} times for {len(reviews)} reviews: "
            f"it was called during the cooldown ({len(skipped)} skipped steps)")

    @pytest.mark.parametrize("p_harmful", [0.0, 1.0], ids=["safe", "harmful"])
    def test_probes_carry_the_run_settings(self, mode: RunMode, p_harmful: float) -> None:
        """Every request of a guarded run is one the unguarded runs also make: probes keep the run's
        settings and tools (needs `AgentRun.requests`)."""
        unguarded = self._need(self._run("compacting", None, mode), "requests")
        plain = self._need(self._run("plain", None, mode), "requests")
        run, sink = self._guarded(ConstantScorer(p_harmful), mode)
        assert sink.reviews, "the guarded run reviewed no compaction"
        foreign = [r for r in self._need(run, "requests") if r not in set(unguarded) | set(plain)]
        assert not foreign, f"probes sent requests the run never sends (settings dropped?): {foreign[:3]}"

    def test_concurrent_conversations_keep_their_decisions_apart(self, mode: RunMode) -> None:
        """Several conversations on one guard at once (threads for sync, tasks in one loop for async)
        end, and are decided, exactly as each does alone."""
        self._require_conversations(mode)
        count = self.conversations
        transcripts: list[Any] = []
        alone: list[Decision] = []
        for conversation in range(count):
            sink = RecordingSink()
            guard = self.make_guard(HashScorer(), sink)
            try:
                transcripts.append(self._run("guarded", guard, mode, conversation).transcript)
            finally:
                guard.close()
            alone.extend(sink.decisions)
        assert len({repr(t) for t in transcripts}) == count, "the conversations end alike: vary the task by them"
        sink = RecordingSink()
        guard = self.make_guard(HashScorer(), sink)
        try:
            runs = self._together(guard, mode, count)
        finally:
            guard.close()
        for conversation, (run, transcript) in enumerate(zip(runs, transcripts, strict=True)):
            assert run.transcript == transcript, f"conversation {conversation} ended differently beside the others"
        # Each conversation's decisions, in order, under its id(s), exactly as when it ran alone.
        assert _by_conversation(sink.decisions) == _by_conversation(alone), (
            "the decisions differ from the conversations' runs alone: their state was mixed up")

    def _together(self, guard: Guard, mode: RunMode, count: int) -> list[AgentRun]:
        if mode == "async":
            async def all_at_once() -> list[AgentRun]:
                return list(await asyncio.gather(*(self.arun_agent("guarded", guard, conversation=c)
                                                   for c in range(count))))

            return [self._checked(run) for run in asyncio.run(all_at_once())]
        results: list[Any] = [None] * count
        start = threading.Barrier(count)

        def one(conversation: int) -> None:
            start.wait(10)
            try:
                results[conversation] = self._run("guarded", guard, "sync", conversation)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                results[conversation] = exc

        threads = [threading.Thread(target=one, args=(c,)) for c in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [self._checked(run) for run in results]

    def _inside_the_loop(self, close: Callable[[Guard], Any]) -> tuple[list[Decision], float, Guard]:
        """Run the agent in audit mode inside a loop, then `close` the guard there; the loop's longest stall."""
        if "async" not in self.modes or not self._has_arun():
            pytest.skip("arun_agent() is not implemented: nothing runs inside an event loop")
        sink = RecordingSink()
        guard = self.make_guard(ConstantScorer(1.0), sink, mode="audit")

        async def closing() -> None:
            outcome = close(guard)
            if inspect.isawaitable(outcome):
                await outcome
            await asyncio.sleep(0.02)

        async def main() -> float:
            await self.arun_agent("guarded", guard)
            stall, _ = await longest_loop_stall(closing())
            await guard.aclose()  # after a sync close(): waits for the part it left in the background
            return stall

        stall = asyncio.run(main())
        return sink.decisions, stall, guard

    def _assert_all_written(self, decisions: list[Decision], guard: Guard) -> None:
        assert decisions, "audit mode recorded no decision"
        assert all(not d.pending and d.verdict is Verdict.AUDIT for d in decisions)
        stats = guard.stats()
        assert stats["audit_completed"] == len([d for d in decisions if d.reviewed]) == stats["audit_submitted"]

    def test_aclose_inside_the_running_loop_writes_every_decision(self) -> None:
        """``await guard.aclose()`` inside the running loop writes every audit decision (needs `arun_agent`)."""
        decisions, _, guard = self._inside_the_loop(lambda g: g.aclose())
        self._assert_all_written(decisions, guard)

    def test_sync_close_inside_the_running_loop_never_blocks_it(self) -> None:
        """A sync ``guard.close()`` inside the running loop stalls it for under 2 s, and every audit
        decision is still written (needs `arun_agent`)."""
        decisions, stall, guard = self._inside_the_loop(lambda g: g.close())
        assert stall < 2.0, f"Guard.close() blocked the event loop for {stall:.1f} s"
        self._assert_all_written(decisions, guard)

    def test_a_guard_dropped_unclosed_leaves_no_thread(self, mode: RunMode) -> None:
        """A guard dropped without closing leaves no audit thread behind: nothing the integration keeps
        holds on to the guard."""
        gc.collect()
        before = _audit_threads()
        sink = RecordingSink()
        guard = self.make_guard(ConstantScorer(1.0), sink, mode="audit")
        run = self._run("guarded", guard, mode)
        assert guard.flush(30.0), "audit work did not finish within 30 s"
        assert sink.decisions, "audit mode recorded no decision"
        del guard, run
        deadline = time.monotonic() + 10
        while _audit_threads() - before and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert not _audit_threads() - before, (
            "the guard's audit thread outlived the guard: something the integration keeps holds the guard")

    def test_must_reduce_never_vetoes(self, mode: RunMode) -> None:
        """A run that must shrink its context is never vetoed, even with HARMFUL scores (needs
        `must_reduce_variant`)."""
        if not self.must_reduce_variant:
            pytest.skip("must_reduce_variant is False: run_agent does not support variant='must_reduce'")
        run, sink = self._guarded(ConstantScorer(1.0), mode, variant="must_reduce")
        assert sink.reviews, "the must-reduce run reviewed no compaction"
        vetoed = [d for d in sink.decisions if d.verdict is Verdict.VETO]
        assert not vetoed, f"a must-reduce review vetoed: {[d.reasons for d in vetoed][:2]}"
        assert run.transcript is not None
