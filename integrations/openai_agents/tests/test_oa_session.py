"""MemGuardSession on real SQLite sessions driven by a real Runner.

Readable rewrites (a summarising session of the user's own) are enforced: a veto leaves the
stored history exactly as it was. The Responses API's opaque compaction
(`OpenAIResponsesCompactionSession` with an offline stand-in for `client.responses.compact`) is
audited only.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from agents import OpenAIResponsesCompactionSession, RunConfig, Runner, SQLiteSession
from memguard import Guard, ObservationMasking, Verdict
from memguard.testing.contract import ConstantScorer, RecordingSink

from oa_agent import FACT, TURNS, make_agent, normalise, scripted_model, to_view_threads
from openai_agents_memguard import MemGuardSession
from openai_agents_memguard.session import HistoryRestoreError

SESSION_TURNS = (TURNS[0], TURNS[2], "Say the launch code once more.")
SUMMARY = {"role": "user", "content": "[Summary] The assistant looked some things up."}


class SummarisingSession(SQLiteSession):
    """A session of the user's own that compacts after a turn: the task and a summary."""

    async def run_compaction(self, args: Any = None) -> None:
        items = await self.get_items()
        if len(items) > 4:
            await self.clear_session()
            await self.add_items([items[0], SUMMARY])


def converse(session: Any, model: Any, *, mode: str, on_turn: Any = None) -> list[Any]:
    """Run SESSION_TURNS on `session`; what the agent did, turn by turn."""
    agent = make_agent(model)
    config = RunConfig(tracing_disabled=True)

    async def arun() -> list[Any]:
        done = []
        for turn in SESSION_TURNS:
            result = await Runner.run(agent, turn, run_config=config, session=session)
            done.append(normalise([item.to_input_item() for item in result.new_items]))
            if on_turn is not None:
                await on_turn()
        return done

    if mode == "async":
        return asyncio.run(arun())
    done = []
    for turn in SESSION_TURNS:
        result = Runner.run_sync(agent, turn, run_config=config, session=session)
        done.append(normalise([item.to_input_item() for item in result.new_items]))
    return done


def guarded(store: Any, scorer: Any, model: Any, **options: Any) -> tuple[MemGuardSession, RecordingSink]:
    sink = RecordingSink()
    guard = Guard(scorer, sinks=[sink], identical_is_safe=False, **options)
    return MemGuardSession(store, guard, agent=make_agent(model)), sink


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_fixture_session_changes_what_the_agent_does(mode):
    kind = SummarisingSession
    plain = converse(SQLiteSession("s"), scripted_model(), mode=mode)
    compacting = converse(kind("s"), scripted_model(), mode=mode)
    assert plain != compacting
    assert plain[-1] == [("assistant", f"The launch code is {FACT}.")]


def test_a_safe_rewrite_is_committed(mode):
    kind = SummarisingSession
    expected_model = scripted_model()
    expected = converse(kind("s"), expected_model, mode=mode)
    model = scripted_model()
    session, sink = guarded(kind("s"), ConstantScorer(0.0), model)
    assert converse(session, model, mode=mode) == expected
    assert sink.reviews and all(d.verdict is Verdict.COMMIT for d in sink.decisions)
    assert len(model.calls) == len(expected_model.calls) + 2 * len(sink.reviews)  # probes answer no call


def test_a_vetoed_rewrite_leaves_the_stored_history_as_it_was(mode):
    kind = SummarisingSession
    plain_store = SQLiteSession("s")
    plain = converse(plain_store, scripted_model(), mode=mode)
    model = scripted_model()
    store = kind("s")
    session, sink = guarded(store, ConstantScorer(1.0), model)
    assert converse(session, model, mode=mode) == plain
    assert sink.reviews and all(d.verdict is Verdict.VETO for d in sink.decisions)
    stored, expected = asyncio.run(_both(store, plain_store))
    assert stored == expected  # item for item, as if nothing had compacted


async def _both(a: Any, b: Any) -> tuple[list[Any], list[Any]]:
    return await a.get_items(), await b.get_items()


def test_a_fallback_strategy_is_stored_instead():
    model = scripted_model()
    store = SummarisingSession("s")
    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False)
    session = MemGuardSession(store, guard, agent=make_agent(model), fallbacks=[_AlwaysSafe(ObservationMasking(1))])
    guard.scorer = _ByStrategy({"observation_masking": 0.0}, default=1.0)
    converse(session, model, mode="sync")
    fallbacks = [d for d in sink.decisions if d.verdict is Verdict.FALLBACK]
    assert fallbacks and fallbacks[0].strategy == "observation_masking"
    stored = asyncio.run(store.get_items())
    outputs = [i["output"] for i in stored if i.get("type") == "function_call_output"]
    assert "<MASKED>" in outputs and not any(i == SUMMARY for i in stored)


