"""MemGuardInputFilter on a real Runner: costs, fallbacks, cooldown per conversation, streaming, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.run import CallModelData, ModelInputData
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from oa_agent import (
    FACT,
    FORGETFUL,
    INSTRUCTIONS,
    TURNS,
    ActionScorer,
    lookup,
    make_agent,
    normalise,
    run_turns,
    scripted_model,
    trimmer,
)
from openai_agents_memguard import MemGuardInputFilter, MemGuardModel, filter_name


def guard_with(scorer: Any, **options: Any) -> tuple[Guard, RecordingSink]:
    sink = RecordingSink()
    return Guard(scorer, sinks=[sink], **options), sink


def compacting_run(mode: str = "sync") -> tuple[list[Any], int]:
    model = scripted_model()
    history = run_turns(make_agent(model), RunConfig(tracing_disabled=True, call_model_input_filter=trimmer()),
                        mode=mode)
    return normalise(history), len(model.calls)


@pytest.mark.parametrize("wrapped, extra", [(True, 1), (False, 2)])
def test_a_review_costs_one_extra_model_call_with_the_wrapped_model_and_two_without(wrapped, extra):
    transcript, calls = compacting_run()
    guard, sink = guard_with(ConstantScorer(0.0), identical_is_safe=False)
    model = scripted_model()
    guarded = MemGuardInputFilter(trimmer(), guard)
    agent = make_agent(guarded.wrap_model(model) if wrapped else model)
    history = run_turns(agent, RunConfig(tracing_disabled=True, call_model_input_filter=guarded), mode="sync")
    assert normalise(history) == transcript
    reviews = len(sink.reviews)
    assert reviews == 4  # every call from turn 2 on trims the first report
    assert len(model.calls) == calls + extra * reviews
    assert guarded.store.hits == (reviews if wrapped else 0)


def test_calls_whose_input_the_filter_leaves_alone_are_not_reviewed():
    guard, sink = guard_with(ConstantScorer(0.0))
    guarded = MemGuardInputFilter(trimmer(), guard)
    model = scripted_model()
    run_turns(make_agent(guarded.wrap_model(model)), RunConfig(call_model_input_filter=guarded), mode="sync",
              turns=TURNS[:1])
    assert sink.decisions == [] and len(model.calls) == 2


def keep_facts(data: CallModelData[Any]) -> ModelInputData:
    """A gentler input filter: trims old tool reports, except those that hold the launch code."""
    items = data.model_data.input
    last_user = max(i for i, item in enumerate(items) if item.get("role") == "user")
    out = [
        {**item, "output": item["output"][:40] + "..."}
        if index < last_user and item.get("type") == "function_call_output" and FACT not in item["output"]
        else item
        for index, item in enumerate(items)
    ]
    return ModelInputData(input=out, instructions=data.model_data.instructions)


async def akeep_facts(data: CallModelData[Any]) -> ModelInputData:
    """`keep_facts` as a coroutine filter."""
    await asyncio.sleep(0)
    return keep_facts(data)


@pytest.mark.parametrize("fallback", [keep_facts, akeep_facts], ids=["sync-filter", "async-filter"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_harmful_trim_falls_back_to_a_safer_filter_whose_probe_answers_the_call(mode, fallback):
    scorer = ActionScorer(FORGETFUL)
    guard, sink = guard_with(scorer, cooldown=0)
    model = scripted_model()
    guarded = MemGuardInputFilter(trimmer(), guard, fallbacks=[fallback])
    history = run_turns(make_agent(guarded.wrap_model(model)), RunConfig(call_model_input_filter=guarded), mode=mode)
    verdicts = [(d.verdict, d.strategy) for d in sink.decisions]
    # turn 2: trimming is harmless for the lookup, harmful for the answer (no safer filter yet);
    # turn 3: the gentler filter trims the weather report and keeps the launch code.
    name = fallback.__name__
    assert verdicts == [(Verdict.COMMIT, guarded.strategy), (Verdict.VETO, None), (Verdict.FALLBACK, name)]
    assert normalise(history)[-1] == ("assistant", f"The launch code is {FACT}.")
    assert scorer.seen[-1] == ("strategy_swap__tool_output_trimmer_recent_1_max_200", "lookup({'topic': 'alpha'})")
    report = sink.decisions[-1].candidates[-1]
    assert report.strategy == name and report.identical  # same answer as with everything in view
    fallback_probe = model.calls[-1].input  # the fallback's probe, reused as the run's own call
    outputs = [i["output"] for i in fallback_probe if i.get("type") == "function_call_output"]
    assert FACT in outputs[0] and outputs[1].endswith("...")
    assert guarded.store.hits == 3


def test_cooldown_is_kept_per_conversation_id():
    guard, sink = guard_with(ConstantScorer(1.0), cooldown=10, identical_is_safe=False)
    guarded = MemGuardInputFilter(trimmer(), guard, conversation_id=lambda data: data.context["thread"])
    for thread in ("a", "b"):
        model = scripted_model()
        agent = make_agent(guarded.wrap_model(model))
        history: list[Any] = []
        for turn in TURNS:
            result = Runner.run_sync(agent, [*history, {"role": "user", "content": turn}],
                                     run_config=RunConfig(call_model_input_filter=guarded), context={"thread": thread})
            history = result.to_input_list()
        assert normalise(history)[-1] == ("assistant", f"The launch code is {FACT}.")  # nothing was trimmed
    by_thread = {t: [d for d in sink.decisions if d.conversation_id == t] for t in ("a", "b")}
    for decisions in by_thread.values():
        assert [bool(d.candidates) for d in decisions] == [True, False, False]  # one review, then cooldown
        assert all(d.verdict is Verdict.VETO for d in decisions)


def test_a_streamed_run_reuses_the_probe_too():
    transcript, calls = compacting_run()
    guard, sink = guard_with(ConstantScorer(0.0), identical_is_safe=False)
    model = scripted_model()
    guarded = MemGuardInputFilter(trimmer(), guard)
    agent = make_agent(guarded.wrap_model(model))

    async def converse() -> list[Any]:
        history: list[Any] = []
        for turn in TURNS:
            result = Runner.run_streamed(agent, [*history, {"role": "user", "content": turn}],
                                         run_config=RunConfig(call_model_input_filter=guarded))
            async for _ in result.stream_events():
                pass
            history = result.to_input_list()
        return history

    history = asyncio.run(converse())
    assert normalise(history) == transcript
    assert len(model.calls) == calls + len(sink.reviews) and guarded.store.hits == len(sink.reviews)


def test_an_agent_that_names_its_model_by_string_is_probed_through_model():
    model = scripted_model()
    guard, sink = guard_with(ConstantScorer(0.0))
    agent = Agent(name="archivist", instructions=INSTRUCTIONS, model="gpt-4.1", tools=[lookup])
    missing = MemGuardInputFilter(trimmer(), guard)
    with pytest.raises(ValueError, match="names its model 'gpt-4.1'.*pass model="):
        run_turns(agent, RunConfig(model=missing.wrap_model(model), call_model_input_filter=missing), mode="sync")
    guarded = MemGuardInputFilter(trimmer(), guard, model=model)
    history = run_turns(agent, RunConfig(model=guarded.wrap_model(model), call_model_input_filter=guarded),
                        mode="sync")
    assert normalise(history) == compacting_run()[0]
    assert sink.reviews


async def test_commit_passes_the_inner_filters_own_object_and_veto_the_callers():
    items = [
        {"role": "user", "content": TURNS[0]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"topic\":\"alpha\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "x" * 300 + FACT},
        {"role": "assistant", "content": "Noted the launch code."},
        {"role": "user", "content": TURNS[2]},
    ]
    agent = make_agent(scripted_model())
    returned: list[ModelInputData] = []

    async def trim(data: CallModelData[Any]) -> ModelInputData:  # an async filter of the user's own
        result = trimmer()(data)
        returned.append(result)
        return result

    for p, expected in ((0.0, "proposed"), (1.0, "before")):
        data = CallModelData(model_data=ModelInputData(input=list(items), instructions=INSTRUCTIONS),
                             agent=agent, context=None)
        guard, _ = guard_with(ConstantScorer(p), identical_is_safe=False)
        chosen = await MemGuardInputFilter(trim, guard)(data)
        assert chosen is (returned[-1] if expected == "proposed" else data.model_data)
        assert all(a is b for a, b in zip(data.model_data.input, items, strict=True))  # the caller's items, untouched


async def test_instructions_edits_are_reviewed_and_on_decision_errors_never_break_the_call():
    seen = []

    def shorter(data: CallModelData[Any]) -> ModelInputData:
        return ModelInputData(input=data.model_data.input, instructions="Be brief.")

    def broken_hook(decision: Any) -> None:
        seen.append(decision.verdict)
        raise RuntimeError("hook bug")

    guard, sink = guard_with(ConstantScorer(1.0), identical_is_safe=False)
    guarded = MemGuardInputFilter(shorter, guard, on_decision=broken_hook)
    data = CallModelData(model_data=ModelInputData(input=[{"role": "user", "content": "hi"}],
                                                   instructions=INSTRUCTIONS),
                         agent=make_agent(scripted_model()), context=None)
    assert (await guarded(data)).instructions == INSTRUCTIONS
    assert seen == [Verdict.VETO] and guarded.last_decision is sink.decisions[0]
    assert guarded.strategy == "shorter" and filter_name(trimmer()) == "tool_output_trimmer_recent_1_max_200"


def test_bad_arguments_are_refused_clearly():
    guard, _ = guard_with(ConstantScorer(0.0))
    with pytest.raises(TypeError, match="inner must be a call_model_input_filter"):
        MemGuardInputFilter("trim", guard)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guard must be a memguard.Guard"):
        MemGuardInputFilter(trimmer(), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be an agents.Model"):
        MemGuardInputFilter(trimmer(), guard, model="gpt-4.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="neither an input filter nor a memguard strategy"):
        MemGuardInputFilter(trimmer(), guard, fallbacks=[3])
    with pytest.raises(TypeError, match="wraps an agents.Model"):
        MemGuardModel("gpt-4.1", MemGuardInputFilter(trimmer(), guard).store)  # type: ignore[arg-type]


async def test_a_filter_that_returns_something_else_fails_loudly():
    guard, _ = guard_with(ConstantScorer(0.0))
    data = CallModelData(model_data=ModelInputData(input=[], instructions=None), agent=make_agent(scripted_model()),
                         context=None)
    with pytest.raises(TypeError, match="returned list, not a ModelInputData"):
        await MemGuardInputFilter(lambda data: [], guard)(data)
