"""MemGuardInputFilter on a real Runner: the review at the call, costs, fallbacks, cooldown, streaming, errors."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from agents import Agent, ModelSettings, ModelTracing, RunConfig, Runner
from agents.run import CallModelData, ModelInputData
from memguard import Guard, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from oa_agent import (
    FACT,
    FORGETFUL,
    INSTRUCTIONS,
    RUN_SETTINGS,
    TURNS,
    ActionScorer,
    lookup,
    make_agent,
    normalise,
    run_config,
    run_turns,
    scripted_model,
    signature,
    to_view_threads,
    trimmer,
)
from openai_agents_memguard import MemGuardInputFilter, MemGuardModel, ModelRequest, ProbeStore, filter_name


def guard_with(scorer: Any, **options: Any) -> tuple[Guard, RecordingSink]:
    sink = RecordingSink()
    return Guard(scorer, sinks=[sink], **options), sink


def compacting_run(mode: str = "sync") -> tuple[list[Any], int]:
    model = scripted_model()
    history = run_turns(make_agent(model), RunConfig(tracing_disabled=True, call_model_input_filter=trimmer()),
                        mode=mode)
    return normalise(history), len(model.calls)


def test_a_review_costs_one_extra_model_call_its_winning_probe_is_the_calls_answer():
    transcript, calls = compacting_run()
    guard, sink = guard_with(ConstantScorer(0.0), identical_is_safe=False)
    model = scripted_model()
    guarded = MemGuardInputFilter(trimmer(), guard)
    agent = make_agent(guarded.wrap_model(model))
    history = run_turns(agent, RunConfig(tracing_disabled=True, call_model_input_filter=guarded), mode="sync")
    assert normalise(history) == transcript
    reviews = len(sink.reviews)
    assert reviews == 4  # every call from turn 2 on trims the first report
    assert len(model.calls) == calls + reviews


def test_an_unwrapped_model_gets_the_unfiltered_input_never_an_unreviewed_trim(caplog):
    plain = scripted_model()
    expected = normalise(run_turns(make_agent(plain), RunConfig(tracing_disabled=True), mode="sync"))
    guard, sink = guard_with(ConstantScorer(0.0), identical_is_safe=False)
    model = scripted_model()
    guarded = MemGuardInputFilter(trimmer(), guard)
    with caplog.at_level(logging.ERROR, logger="memguard.openai_agents"):
        history = run_turns(make_agent(model), RunConfig(tracing_disabled=True, call_model_input_filter=guarded),
                            mode="sync")
    assert normalise(history) == expected and sink.decisions == []
    assert len(model.calls) == len(plain.calls)
    assert [r.getMessage() for r in caplog.records].count(
        "memguard: a filtered call did not reach a MemGuardModel, so it was sent unfiltered and unreviewed: "
        "set the run's model to guarded.wrap_model(model) (agent.model or RunConfig.model)") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_probes_are_the_runs_own_request_with_its_settings_and_per_turn_tool_choice(mode):
    """Issue 20 item 11: probes carried the agent's settings, not the run's, and answered the run's calls."""
    unguarded = scripted_model()
    run_turns(make_agent(unguarded), run_config(call_model_input_filter=trimmer()), mode=mode)
    expected = {signature(call) for call in unguarded.calls}
    assert len(expected) == 2  # tool_choice="required" on each run's first call, reset after a tool call
    for p in (0.0, 1.0):
        guard, sink = guard_with(ConstantScorer(p), identical_is_safe=False, cooldown=0)
        model = scripted_model()
        guarded = MemGuardInputFilter(trimmer(), guard)
        run_turns(make_agent(guarded.wrap_model(model)), run_config(call_model_input_filter=guarded), mode=mode)
        assert sink.reviews and len(sink.reviews) == (4 if p == 0.0 else 3)
        assert all(call.model_settings.temperature == RUN_SETTINGS.temperature for call in model.calls)
        assert {signature(call) for call in model.calls} <= expected