class _AlwaysSafe:
    """A memguard strategy under its own name (the scorer double keys on it)."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.name = strategy.name

    def __call__(self, messages: Any) -> Any:
        return self.strategy(messages)


class _ByStrategy:
    def __init__(self, table: dict[str, float], default: float) -> None:
        self.table, self.default = table, default

    def score(self, prompts: list[str]) -> list[Any]:
        from memguard import Score

        out = []
        for prompt in prompts:
            tag = prompt.split("Proposed action under perturbation '", 1)[1].split("'", 1)[0]
            out.append(
                Score(
                    p_harmful=self.table.get(tag.removeprefix("strategy_swap__"), self.default),
                    n_tokens=len(prompt) // 4,
                )
            )
        return out


def test_during_the_cooldown_after_a_veto_the_session_is_not_asked_to_compact():
    asked = []

    class Counting(SummarisingSession):
        async def run_compaction(self, args: Any = None) -> None:
            asked.append(len(await self.get_items()))
            await super().run_compaction(args)

    model = scripted_model()
    session, sink = guarded(Counting("s"), ConstantScorer(1.0), model, cooldown=3)

    async def run() -> None:
        for turn in range(5):  # one more agent step before each ask
            await session.add_items([{"role": "user", "content": f"go on {turn}"},
                                     {"role": "assistant", "content": f"step {turn}"}])
            await session.run_compaction()

    asyncio.run(run_seeded(session, run))
    skipped = [d for d in sink.decisions if not d.reviewed]
    assert len(sink.reviews) == len(asked) == 5 - len(skipped) >= 2  # a cooling step never asks the session
    assert asked[0] == 7 and all(d.verdict is Verdict.VETO for d in sink.decisions)


async def run_seeded(session: MemGuardSession, then: Any) -> None:
    await session.add_items(
        [
            {"role": "user", "content": TURNS[0]},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"topic":"alpha"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": f"The launch code is {FACT}."},
            {"role": "assistant", "content": "Noted the launch code."},
            {"role": "user", "content": TURNS[2]},
        ]
    )
    await then()


def test_a_failed_restore_raises_with_the_history_to_put_back():
    class Fragile(SummarisingSession):
        restoring = False

        async def clear_session(self) -> None:
            await super().clear_session()
            Fragile.restoring = True

        async def add_items(self, items: list[Any]) -> None:
            if Fragile.restoring and len(items) == 5:
                raise ConnectionError("store went away")
            await super().add_items(items)

    session, _ = guarded(Fragile("s"), ConstantScorer(1.0), scripted_model())

    async def compact() -> None:
        await session.run_compaction()

    with pytest.raises(HistoryRestoreError) as raised:
        asyncio.run(run_seeded(session, compact))
    assert len(raised.value.items) == 5 and raised.value.items[2]["output"].endswith(FACT + ".")


def test_a_session_that_rewrites_what_it_is_given_cannot_be_restored_silently():
    class Stamping(SummarisingSession):
        async def add_items(self, items: list[Any]) -> None:
            await super().add_items([{**i, "writes": i.get("writes", 0) + 1} for i in items])

    session, _ = guarded(Stamping("s"), ConstantScorer(1.0), scripted_model())

    async def compact() -> None:
        await session.run_compaction()

    with pytest.raises(HistoryRestoreError, match="could not restore 5 session items") as raised:
        asyncio.run(run_seeded(session, compact))
    assert [i["writes"] for i in raised.value.items] == [1] * 5  # the history as it was before


def test_bad_arguments_are_refused_clearly():
    guard = Guard(ConstantScorer(0.0))
    agent = make_agent(scripted_model())
    with pytest.raises(TypeError, match="Session protocol"):
        MemGuardSession(object(), guard, agent=agent)
    with pytest.raises(TypeError, match="memguard.Guard"):
        MemGuardSession(SQLiteSession("s"), object(), agent=agent)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass model="):
        MemGuardSession(SQLiteSession("s"), guard, agent=make_agent("gpt-4.1"))  # type: ignore[arg-type]
    assert not hasattr(MemGuardSession(SQLiteSession("s"), guard, agent=agent), "run_compaction")


# ---------------------------------------------------------------------- opaque: audit only


class OfflineCompactAPI:
    """`client.responses.compact` offline: the user messages, then one encrypted compaction item."""

    def __init__(self) -> None:
        self.calls = 0
        self.responses = SimpleNamespace(compact=self.compact)

    async def compact(self, *, model: str, input: list[Any] | None = None, **_: Any) -> Any:
        self.calls += 1
        users = [i for i in input or [] if i.get("role") == "user"]
        return SimpleNamespace(
            output=[*users, {"type": "compaction", "encrypted_content": f"enc-{self.calls}"}], usage=None
        )


def compaction_session(api: OfflineCompactAPI) -> OpenAIResponsesCompactionSession:
    return OpenAIResponsesCompactionSession(
        "s",
        SQLiteSession("s"),
        client=api,
        compaction_mode="input",  # type: ignore[arg-type]
        should_trigger_compaction=lambda context: len(context["compaction_candidate_items"]) >= 3,
    )


def test_an_opaque_compaction_is_audited_and_kept(mode):
    api = OfflineCompactAPI()
    expected = converse(compaction_session(api), scripted_model(), mode=mode)
    assert api.calls >= 1
    model = scripted_model()
    store = compaction_session(OfflineCompactAPI())
    session, sink = guarded(store, ConstantScorer(1.0), model)
    assert converse(session, model, mode=mode) == expected  # a harmful score vetoes nothing here
    assert session.guard.flush(30)
    assert sink.decisions and all(d.verdict is Verdict.AUDIT and d.p_harmful == 1.0 for d in sink.decisions)
    assert all(d.candidates[0].strategy == "OpenAIResponsesCompactionSession" for d in sink.decisions)
    stored = asyncio.run(store.get_items())
    assert any(i.get("type") == "compaction" for i in stored)


def test_opaque_rewrites_are_audited_by_the_users_own_guard_with_no_hidden_guard():
    """Issue 20 item 5: one hidden audit guard per session (a thread each; reviews missing from stats)."""
    import threading

    def audit_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "memguard-audit" and t.is_alive())

    sink = RecordingSink()
    guard = Guard(ConstantScorer(1.0), sinks=[sink], identical_is_safe=False)
    threads_before = audit_threads()
    sessions = [MemGuardSession(compaction_session(OfflineCompactAPI()), guard, agent=make_agent(scripted_model()))
                for _ in range(20)]

    async def compact_all() -> None:
        for session in sessions:
            await run_seeded(session, session.run_compaction)

    asyncio.run(compact_all())
    assert audit_threads() <= threads_before + 1  # at most the guard's own audit worker, not one per session
    guard.close()  # closes the sinks: every audit line must be in by then
    audits = [d for d in sink.decisions if d.verdict is Verdict.AUDIT]
    assert len(audits) == 20 and not any(d.pending for d in audits)
    assert guard.stats()["audit"] == 20


# ---------------------------------------------------------------------- audit: the views on the worker


def _spy_to_view(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import openai_agents_memguard.session as session_module

    return to_view_threads(monkeypatch, session_module)


def test_audit_builds_the_session_reviews_views_on_the_guards_worker_not_the_runs_path(mode, monkeypatch):
    """An audit guard: the gate needs no view (the session names the conversation), the review's views are deferred."""
    threads = _spy_to_view(monkeypatch)
    model = scripted_model()
    session, sink = guarded(SummarisingSession("s"), ConstantScorer(0.3), model, mode="audit")
    converse(session, model, mode=mode)
    assert session.guard.flush(30)
    session.guard.close()
    reviews = sink.reviews
    assert reviews and all(d.verdict is Verdict.AUDIT and d.p_harmful == pytest.approx(0.3) for d in reviews)
    assert threads and all(name.startswith("memguard-audit") for name in threads)  # none on the run's path
    assert len(threads) == 2 * len(reviews)  # before and after, per review
    for decision in reviews:  # the worker built the real views: the task and the summary
        (proposal,) = decision.candidates
        assert proposal.n_messages == 3 and decision.step > 0  # the system turn, the task, the summary


def test_an_opaque_rewrite_under_an_enforcing_guard_builds_its_views_on_the_worker(monkeypatch):
    """The opaque case is an audit review too: only the gate's view (enforce mode checks a cooldown) is on the path."""
    threads = _spy_to_view(monkeypatch)
    model = scripted_model()
    session, sink = guarded(compaction_session(OfflineCompactAPI()), ConstantScorer(0.3), model)
    compactions = 0
    run = session.session.run_compaction

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal compactions
        compactions += 1
        return await run(*args, **kwargs)

    session.session.run_compaction = counted
    converse(session, model, mode="sync")
    assert session.guard.flush(30)
    session.guard.close()
    reviews = sink.reviews
    assert reviews and all(d.verdict is Verdict.AUDIT and d.p_harmful == pytest.approx(0.3) for d in reviews)
    on_worker = [name for name in threads if name.startswith("memguard-audit")]
    assert len(on_worker) == 2 * len(reviews)
    assert len(threads) - len(on_worker) == compactions  # the gate's, once per compaction
