"""`MemGuardCompaction` on a real `Agent`: identity after every call, the model requests, usage, the
must-reduce path, what is forwarded to the framework, fallbacks, `CompactionProvider`, `guard_agent`."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import agent_framework
import pytest
from agent_framework import (
    CharacterEstimatorTokenizer,
    ChatContext,
    ChatMiddleware,
    CompactionProvider,
    ContextWindowCompactionStrategy,
    InMemoryHistoryProvider,
    Message,
    SlidingWindowStrategy,
    SummarizationStrategy,
    TokenBudgetComposedStrategy,
    ToolResultCompactionStrategy,
)
from agent_framework._compaction import EXCLUDE_REASON_KEY, EXCLUDED_KEY
from memguard import OPENING_MESSAGES, Decision, Guard, ObservationMasking, Verdict
from memguard.protocol import render_turns
from memguard.testing.contract import ConstantScorer, RecordingSink

from agent_framework_memguard import MemGuardCompaction, compaction, guard_agent
from agent_framework_memguard.views import to_view
from maf_doubles import (
    INSTRUCTIONS,
    OPTIONS,
    TASK,
    ScriptedChatClient,
    StrategyScorer,
    SummarizerClient,
    history,
    make_agent,
    transcript,
)

# Agent-triggered compaction and skill unloading arrived in agent-framework-core 1.26 (experimental).
AgentTriggeredCompactionStrategy: Any = getattr(agent_framework, "AgentTriggeredCompactionStrategy", None)
UnloadSkillsCompactionStrategy: Any = getattr(agent_framework, "UnloadSkillsCompactionStrategy", None)
needs_triggers = pytest.mark.skipif(AgentTriggeredCompactionStrategy is None,
                                    reason="agent-framework-core < 1.26 has no agent-triggered compaction")


def make_guard(scorer: Any, **options: Any) -> tuple[Guard, RecordingSink]:
    sink = RecordingSink()
    return Guard(scorer, sinks=[sink], identical_is_safe=False, **options), sink


async def run(agent: Any, *, stream: bool = False, session_id: str = "s1") -> tuple[str, Any]:
    session = agent.create_session(session_id=session_id)
    if stream:
        response_stream = agent.run(TASK, session=session, stream=True)
        async for _ in response_stream:
            pass
        response = await response_stream.get_final_response()
    else:
        response = await agent.run(TASK, session=session)
    return response.text, session


class Identity(ChatMiddleware):
    """Placed before the guard: checks that after each call the list holds the same objects, unflagged."""

    def __init__(self) -> None:
        self.calls = 0

    async def process(self, context: ChatContext, call_next: Callable[[], Awaitable[None]]) -> None:
        listed = context.messages
        objects = list(listed)
        await call_next()
        self.calls += 1
        assert context.messages is listed and len(listed) == len(objects)
        assert all(a is b for a, b in zip(listed, objects, strict=True)), "a veto must keep the agent's own objects"
        assert not any(m.additional_properties.get(EXCLUDED_KEY) for m in listed)


async def test_a_veto_keeps_the_original_objects_after_every_call() -> None:
    guard, sink = make_guard(ConstantScorer(1.0), cooldown=0)
    client = ScriptedChatClient()
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    watch = Identity()
    text, session = await run(make_agent(client, compaction=guarded, middleware=[watch, guarded]))
    plain_client = ScriptedChatClient()
    plain_text, plain_session = await run(make_agent(plain_client))
    assert watch.calls == 7 and len(sink.reviews) == 5 and all(d.verdict is Verdict.VETO for d in sink.decisions)
    assert (text, transcript(history(session))) == (plain_text, transcript(history(plain_session)))


async def test_safe_sends_the_compacting_runs_requests_plus_one_probe_per_review() -> None:
    compacting = ScriptedChatClient()
    await run(make_agent(compacting, compaction=SlidingWindowStrategy(keep_last_groups=2)))
    guard, sink = make_guard(ConstantScorer(0.0))
    client = ScriptedChatClient()
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    await run(make_agent(client, compaction=guarded, middleware=[guarded]))

    def sent(c: ScriptedChatClient) -> list[Any]:
        return [(sig, transcript(inputs)) for sig, inputs in zip(c.requests, c.inputs, strict=True)]

    remaining = sent(client)
    for request in sent(compacting):  # every request of the unguarded run, in order, among the guarded ones
        remaining = remaining[remaining.index(request) + 1:]
    assert client.calls == compacting.calls + len(sink.reviews) and len(sink.reviews) == 5
    assert set(client.requests) == set(compacting.requests)  # probes carry the run's settings
    assert all(("temperature", "0.25") in sig[1] and ("max_tokens", "321") in sig[1] for sig in client.requests)


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_counts_every_request_the_provider_billed(stream: bool) -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    client = ScriptedChatClient()
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    agent = make_agent(client, compaction=guarded, middleware=[guarded])
    session = agent.create_session()
    if stream:
        response_stream = agent.run(TASK, session=session, stream=True)
        async for _ in response_stream:
            pass
        response = await response_stream.get_final_response()
    else:
        response = await agent.run(TASK, session=session)
    billed = sum(10 * len(inputs) for inputs in client.inputs)
    assert response.usage_details is not None and response.usage_details["input_token_count"] == billed


async def test_the_conversation_id_is_the_session_unless_given() -> None:
    guard, sink = make_guard(ConstantScorer(0.0))
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]), session_id="ticket-7")
    named = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard, conversation_id="mine")
    await run(make_agent(ScriptedChatClient(), compaction=named, middleware=[named]), session_id="ticket-8")
    assert {d.conversation_id for d in sink.decisions} == {"ticket-7", "mine"}


# ---------------------------------------------------------------------- must reduce


def over_budget() -> ContextWindowCompactionStrategy:
    return ContextWindowCompactionStrategy(max_context_window_tokens=400, max_output_tokens=100,
                                           tool_eviction_threshold=1.0, truncation_threshold=1.0,
                                           keep_last_tool_call_groups=1)


async def test_a_context_over_the_input_budget_is_compacted_whatever_the_score() -> None:
    compacting = ScriptedChatClient()
    expected = await run(make_agent(compacting, compaction=over_budget()))
    guard, sink = make_guard(ConstantScorer(1.0))
    guarded = MemGuardCompaction(over_budget(), guard)
    assert guarded.input_budget is not None and guarded.input_budget.tokens == 300
    text, session = await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]))
    verdicts = [d.verdict for d in sink.decisions]
    assert sink.reviews and all(v is Verdict.FORCED for v in verdicts), verdicts
    assert all(d.p_harmful == 1.0 for d in sink.decisions)
    assert (text, transcript(history(session))) == (expected[0], transcript(history(expected[1])))


async def test_the_budget_is_checked_during_a_cooldown() -> None:
    # The sliding window proposes from the third call on (269 tokens, under the budget: vetoed, a
    # cooldown starts); from the fourth (385 tokens) the context is over the budget.
    guard, sink = make_guard(ConstantScorer(1.0), cooldown=10)
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard, input_budget_tokens=300)
    await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]))
    verdicts = [d.verdict for d in sink.decisions]
    assert verdicts[0] is Verdict.VETO and Verdict.FORCED in verdicts, verdicts
    first_forced = next(d for d in sink.decisions if d.verdict is Verdict.FORCED)
    assert first_forced.step - sink.decisions[0].step <= 10  # inside the cooldown, still reviewed
    assert MemGuardCompaction(over_budget(), guard, input_budget_tokens=None).input_budget is None


@pytest.mark.filterwarnings("ignore:.*is experimental")
def test_the_budget_is_found_through_wrapping_strategies() -> None:
    guard, _ = make_guard(ConstantScorer(1.0))
    composed = TokenBudgetComposedStrategy(token_budget=10_000, tokenizer=CharacterEstimatorTokenizer(),
                                           strategies=[SlidingWindowStrategy(keep_last_groups=3), over_budget()])
    assert MemGuardCompaction(composed, guard).input_budget.tokens == 300  # type: ignore[union-attr]
    if AgentTriggeredCompactionStrategy is not None:
        triggered = AgentTriggeredCompactionStrategy(over_budget())
        assert MemGuardCompaction(triggered, guard).input_budget.tokens == 300  # type: ignore[union-attr]
    assert MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=3), guard).input_budget is None


# ---------------------------------------------------------------------- forwarding


def test_tokenizer_and_client_managed_history_are_forwarded() -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    tokenizer = CharacterEstimatorTokenizer()
    window = ContextWindowCompactionStrategy(max_context_window_tokens=1000, max_output_tokens=10, tokenizer=tokenizer)
    assert MemGuardCompaction(window, guard).tokenizer is tokenizer
    assert MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard).tokenizer is None
    assert MemGuardCompaction(window, guard).requires_client_managed_history is False

    class ClientManaged:
        requires_client_managed_history = True

        async def __call__(self, messages: list[Message]) -> bool:
            return False

    assert MemGuardCompaction(ClientManaged(), guard).requires_client_managed_history is True


@needs_triggers
@pytest.mark.filterwarnings("ignore:.*is experimental")
def test_agent_triggered_compaction_needs_client_managed_history() -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    triggered = AgentTriggeredCompactionStrategy(SlidingWindowStrategy(keep_last_groups=2))
    assert MemGuardCompaction(triggered, guard).requires_client_managed_history is True


@needs_triggers
@pytest.mark.filterwarnings("ignore:.*is experimental")
def test_create_trigger_tool_exists_only_when_the_inner_has_it() -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    plain = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    assert not hasattr(plain, "create_trigger_tool")
    unload = MemGuardCompaction(UnloadSkillsCompactionStrategy(), guard)
    assert unload.create_trigger_tool().name == "unload_skill"
    # AgentTriggeredCompactionStrategy asks the strategy it wraps for its trigger tool
    assert AgentTriggeredCompactionStrategy(unload).tool.name == "unload_skill"
    assert AgentTriggeredCompactionStrategy(plain).tool.name == "compact_context"


# ---------------------------------------------------------------------- fallbacks


async def test_a_framework_strategy_fallback_stands_in_for_a_harmful_proposal() -> None:
    expected_client = ScriptedChatClient()
    expected = await run(make_agent(expected_client, compaction=ToolResultCompactionStrategy()))
    guard, sink = make_guard(StrategyScorer({"sliding_window": 0.97, "tool_result": 0.03}))
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard,
                                 fallbacks=[ToolResultCompactionStrategy()])
    client = ScriptedChatClient()
    text, session = await run(make_agent(client, compaction=guarded, middleware=[guarded]))
    assert sink.reviews and all(d.verdict is Verdict.FALLBACK and d.strategy == "tool_result"
                                for d in sink.decisions), [(d.verdict, d.strategy) for d in sink.decisions]
    assert (text, transcript(history(session))) == (expected[0], transcript(history(expected[1])))
    assert client.calls == expected_client.calls + 2 * len(sink.reviews)  # the fallback's probe answers the step


async def test_a_memguard_strategy_fallback_masks_without_deleting() -> None:
    guard, sink = make_guard(StrategyScorer({"sliding_window": 0.97, "observation_masking": 0.03}))
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard,
                                 fallbacks=[ObservationMasking(keep_last=1)])
    client = ScriptedChatClient()
    _, session = await run(make_agent(client, compaction=guarded, middleware=[guarded]))
    assert any(d.verdict is Verdict.FALLBACK and d.strategy == "observation_masking" for d in sink.decisions)
    stored = history(session)
    masked = [m for m in stored if any(c.type == "function_result" and c.result == "<MASKED>" for c in m.contents)]
    hidden = [m for m in stored if m.additional_properties.get(EXCLUDE_REASON_KEY) == "memguard_observation_masking"]
    assert masked and hidden and all(m.additional_properties.get(EXCLUDED_KEY) for m in hidden)
    assert any("FACT-42" in str(c.result) for m in hidden for c in m.contents)  # the original is still there
    last_input = client.inputs[-1]
    assert any(c.result == "<MASKED>" for m in last_input for c in m.contents if c.type == "function_result")


# ---------------------------------------------------------------------- without a recorded request


async def test_without_the_middleware_or_a_client_the_error_says_what_to_do() -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    with pytest.raises(RuntimeError, match=r"middleware.*client= and options="):
        await run(make_agent(ScriptedChatClient(), compaction=guarded))


async def test_a_compaction_provider_probes_through_the_given_client() -> None:
    guard, sink = make_guard(ConstantScorer(1.0))
    probe_client = ScriptedChatClient()
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=1), guard, client=probe_client,
                                 options={**OPTIONS, "instructions": "probe"})
    history_provider = InMemoryHistoryProvider()
    provider = CompactionProvider(after_strategy=guarded, history_source_id=history_provider.source_id)
    agent = make_agent(ScriptedChatClient(), context_providers=[history_provider, provider])
    session = agent.create_session()
    await agent.run(TASK, session=session)  # after_run compacts what the earlier turns stored
    response = await agent.run("And again.", session=session)
    assert "the fact is FACT-42" in response.text
    assert len(sink.reviews) == 1 and sink.decisions[0].verdict is Verdict.VETO
    assert probe_client.calls == 2 and not any(m.additional_properties.get(EXCLUDED_KEY) for m in history(session))
    assert all(("instructions", "'probe'") in sig[1] for sig in probe_client.requests)


# ---------------------------------------------------------------------- the rest


async def test_guard_agent_wires_strategy_and_middleware() -> None:
    guard, sink = make_guard(ConstantScorer(0.0))
    decisions: list[Decision] = []
    agent = make_agent(ScriptedChatClient(), compaction=SlidingWindowStrategy(keep_last_groups=2))
    guarded = guard_agent(agent, guard, on_decision=decisions.append)
    assert agent.compaction_strategy is guarded and agent.middleware[-1] is guarded
    await run(agent)
    assert sink.reviews and decisions == sink.decisions and guarded.last_decision is decisions[-1]
    with pytest.raises(ValueError, match="already guarded"):
        guard_agent(agent, guard)
    with pytest.raises(ValueError, match="no compaction_strategy"):
        guard_agent(make_agent(ScriptedChatClient()), guard)


class Broken:
    async def __call__(self, messages: list[Message]) -> bool:
        messages[0].additional_properties[EXCLUDED_KEY] = True
        raise RuntimeError("boom")


async def test_a_failing_compaction_keeps_the_full_context_and_is_recorded() -> None:
    guard, sink = make_guard(ConstantScorer(0.0))
    guarded = MemGuardCompaction(Broken(), guard)
    plain = await run(make_agent(ScriptedChatClient()))
    text, session = await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]))
    assert (text, transcript(history(session))) == (plain[0], transcript(history(plain[1])))
    assert sink.decisions and all(d.error == "compaction failed: RuntimeError" for d in sink.decisions)
    assert guard.stats()["compaction_failures"] == len(sink.decisions)


def test_bad_arguments_are_refused() -> None:
    guard, _ = make_guard(ConstantScorer(0.0))
    with pytest.raises(TypeError, match="memguard.Guard"):
        MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compaction strategy"):
        MemGuardCompaction(42, guard)
    with pytest.raises(ValueError, match="input_budget_tokens"):
        MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard, input_budget_tokens=-1)
    copy.copy(MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard))  # no __getattr__ recursion


@pytest.mark.parametrize("stream", [False, True])
async def test_audit_observes_the_real_call_and_probes_only_the_full_context(stream: bool) -> None:
    compacting = ScriptedChatClient()
    expected_text, expected_session = await run(
        make_agent(compacting, compaction=SlidingWindowStrategy(keep_last_groups=2)), stream=stream)
    guard, sink = make_guard(ConstantScorer(1.0), mode="audit")
    client = ScriptedChatClient()
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    agent = make_agent(client, compaction=guarded, middleware=[guarded])
    session = agent.create_session(session_id="s1")
    if stream:
        response_stream = agent.run(TASK, session=session, stream=True)
        async for _ in response_stream:
            pass
        response = await response_stream.get_final_response()
    else:
        response = await agent.run(TASK, session=session)
    assert await guard.aflush(30.0)  # the audit probes run on this loop meanwhile
    assert (response.text, transcript(history(session))) == (expected_text, transcript(history(expected_session)))
    assert len(sink.decisions) == 5 and all(d.verdict is Verdict.AUDIT and d.p_harmful == 1.0 for d in sink.decisions)
    assert client.calls == compacting.calls + len(sink.decisions)  # one probe each: the full context
    assert set(client.requests) == set(compacting.requests)
    billed = sum(10 * len(inputs) for inputs in compacting.inputs)  # the run's usage: its own calls only
    assert response.usage_details is not None and response.usage_details["input_token_count"] == billed


class ViewSpy:
    """Wraps the guard's `to_view`: which thread converted how many messages."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[threading.Thread, int]] = []
        self._real = compaction.to_view
        monkeypatch.setattr(compaction, "to_view", self)

    def __call__(self, messages: Any, instructions: Any = None) -> list[Any]:
        self.calls.append((threading.current_thread(), len(messages)))
        return self._real(messages, instructions)

    def on(self, thread: threading.Thread) -> list[int]:
        return [n for t, n in self.calls if t is thread]