def test_a_stored_answer_serves_only_the_identical_request():
    response = scripted_model().calls  # any object stands for a response here
    items = [{"role": "user", "content": "hi"}]
    request = ModelRequest("be brief", items, RUN_SETTINGS, [lookup], None, [], ModelTracing.DISABLED)
    model = scripted_model()
    store = ProbeStore()
    for other in (
        ModelRequest("be brief", items, ModelSettings(temperature=0.3, max_tokens=77), [lookup], None, [],
                     ModelTracing.DISABLED),  # the per-turn tool_choice reset
        ModelRequest("be brief", items, RUN_SETTINGS, [], None, [], ModelTracing.DISABLED),  # no tools
        ModelRequest("be brief", [*items, {"role": "user", "content": "?"}], RUN_SETTINGS, [lookup], None, [],
                     ModelTracing.DISABLED),  # another input
    ):
        store.put(request.key(model), response)  # type: ignore[arg-type]
        assert store.take(other.key(model)) is None and store.take(other.key(scripted_model())) is None
        assert store.take(request.key(model)) is response
    cached = ModelRequest("be brief", items, RUN_SETTINGS.resolve(ModelSettings(extra_args={"prompt_cache_key": "k"})),
                          [lookup], None, [], ModelTracing.ENABLED)
    assert cached.key(model) == request.key(model)  # the Runner's cache hint and tracing do not change the answer


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
    assert len(model.calls) == calls + len(sink.reviews) == calls + 4


def test_an_agent_that_names_its_model_by_string_is_probed_through_the_runs_model():
    model = scripted_model()
    guard, sink = guard_with(ConstantScorer(0.0))
    agent = Agent(name="archivist", instructions=INSTRUCTIONS, model="gpt-4.1", tools=[lookup])
    guarded = MemGuardInputFilter(trimmer(), guard)
    history = run_turns(agent, RunConfig(model=guarded.wrap_model(model), call_model_input_filter=guarded),
                        mode="sync")
    assert normalise(history) == compacting_run()[0]
    assert sink.reviews


@pytest.mark.parametrize("audit", [False, True])
async def test_the_filter_passes_on_the_callers_input_and_leaves_its_proposal_with_the_call(audit):
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

    data = CallModelData(model_data=ModelInputData(input=list(items), instructions=INSTRUCTIONS),
                         agent=agent, context=None)
    guard, sink = guard_with(ConstantScorer(0.0), mode="audit" if audit else "enforce")
    chosen = await MemGuardInputFilter(trim, guard)(data)
    # enforce: the call goes out unfiltered unless the wrapped model's review says otherwise;
    # audit: the inner filter's own object, as without the guard
    assert chosen is (returned[-1] if audit else data.model_data)
    assert all(a is b for a, b in zip(data.model_data.input, items, strict=True))  # the caller's items, untouched
    assert sink.decisions == []  # reviewed at the call, not here
    guard.close()


def test_instructions_edits_are_reviewed_and_on_decision_errors_never_break_the_call():
    seen = []

    def shorter(data: CallModelData[Any]) -> ModelInputData:
        return ModelInputData(input=data.model_data.input, instructions="Be brief.")

    def broken_hook(decision: Any) -> None:
        seen.append(decision.verdict)
        raise RuntimeError("hook bug")

    guard, sink = guard_with(ConstantScorer(1.0), identical_is_safe=False, cooldown=0)
    guarded = MemGuardInputFilter(shorter, guard, on_decision=broken_hook)
    model = scripted_model()
    run_turns(make_agent(guarded.wrap_model(model)), RunConfig(call_model_input_filter=guarded), mode="sync",
              turns=TURNS[:1])
    assert seen == [Verdict.VETO, Verdict.VETO] and len(sink.decisions) == 2
    assert [call.system_instructions for call in model.calls].count("Be brief.") == 2  # one probe per review
    assert guarded.strategy == "shorter" and filter_name(trimmer()) == "tool_output_trimmer_recent_1_max_200"


