"""MemGuardCompaction on Pydantic AI's core compaction hook, `compact_history` (pydantic-ai-slim 2.78+).

SAFE answers with the inner capability's very `CompactionResult`, HARMFUL with `None` (never
compacted), a context overflow must reduce, fallbacks are valid `CompactionResult`s, a cooling
conversation never asks the inner capability, an encrypted native compaction is never vetoed, and
`Agent.compact_history()` runs are reviewed too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from memguard import Guard, ObservationMasking, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from pai_doubles import FACT, TASK, ActionScorer, ScriptedModel, make_agent, transcript

pytest.importorskip("pydantic_ai.capabilities.compaction", reason="needs pydantic-ai-slim 2.78+ (compact_history)")

from pydantic_ai.capabilities.compaction import CompactionRequest, CompactionResult
from pydantic_ai.messages import CompactionPart, ModelRequest
from pydantic_ai.tools import RunContext

from pai_history import EncryptedCompaction, Overflowing, SummarizeHistory, parts_of
from pydantic_ai_memguard import MemGuardCompaction
from test_pai_contract import KeepTaskAndLastStep

pytestmark = pytest.mark.compact_history

PROPOSAL = "summarize_history"  # the strategy name MemRM sees for SummarizeHistory()


class KeepTheFact(SummarizeHistory):
    """A fallback of the same kind whose summary keeps FACT."""

    async def compact_history(self, ctx: RunContext[None], request: CompactionRequest) -> CompactionResult | None:
        self.requests.append(request)
        summary = CompactionPart(content=f"Task: {TASK} Found so far: {FACT}.")
        result = CompactionResult(messages=[ModelRequest(parts=[summary]), *request.messages[-2:]],
                                  part=summary, handler="keep-the-fact")
        self.results.append(result)
        return result


def guarded(scorer: Any, inner: Any = None, *, model: ScriptedModel | None = None, fallbacks: Any = (),
            **guard_options: Any) -> tuple[Any, ScriptedModel, Any, RecordingSink]:
    model = model or ScriptedModel()
    inner = inner if inner is not None else SummarizeHistory()
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], **{"identical_is_safe": False, **guard_options})
    try:
        result = make_agent(model, [MemGuardCompaction(inner, guard, fallbacks=fallbacks)]).run_sync(TASK)
        assert guard.flush(30.0)
    finally:
        guard.close()
    return result, model, inner, sink


def unguarded(capabilities: list[Any], model: ScriptedModel | None = None) -> tuple[Any, ScriptedModel]:
    model = model or ScriptedModel()
    return make_agent(model, capabilities).run_sync(TASK), model


def test_the_wrapper_handles_compaction_requests_only_when_its_inner_does():
    guard = Guard(ConstantScorer(0.0))
    assert MemGuardCompaction(SummarizeHistory(), guard)._has_compact_history
    assert not MemGuardCompaction(KeepTaskAndLastStep(), guard)._has_compact_history


def test_safe_answers_with_the_inner_result_itself():
    compacting, compacting_model = unguarded([SummarizeHistory()])
    result, model, inner, sink = guarded(ConstantScorer(0.0))
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.decisions)
    assert [record.part for record in result.compactions] == [r.part for r in inner.results]
    assert all(record.part is r.part for record, r in zip(result.compactions, inner.results, strict=True))
    assert model.calls == compacting_model.calls + len(sink.reviews)  # the compacted probe answered the step


def test_harmful_never_compacts_and_cooldown_never_asks_the_inner():
    plain, plain_model = unguarded([])
    result, model, inner, sink = guarded(ConstantScorer(1.0), cooldown=2)
    assert transcript(result.all_messages()) == transcript(plain.all_messages())
    assert result.compactions == []
    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.decisions)
    assert len(sink.decisions) > len(sink.reviews)  # the trigger asked again while cooling down...
    assert inner.calls == len(sink.reviews)  # ...and the inner summarizer was not called for it
    assert model.calls == plain_model.calls + len(sink.reviews)  # the full-context probe answered the step


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_context_overflow_must_reduce_whatever_the_verdict(on_error):
    compacting, compacting_model = unguarded([SummarizeHistory(max_messages=None)], Overflowing())
    result, model, _, sink = guarded(ConstantScorer(1.0), SummarizeHistory(max_messages=None), model=Overflowing(),
                                     on_error=on_error)
    assert compacting.compactions and {c.reason for c in compacting.compactions} == {"context_overflow"}
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert sink.reviews and all(d.verdict in (Verdict.COMMIT, Verdict.FORCED) for d in sink.decisions)
    assert all("context window" in (d.error or "") for d in sink.reviews)  # the refused context was not re-sent
    assert model.calls == compacting_model.calls  # the compacted probe answered the retried request


def test_a_fallback_with_compact_history_gets_the_same_request_and_its_result_is_used():
    fallback = KeepTheFact()
    scorer = ActionScorer(by_strategy={PROPOSAL: 0.9, "keep_the_fact": 0.1})
    result, _, inner, sink = guarded(scorer, fallbacks=[fallback], cooldown=0)
    assert result.output == f"done, the fact is {FACT}"
    assert sink.reviews and {d.verdict for d in sink.reviews} == {Verdict.FALLBACK}
    assert all(a is b for a, b in zip(fallback.requests, inner.requests, strict=False)) and fallback.requests
    kept = {id(r.part) for r in fallback.results}
    assert result.compactions and all(id(record.part) in kept for record in result.compactions)


def mask_all_but_the_fact(messages: list[Any]) -> list[Any]:
    """A memguard strategy: masks every tool output but the one holding FACT and the latest."""
    last = max(i for i, m in enumerate(messages) if m.role == "tool")
    return [m.model_copy(update={"content": "<MASKED>"}) if m.role == "tool" and FACT not in m.text() and i != last
            else m for i, m in enumerate(messages)]


@pytest.mark.parametrize("strategy", [mask_all_but_the_fact, ObservationMasking(keep_last=1)],
                         ids=["function", "observation_masking"])
def test_a_memguard_strategy_fallback_is_a_valid_compaction_result(strategy):
    name = getattr(strategy, "name", getattr(strategy, "__name__", ""))
    scorer = ActionScorer(by_strategy={PROPOSAL: 0.9, name: 0.1})
    result, _, _, sink = guarded(scorer, fallbacks=[strategy], cooldown=0)
    assert sink.reviews and {d.verdict for d in sink.reviews} == {Verdict.FALLBACK}
    assert result.compactions and {c.handler for c in result.compactions} == {f"memguard:{name}"}
    summaries = [p.content for p in parts_of(result.all_messages()) if isinstance(p, CompactionPart)]
    assert summaries and all(name in text for text in summaries)  # memguard's own compaction part
    assert any(getattr(p, "content", None) == TASK for p in parts_of(result.all_messages()))  # the task kept
    if strategy is mask_all_but_the_fact:
        assert result.output == f"done, the fact is {FACT}"


def test_an_encrypted_native_compaction_is_audited_never_vetoed_by_an_enforcing_guard():
    compacting, _ = unguarded([EncryptedCompaction()])
    result, _, _, sink = guarded(ConstantScorer(1.0), EncryptedCompaction())
    assert transcript(result.all_messages()) == transcript(compacting.all_messages())
    assert [c.handler for c in result.compactions] == [c.handler for c in compacting.compactions]
    assert result.usage == compacting.usage  # the audit probes are not billed
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.p_harmful == 1.0 for d in sink.decisions)


def test_an_encrypted_native_compaction_is_audited_in_audit_mode():
    result, _, _, sink = guarded(ConstantScorer(0.7), EncryptedCompaction(), mode="audit")
    assert result.compactions
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.p_harmful == 0.7 for d in sink.decisions)


@pytest.mark.parametrize(("p_harmful", "compacted"), [(0.0, True), (1.0, False)])
def test_an_agent_compact_history_run_is_reviewed(p_harmful, compacted):
    history = make_agent(ScriptedModel(n_steps=3)).run_sync(TASK).all_messages()
    model, inner, sink = ScriptedModel(), SummarizeHistory(), RecordingSink()
    guard = Guard(ConstantScorer(p_harmful), sinks=[sink], identical_is_safe=False)
    agent = make_agent(model, [MemGuardCompaction(inner, guard)])
    result = asyncio.run(agent.compact_history(history))
    guard.close()
    assert len(sink.reviews) == 1 and inner.calls == 1
    assert bool(result.compactions) is compacted
    assert (len(result.all_messages()) < len(history)) is compacted
    assert model.calls == 2 and result.usage.requests == 2  # nothing follows to reuse a probe: both are billed