@pytest.mark.parametrize("stream", [False, True])
async def test_audit_converts_no_message_on_the_agent_s_path(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    compacting = ScriptedChatClient()
    await run(make_agent(compacting, compaction=SlidingWindowStrategy(keep_last_groups=2)), stream=stream)
    spy = ViewSpy(monkeypatch)
    scorer = ConstantScorer(0.7)
    guard, sink = make_guard(scorer, mode="audit")
    guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
    client = ScriptedChatClient()
    await run(make_agent(client, compaction=guarded, middleware=[guarded]), stream=stream)
    assert spy.on(threading.current_thread()) == []  # the agent's path converted nothing
    assert await guard.aflush(30.0)
    assert spy.calls and all(t.name == "memguard-audit" for t, _ in spy.calls)
    # What the worker built is what the model was sent (the candidate) and the full context (probed, scored).
    compacted = [to_view(inputs, INSTRUCTIONS) for inputs in compacting.inputs[2:]]
    assert len(sink.decisions) == len(compacted) == 5
    assert [[m.model_dump() for m in d.messages] for d in sink.decisions] == [
        [m.model_dump() for m in view] for view in compacted]
    assert all(d.verdict is Verdict.AUDIT and d.p_harmful == pytest.approx(0.7) for d in sink.decisions)
    # The scored context is the full one the probe sent (the audit client's calls the unguarded run never made).
    shown = Counter(render_turns(to_view(inputs, INSTRUCTIONS)) for inputs in client.inputs)
    probed = shown - Counter(render_turns(to_view(inputs, INSTRUCTIONS)) for inputs in compacting.inputs)
    scored = Counter(prompt.split("\n\n[User]\nRecorded action at step")[0] for prompt in scorer.prompts)
    assert scored == probed and sum(probed.values()) == 5


async def test_audit_without_a_session_reads_only_the_opening_on_the_agent_s_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_unnamed(guard: Guard) -> None:  # no session: the guard derives the conversation's id
        guarded = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=5), guard)
        await make_agent(ScriptedChatClient(n_steps=9), compaction=guarded, middleware=[guarded]).run(TASK)

    enforced, enforced_sink = make_guard(ConstantScorer(0.0))  # commits: the unguarded compaction's run
    await run_unnamed(enforced)
    spy = ViewSpy(monkeypatch)
    guard, sink = make_guard(ConstantScorer(0.0), mode="audit")
    await run_unnamed(guard)
    assert await guard.aflush(30.0)
    on_agent = spy.on(threading.current_thread())
    assert on_agent and max(on_agent) <= OPENING_MESSAGES  # contexts of up to 13 messages: only their opening
    assert max(n for _, n in spy.calls) > OPENING_MESSAGES
    # the ids the guard derives from that opening are those it derives from the full context
    assert [d.conversation_id for d in sink.decisions] == [d.conversation_id for d in enforced_sink.decisions]
    assert len(sink.decisions) >= 4 and all(d.conversation_id.startswith("auto-") for d in sink.decisions)