def test_concurrent_conversations_on_one_filter_keep_their_reviews_apart():
    guard, sink = guard_with(ActionScorer(FORGETFUL), cooldown=0)
    guarded = MemGuardInputFilter(trimmer(), guard, conversation_id=lambda data: data.context["thread"])
    finals: dict[str, Any] = {}

    def converse(thread: str) -> None:
        model = scripted_model()
        agent = make_agent(guarded.wrap_model(model))
        history: list[Any] = []
        for turn in TURNS:
            result = Runner.run_sync(agent, [*history, {"role": "user", "content": turn}],
                                     run_config=RunConfig(call_model_input_filter=guarded), context={"thread": thread})
            history = result.to_input_list()
        finals[thread] = normalise(history)

    threads = [threading.Thread(target=converse, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = {t: [(d.verdict, d.step, d.p_harmful) for d in sink.decisions if d.conversation_id == t] for t in "abcd"}
    sequential, _ = guard_with(ActionScorer(FORGETFUL), cooldown=0)
    reference: list[Any] = []
    model = scripted_model()
    solo = MemGuardInputFilter(trimmer(), sequential, on_decision=reference.append)
    expected = normalise(run_turns(make_agent(solo.wrap_model(model)), RunConfig(call_model_input_filter=solo),
                                   mode="sync"))
    assert all(final == expected for final in finals.values())
    assert all(decisions == [(d.verdict, d.step, d.p_harmful) for d in reference] for decisions in alone.values())
    assert {d.verdict for d in reference} == {Verdict.COMMIT, Verdict.VETO}


def test_bad_arguments_are_refused_clearly():
    guard, _ = guard_with(ConstantScorer(0.0))
    with pytest.raises(TypeError, match="inner must be a call_model_input_filter"):
        MemGuardInputFilter("trim", guard)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guard must be a memguard.Guard"):
        MemGuardInputFilter(trimmer(), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="neither a hook nor a memguard strategy"):
        MemGuardInputFilter(trimmer(), guard, fallbacks=[3])
    with pytest.raises(TypeError, match="wraps an agents.Model"):
        MemGuardModel("gpt-4.1", MemGuardInputFilter(trimmer(), guard).store)  # type: ignore[arg-type]


async def test_a_filter_that_returns_something_else_fails_loudly():
    guard, _ = guard_with(ConstantScorer(0.0))
    data = CallModelData(model_data=ModelInputData(input=[], instructions=None), agent=make_agent(scripted_model()),
                         context=None)
    with pytest.raises(TypeError, match="returned list, not a ModelInputData"):
        await MemGuardInputFilter(lambda data: [], guard)(data)


def test_server_side_compaction_is_audited_against_the_full_context_and_never_changes_the_run():
    from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message
    from openai.types.responses import ResponseCompactionItem

    def respond(call: ModelCall) -> list[Any]:
        if call.model_settings.context_management:  # the server compacted: an opaque item, then a forgetful answer
            return [ResponseCompactionItem(id="cmp_1", type="compaction", encrypted_content="enc"),
                    assistant_message("I no longer know the code.", item_id="msg_1")]
        return [assistant_message(f"The launch code is {FACT}.", item_id="msg_1")]

    model = ScriptedModel([ModelStep.respond(respond) for _ in range(4)])
    guard, sink = guard_with(ActionScorer({"I no longer know the code.": 0.9}))
    wrapped = MemGuardInputFilter(trimmer(), guard).wrap_model(model)
    agent = make_agent(wrapped)
    config = RunConfig(tracing_disabled=True, model_settings=ModelSettings(
        context_management=[{"type": "compaction", "compact_threshold": 1000}]))
    result = Runner.run_sync(agent, TURNS[2], run_config=config)
    assert result.final_output == "I no longer know the code."  # the server's compaction stands
    assert guard.flush(30)
    assert [(d.verdict, d.strategy, d.p_harmful) for d in sink.decisions] == [
        (Verdict.AUDIT, "server_context_management", 0.9)]
    assert [c.model_settings.context_management for c in model.calls] == [config.model_settings.context_management,
                                                                         None]  # the audit probe: full context
    guard.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_audit_builds_the_reviews_views_on_the_guards_worker_not_the_runs_path(mode, monkeypatch):
    """The audit review's two views (before, proposal) are converted by the worker (CompactionEvent.deferred)."""
    import openai_agents_memguard.filter as filter_module

    threads = to_view_threads(monkeypatch, filter_module)
    inner = trimmer()
    asked: list[int] = []

    def counted(data: CallModelData[Any]) -> ModelInputData:
        asked.append(len(data.model_data.input))
        return inner(data)

    guard, sink = guard_with(ConstantScorer(0.3), mode="audit", identical_is_safe=False)
    model = scripted_model()
    guarded = MemGuardInputFilter(counted, guard)
    run_turns(make_agent(guarded.wrap_model(model)), RunConfig(tracing_disabled=True, call_model_input_filter=guarded),
              mode=mode)
    assert guard.flush(30)
    guard.close()
    reviews = sink.reviews
    assert len(reviews) == 4 and all(d.p_harmful == pytest.approx(0.3) for d in reviews)
    on_worker = [name for name in threads if name.startswith("memguard-audit")]
    assert len(on_worker) == 2 * len(reviews)  # before and proposal, per review, on the worker
    assert on_worker == threads  # the run's own path converts no whole view (its gate reads the opening)
    assert len(asked) > len(reviews)  # every call was asked, the ones that changed nothing too
    for decision in reviews:  # the worker built the real views: the proposal trims the context it was given
        (proposal,) = decision.candidates
        assert 0 < proposal.n_messages and decision.step > 0
