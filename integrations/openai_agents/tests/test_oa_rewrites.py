"""History rewrites before an agent's first call: handoff input filters and the session input callback.

Each surface runs the shared contract (plain: no rewrite; compacting: the SDK's own rewrite;
guarded: the same rewrite wrapped, the run's model wrapped so the winning probe answers the next
agent's first call), then the behaviours of its own: nested history, fallbacks, the gate, what
the session stores.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Runner, SQLiteSession
from agents.extensions.handoff_filters import nest_handoff_history, remove_all_tools
from memguard import Guard, Verdict
from memguard.testing.contract import AgentRun, ConstantScorer, IntegrationContract, RecordingSink, RunMode, Variant

import oa_handoff
from oa_agent import (
    FACT,
    TURNS,
    Observer,
    make_agent,
    normalise,
    run_config,
    scripted_model,
    signature,
    stream_turns,
    to_view_threads,
    usage_of,
)
from openai_agents_memguard import MemGuardHandoffFilter, MemGuardSessionInput, next_agent_input
from openai_agents_memguard.hooks import hook_name


def guard_with(scorer: Any, **options: Any) -> tuple[Guard, RecordingSink]:
    sink = RecordingSink()
    return Guard(scorer, sinks=[sink], identical_is_safe=False, **options), sink


# --------------------------------------------------------------------------- handoff input filters


class Counted:
    """A hook, counting the calls where it changed what the next agent sees (the compactions it proposed)."""

    def __init__(self, inner: Any, input_of: Any) -> None:
        self.inner = inner
        self.name = hook_name(inner)
        self.input_of = input_of
        self.count = 0

    def __call__(self, *args: Any) -> Any:
        result = self.inner(*args)
        if self.input_of(result) != self.input_of(*args):
            self.count += 1
        return result


def handoff_setup(variant: str, guard: Guard | None, *, inner: Any = remove_all_tools, run_level: bool = False,
                  conversation: int = 0, **options: Any) -> tuple[Any, Any, Any, Counted]:
    model = oa_handoff.scripted_model()
    config = run_config()
    counted = Counted(inner, next_agent_input)
    hook: Any = None if variant == "plain" else counted
    if variant == "guarded":
        assert guard is not None
        hook = MemGuardHandoffFilter(counted, guard, run_config=config, conversation_id=f"chat-{conversation}",
                                     **options)
        config.model = hook.wrap_model(model)
    if run_level:
        config.handoff_input_filter = hook
        agent = oa_handoff.make_agents(model)
    else:
        agent = oa_handoff.make_agents(model, hook)
    return model, agent, config, counted


def handoff_run(variant: str, guard: Guard | None, *, mode: str, **options: Any) -> tuple[list[Any], Any, Any]:
    model, agent, config, _ = handoff_setup(variant, guard, **options)
    hook = config.handoff_input_filter or next((h.input_filter for h in agent.handoffs if hasattr(h, "input_filter")),
                                               None)
    return oa_handoff.run(agent, config, mode=mode), model, hook


def contract_run(variant: Variant, model: Any, counted: Counted, transcript: Any, results: list[Any],
                 streamed: Any) -> AgentRun:
    return AgentRun(transcript=transcript, model_calls=len(model.calls),
                     compactions=None if variant == "plain" else counted.count,
                     requests=[signature(call) for call in model.calls], streamed=streamed, usage=usage_of(results))


class TestHandoffFilterContract(IntegrationContract):
    """Three turns, each a lookup and a handoff: the filter proposes at every handoff."""

    guard_options = {"cooldown": 5}  # a turn is three steps: the next turn's handoff falls in the cooldown

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":  # an older contract drives async runs through here
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        model, agent, config, counted = handoff_setup(variant, guard, conversation=conversation)
        history: list[Any] = []
        results = []
        observer = Observer()
        for turn in oa_handoff.turns(conversation, count=3):
            result = Runner.run_sync(agent, [*history, {"role": "user", "content": turn}], run_config=config,
                                     hooks=observer)
            history = result.to_input_list()
            results.append(result)
        return contract_run(variant, model, counted, normalise(history), results, observer.seen)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        model, agent, config, counted = handoff_setup(variant, guard, conversation=conversation)
        history, streamed, results = await stream_turns(agent, config, oa_handoff.turns(conversation, count=3))
        return contract_run(variant, model, counted, normalise(history), results, streamed)


@pytest.mark.parametrize("run_level", [False, True], ids=["Handoff.input_filter", "RunConfig.handoff_input_filter"])
def test_a_reviewed_handoff_costs_one_call_its_probe_answers_the_next_agent_with_the_runs_request(run_level):
    plain, plain_model, _ = handoff_run("compacting", None, mode="sync", run_level=run_level)
    expected = {signature(call) for call in plain_model.calls}
    guard, sink = guard_with(ConstantScorer(0.0))
    history, model, hook = handoff_run("guarded", guard, mode="sync", run_level=run_level)
    assert normalise(history) == normalise(plain) and len(sink.reviews) == 1
    assert len(model.calls) == len(plain_model.calls) + 1 and hook.store.hits == 1
    assert {signature(call) for call in model.calls} <= expected  # the probes carried the run's settings


def test_nested_handoff_history_is_guarded_by_passing_nest_handoff_history_as_the_filter():
    nested, _, _ = handoff_run("compacting", None, mode="sync", inner=nest_handoff_history, run_level=True)
    plain, _, _ = handoff_run("plain", None, mode="sync")
    assert normalise(nested) != normalise(plain)  # the transcript folded into one message
    for p, expected in ((0.0, nested), (1.0, plain)):
        guard, sink = guard_with(ConstantScorer(p))
        history, _, _ = handoff_run("guarded", guard, mode="sync", inner=nest_handoff_history, run_level=True)
        assert normalise(history) == normalise(expected)
        assert [d.strategy for d in sink.reviews] == ["nest_handoff_history" if p == 0.0 else None]


class Scorer:
    """Harmful exactly when the proposed action no longer states the code."""

    def score(self, prompts: list[str]) -> list[Any]:
        from memguard import Score

        return [Score(p_harmful=0.0 if FACT in p.rsplit("Proposed action", 1)[1] else 1.0, n_tokens=len(p) // 4)
                for p in prompts]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_harmful_handoff_filter_falls_back_to_a_safer_one_whose_probe_answers_the_reporter(mode):
    guard, sink = guard_with(Scorer())
    history, model, hook = handoff_run("guarded", guard, mode=mode, fallbacks=[nest_handoff_history])
    assert [(d.verdict, d.strategy) for d in sink.decisions] == [(Verdict.FALLBACK, "nest_handoff_history")]
    assert normalise(history)[-1] == ("assistant", f"The launch code is {FACT}.")
    assert hook.store.hits == 1 and len(model.calls) == 3 + 2  # two probes, the winner answered the call


def test_a_cooling_conversation_skips_the_handoff_filter_itself():
    calls = []

    def counting(data: Any) -> Any:
        calls.append(data)
        return remove_all_tools(data)

    guard, sink = guard_with(ConstantScorer(1.0), cooldown=5)
    for task in oa_handoff.TASKS[:2]:
        model = oa_handoff.scripted_model()
        config = run_config()
        hook = MemGuardHandoffFilter(counting, guard, run_config=config, conversation_id="one-user")
        config.model = hook.wrap_model(model)
        Runner.run_sync(oa_handoff.make_agents(model, hook), task, run_config=config)
    assert len(calls) == 1 and [d.reviewed for d in sink.decisions] == [True, False]


def test_bad_handoff_filters_are_refused_clearly():
    guard, _ = guard_with(ConstantScorer(0.0))
    with pytest.raises(TypeError, match="inner must be a handoff_input_filter"):
        MemGuardHandoffFilter("nest", guard)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guard must be a memguard.Guard"):
        MemGuardHandoffFilter(remove_all_tools, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="run_config must be an agents.RunConfig"):
        MemGuardHandoffFilter(remove_all_tools, guard, run_config={})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- session input callback


def keep_recent(history: list[Any], new_items: list[Any]) -> list[Any]:
    """Only the last four stored items (the previous exchange) and the new turn."""
    return [*history[-4:], *new_items]


def session_setup(variant: str, guard: Guard | None, *, inner: Any = keep_recent, conversation: int = 0,
                  **options: Any) -> tuple[Any, Any, Any, Counted, SQLiteSession]:
    model = scripted_model()
    agent = make_agent(model)
    config = run_config()
    counted = Counted(inner, lambda history, new_items=None: history if new_items is None else [*history, *new_items])
    if variant == "compacting":
        config.session_input_callback = counted
    elif variant == "guarded":
        assert guard is not None
        config.session_input_callback = MemGuardSessionInput(counted, guard, agent=agent, run_config=config,
                                                             conversation_id=f"chat-{conversation}", **options)
        config.model = config.session_input_callback.wrap_model(model)
    return model, agent, config, counted, SQLiteSession(f"chat-{conversation}")


def session_run(variant: str, guard: Guard | None, *, mode: str, **options: Any) -> tuple[Any, Any, Any, Any]:
    model, agent, config, _, session = session_setup(variant, guard, **options)
    if mode == "async":
        _, seen, results = asyncio.run(stream_turns(agent, config, TURNS, session=session))
    else:
        results = [Runner.run_sync(agent, turn, run_config=config, session=session) for turn in TURNS]
    said = [normalise([item.to_input_item() for item in result.new_items]) for result in results]
    return said, model, config.session_input_callback, session


SESSION_TURNS = (*TURNS, TURNS[1], TURNS[2])
"""Five turns: from the third on, `keep_recent` proposes at every turn."""


class TestSessionInputContract(IntegrationContract):
    def _said(self, results: list[Any]) -> list[Any]:
        """Every turn: what the user asked (the ticket tells conversations apart) and what the agent did."""
        return [(result.input, normalise([item.to_input_item() for item in result.new_items])) for result in results]

    def _turns(self, conversation: int) -> tuple[str, ...]:
        return tuple(turn if conversation == 0 else f"{turn} (ticket {conversation})" for turn in SESSION_TURNS)

    def run_agent(self, variant: Variant, guard: Guard | None, *, mode: RunMode, conversation: int = 0) -> AgentRun:
        if mode == "async":
            return asyncio.run(self.arun_agent(variant, guard, conversation=conversation))
        model, agent, config, counted, session = session_setup(variant, guard, conversation=conversation)
        observer = Observer()
        results = [Runner.run_sync(agent, turn, run_config=config, session=session, hooks=observer)
                   for turn in self._turns(conversation)]
        return contract_run(variant, model, counted, self._said(results), results, observer.seen)

    async def arun_agent(self, variant: Variant, guard: Guard | None, *, conversation: int = 0) -> AgentRun:
        model, agent, config, counted, session = session_setup(variant, guard, conversation=conversation)
        _, streamed, results = await stream_turns(agent, config, self._turns(conversation), session=session)
        return contract_run(variant, model, counted, self._said(results), results, streamed)


def test_a_vetoed_callback_gives_the_sdk_its_own_items_back_so_the_session_stores_only_the_new_turn():
    plain, _, _, plain_session = session_run("plain", None, mode="sync")
    guard, sink = guard_with(ConstantScorer(1.0))
    said, _, callback, session = session_run("guarded", guard, mode="sync")
    assert said == plain and [d.verdict for d in sink.reviews] == [Verdict.VETO]
    stored, expected = asyncio.run(session.get_items()), asyncio.run(plain_session.get_items())
    assert normalise(stored) == normalise(expected)
    assert callback.store.hits == 1  # the full history's probe answered the run's first call


# --------------------------------------------------------------------------- audit: the views on the worker


@pytest.mark.parametrize("surface", ["handoff", "nested", "handoff-unnamed", "session-input"])
def test_audit_builds_the_rewrite_reviews_views_on_the_guards_worker_not_the_runs_path(surface, monkeypatch):
    """Handoff filters, nested history and the session input callback: the review's views are deferred."""
    import openai_agents_memguard.rewrite as rewrite_module

    real = rewrite_module.to_view
    threads = to_view_threads(monkeypatch, rewrite_module)
    guard, sink = guard_with(ConstantScorer(0.3), mode="audit")
    def unnamed(guard: Guard) -> None:
        model, _, config, counted = handoff_setup("compacting", None)
        hook = MemGuardHandoffFilter(counted, guard, run_config=config)
        config.model = hook.wrap_model(model)
        oa_handoff.run(oa_handoff.make_agents(model, hook), config, mode="sync")

    if surface == "session-input":
        session_run("guarded", guard, mode="sync")
    elif surface == "handoff-unnamed":  # no conversation id: the gate derives one from the opening's prefix
        unnamed(guard)
    else:
        handoff_run("guarded", guard, mode="sync", **({"inner": nest_handoff_history, "run_level": True}
                                                      if surface == "nested" else {}))
    assert guard.flush(30)
    guard.close()
    reviews = sink.reviews
    assert reviews and all(d.verdict is Verdict.AUDIT and d.p_harmful == pytest.approx(0.3) for d in reviews)
    assert threads and all(name.startswith("memguard-audit") for name in threads)  # none on the run's path
    assert len(threads) == 2 * len(reviews)  # before and proposal, per review
    for decision in reviews:  # the worker built the real views
        (proposal,) = decision.candidates
        assert proposal.n_messages > 0 and decision.step > 0
    if surface == "handoff-unnamed":  # the id derived from a prefix is the one an enforcing gate derives from it all
        monkeypatch.setattr(rewrite_module, "to_view", real)
        enforcing, enforced = guard_with(ConstantScorer(0.0))
        unnamed(enforcing)
        ids = [d.conversation_id for d in reviews]
        assert ids == [d.conversation_id for d in enforced.reviews] and all(i.startswith("auto-") for i in ids)