async def test_concurrent_conversations_on_one_guard_keep_their_decisions_and_answers_apart() -> None:
    async def one(guard: Guard, k: int, shared: MemGuardCompaction | None) -> tuple[Any, ...]:
        client = ScriptedChatClient(task=f"{TASK} #{k}")
        guarded = shared or MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)
        agent = make_agent(client, compaction=guarded, middleware=[guarded])
        session = agent.create_session(session_id=f"c{k}")
        response = await agent.run(f"{TASK} #{k}", session=session)
        return response.text, transcript(history(session)), client.calls

    scorer = StrategyScorer({}, default=1.0)
    alone = []
    for k in range(3):
        guard, _ = make_guard(scorer)
        alone.append(await one(guard, k, None))
    guard, sink = make_guard(scorer)
    shared = MemGuardCompaction(SlidingWindowStrategy(keep_last_groups=2), guard)  # one instance for all
    together = await asyncio.gather(*(one(guard, k, shared) for k in range(3)))
    assert list(together) == alone
    assert {d.conversation_id for d in sink.decisions} == {"c0", "c1", "c2"}
    assert all(d.verdict is Verdict.VETO for d in sink.decisions)


class Bookkeeping:
    """Changes an annotation only: the model is sent the same messages."""

    async def __call__(self, messages: list[Message]) -> bool:
        messages[-1].additional_properties["note"] = "seen"
        return True


@pytest.mark.parametrize("mode", ["enforce", "audit"])
async def test_a_change_the_model_cannot_see_is_not_reviewed(mode: str) -> None:
    guard, sink = make_guard(ConstantScorer(1.0), mode=mode)
    guarded = MemGuardCompaction(Bookkeeping(), guard)
    client = ScriptedChatClient()
    _, session = await run(make_agent(client, compaction=guarded, middleware=[guarded]))
    assert not sink.decisions and client.calls == 7
    assert history(session)[-2].additional_properties["note"] == "seen"


async def test_memrm_reads_an_earlier_summary_as_a_summary_turn() -> None:
    scorer = ConstantScorer(0.0)
    guard, sink = make_guard(scorer)
    summarizer = SummarizerClient()
    guarded = MemGuardCompaction(SummarizationStrategy(client=summarizer, target_count=2, threshold=1), guard)
    await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]))
    assert len(sink.reviews) >= 2 and summarizer.calls == len(sink.reviews)
    assert "[User]\n[Summary] Ran steps [1]; found a fact." in scorer.prompts[-1]
    assert scorer.prompts[-1].startswith("[System]\nYou are a careful programmer.")


class Counting:
    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.calls = 0

    async def __call__(self, messages: list[Message]) -> bool:
        self.calls += 1
        changed: bool = await self.strategy(messages)
        return changed


async def test_a_cooldown_does_not_call_the_inner_strategy() -> None:
    guard, sink = make_guard(ConstantScorer(1.0), cooldown=3)
    inner = Counting(SlidingWindowStrategy(keep_last_groups=2))
    guarded = MemGuardCompaction(inner, guard)
    client = ScriptedChatClient()
    await run(make_agent(client, compaction=guarded, middleware=[guarded]))
    skipped = [d for d in sink.decisions if not d.reviewed]
    assert [d.step for d in sink.reviews] == [2, 6] and [d.step for d in skipped] == [3, 4, 5]
    assert inner.calls == 7 - len(skipped)  # one per model call, none during the cooldown
    assert guard.stats()["cooldown_skips"] == 3


async def test_in_audit_mode_a_failing_compaction_fails_the_run_as_it_would_unguarded() -> None:
    guard, sink = make_guard(ConstantScorer(0.0), mode="audit")
    guarded = MemGuardCompaction(Broken(), guard)
    with pytest.raises(RuntimeError, match="boom"):
        await run(make_agent(ScriptedChatClient(), compaction=guarded, middleware=[guarded]))
    assert [d.error for d in sink.decisions] == ["compaction failed: RuntimeError"]
