"""The guard's decision paths, with a scorer keyed on the rendered prompt and context-aware agents."""

from __future__ import annotations

import copy
import math
import time

import pytest

from memguard import (
    CompactionEvent,
    Guard,
    KeepMore,
    ObservationMasking,
    RecentWindow,
    Verdict,
)
from memguard.protocol import summary_message

from tests.doubles import (
    AsyncFactPolicy,
    FactPolicy,
    KeyedScorer,
    RaisingScorer,
    SlowScorer,
    ValueScorer,
    swe_conversation,
)

FACT = "FACT-42"


def summarize(messages, keep_tail=4, text="The agent grepped several files."):
    """A lossy summariser: system + task + summary + tail (the fact, in turn 1, is gone)."""
    return [*messages[:2], summary_message(text), *messages[-keep_tail:]]


def event(before, candidate, strategy="summary", **kw):
    return CompactionEvent(before=before, candidate=candidate, strategy=strategy, **kw)


@pytest.fixture
def before():
    return swe_conversation(n_turns=12, fact=FACT, fact_turn=1)


def test_commit_identical_actions_needs_no_rm_call(before):
    scorer = KeyedScorer()
    guard = Guard(scorer)
    candidate = summarize(before, text=f"Found {FACT} in file1.py.")
    decision = guard.review(event(before, candidate), FactPolicy(FACT))
    assert decision.verdict is Verdict.COMMIT
    assert decision.messages == candidate and all(a is b for a, b in zip(decision.messages, candidate))
    assert decision.candidates[0].identical and decision.candidates[0].p_harmful is None
    assert scorer.calls == []
    assert "cat src/app.py" in decision.response["content"]


def test_commit_scored_when_identical_shortcut_off(before):
    scorer = KeyedScorer({"cat src/app.py": 0.05})
    guard = Guard(scorer, identical_is_safe=False)
    decision = guard.review(event(before, summarize(before, text=FACT)), FactPolicy(FACT))
    assert decision.verdict is Verdict.COMMIT
    assert decision.p_harmful == pytest.approx(0.05)
    assert decision.candidates[0].band == "safe"
    assert len(scorer.calls) == 1
    prompt = scorer.calls[0][0]
    assert "Recorded action at step 12:\ncat src/app.py" in prompt
    assert "Proposed action under perturbation 'strategy_swap__summary':\ncat src/app.py" in prompt


def test_veto_keeps_everything_and_reuses_recorded_probe(before):
    snapshot = copy.deepcopy(before)
    policy = FactPolicy(FACT)
    decision = Guard(KeyedScorer({"ls -la": 0.97}), cooldown=0).review(event(before, summarize(before)), policy)
    assert decision.verdict is Verdict.VETO
    assert decision.messages == before and all(a is b for a, b in zip(decision.messages, before))
    assert "cat src/app.py" in decision.response["content"]  # the full-context probe, reused
    assert policy.calls == 2  # one probe per context, never more
    assert before == snapshot


def test_fallback_order_first_acceptable_wins():
    before = swe_conversation(n_turns=12, fact=FACT, fact_turn=3)
    masking = ObservationMasking(keep_last=5)  # masks turns 0-6 → forgets the fact; x2 keeps it
    scorer = KeyedScorer({"ls -la": 0.97})
    guard = Guard(scorer, fallbacks=(masking, KeepMore(masking, 2.0), RecentWindow(keep_last=40)))
    policy = FactPolicy(FACT)
    decision = guard.review(event(before, summarize(before)), policy)
    assert decision.verdict is Verdict.FALLBACK
    assert decision.strategy == "observation_masking+keep_more_x2"
    assert [c.strategy for c in decision.candidates] == ["summary", "observation_masking", "observation_masking+keep_more_x2"]
    assert decision.candidates[1].p_harmful == pytest.approx(0.97)
    assert decision.candidates[2].identical
    assert policy.calls == 4  # full, proposed, two fallbacks: sequential stops at the first safe one
    assert isinstance(decision.messages[0], dict)


def test_masking_fallback_commits_when_fact_survives():
    before = swe_conversation(n_turns=12, fact=FACT, fact_turn=11)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), fallbacks=(ObservationMasking(keep_last=4),))
    decision = guard.review(event(before, summarize(before, keep_tail=1)), FactPolicy(FACT))
    assert decision.verdict is Verdict.FALLBACK and decision.strategy == "observation_masking"
    masked = [m for m in decision.messages if m.get("content") == "<MASKED>"]
    assert len(masked) == 8 and len(decision.messages) == len(before)


def test_parallel_equals_sequential():
    before = swe_conversation(n_turns=12, fact=FACT, fact_turn=3)
    masking = ObservationMasking(keep_last=5)
    fallbacks = (masking, KeepMore(masking, 2.0), RecentWindow(keep_last=40))
    results = {}
    for search in ("sequential", "parallel"):
        scorer = KeyedScorer({"ls -la": 0.97})
        decision = Guard(scorer, fallbacks=fallbacks, search=search).review(event(before, summarize(before)), FactPolicy(FACT))
        results[search] = (decision, scorer)
    seq, par = results["sequential"][0], results["parallel"][0]
    assert (seq.verdict, seq.strategy, seq.messages) == (par.verdict, par.strategy, par.messages)
    common = {c.strategy: c.p_harmful for c in seq.candidates}
    assert all(common[c.strategy] == c.p_harmful for c in par.candidates if c.strategy in common)
    assert len(results["parallel"][1].calls) == 1  # every candidate scored in one scorer call
    assert len(par.candidates) == 4
    assert "no-op" in par.candidates[3].rejected  # a 40-message window over 26 messages changes nothing


def test_hard_budget_forces_lowest_risk_that_fits(before):
    scorer = KeyedScorer({"strategy_swap__summary": 0.95, "strategy_swap__recent_window": 0.7,
                          "strategy_swap__observation_masking": 0.6})
    big = ObservationMasking(keep_last=10)  # barely shrinks: does not fit
    guard = Guard(scorer, fallbacks=(big, RecentWindow(keep_last=4)), hard_budget=400,
                  token_counter=lambda msgs: sum(len(str(m.content)) for m in msgs) // 4)
    decision = guard.review(event(before, summarize(before)), FactPolicy(FACT))
    assert decision.verdict is Verdict.FORCED
    fits = {c.strategy: c.fits_budget for c in decision.candidates}
    assert fits == {"summary": True, "observation_masking": False, "recent_window": True}
    assert decision.strategy == "recent_window"
    assert decision.response is not None and "ls -la" in decision.response["content"]


def test_hard_budget_never_cools_down(before):
    guard = Guard(KeyedScorer({"ls -la": 0.97}), hard_budget=10_000, cooldown=5)
    first = guard.review(event(before, summarize(before), step=10), FactPolicy(FACT))
    second = guard.review(event(before, summarize(before), step=11), FactPolicy(FACT))
    assert first.verdict is Verdict.FORCED and second.verdict is Verdict.FORCED


def test_cooldown_after_veto_skips_probe_and_score(before):
    scorer = KeyedScorer({"ls -la": 0.97})
    policy = FactPolicy(FACT)
    guard = Guard(scorer, cooldown=2)
    assert guard.review(event(before, summarize(before), step=10), policy).verdict is Verdict.VETO
    calls = policy.calls
    skipped = guard.review(event(before, summarize(before), step=11), policy)
    assert skipped.verdict is Verdict.VETO and "cooldown" in skipped.reasons[0]
    assert policy.calls == calls and len(scorer.calls) == 1 and skipped.messages == before
    other = guard.review(event(before, summarize(before), step=11, conversation_id="other"), policy)
    assert "cooldown" not in " ".join(other.reasons)
    assert not guard.review(event(before, summarize(before), step=12), policy).reviewed  # cooldown=2: 11 and 12
    assert guard.review(event(before, summarize(before), step=13), policy).verdict is Verdict.VETO
    assert len(scorer.calls) == 3


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("p", [0.05, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7, 0.95])
def test_the_threshold_alone_decides(before, p, threshold):
    """The one commit rule: commit iff P(HARMFUL) < threshold, whatever the band says."""
    decision = Guard(ValueScorer(p), threshold=threshold, cooldown=0).review(event(before, summarize(before)),
                                                                             FactPolicy(FACT))
    assert decision.verdict is (Verdict.COMMIT if p < threshold else Verdict.VETO)
    expected_band = "safe" if p <= 0.12 else "harmful" if p >= 0.88 else "uncertain"
    assert decision.candidates[0].band == decision.band == expected_band  # reported, not gating
    assert decision.p_harmful == p


@pytest.mark.parametrize(("p", "verdict"), [(0.05, Verdict.COMMIT), (0.30, Verdict.VETO), (0.95, Verdict.VETO)])
def test_band_gate_is_opt_in(before, p, verdict):
    """band_gate=True also refuses a score inside the band (0.12 < P(HARMFUL) < 0.88)."""
    decision = Guard(ValueScorer(p), band_gate=True, cooldown=0).review(event(before, summarize(before)), FactPolicy(FACT))
    assert decision.verdict is verdict


def test_band_none_labels_by_the_threshold(before):
    decision = Guard(ValueScorer(0.3), band=None).review(event(before, summarize(before)), FactPolicy(FACT))
    assert decision.verdict is Verdict.COMMIT and decision.candidates[0].band == "safe"
    decision = Guard(ValueScorer(0.3), band=None, threshold=0.2).review(event(before, summarize(before)),
                                                                         FactPolicy(FACT))
    assert decision.verdict is Verdict.VETO and decision.band == "harmful"


def test_uncertain_is_a_deprecated_name_for_band_gate(before):
    with pytest.warns(DeprecationWarning, match="band_gate"):
        gated = Guard(ValueScorer(0.3), uncertain="harmful")
    with pytest.warns(DeprecationWarning):
        plain = Guard(ValueScorer(0.3), uncertain="safe")
    assert gated.band_gate and gated.uncertain == "harmful" and not plain.band_gate
    assert gated.review(event(before, summarize(before)), FactPolicy(FACT)).verdict is Verdict.VETO
    assert plain.review(event(before, summarize(before)), FactPolicy(FACT)).verdict is Verdict.COMMIT


@pytest.mark.parametrize("scorer", [
    RaisingScorer(RuntimeError("boom")),
    RaisingScorer(MemoryError()),
    ValueScorer(math.nan),
    ValueScorer(math.inf),
    ValueScorer(-math.inf),
], ids=["raises", "oom", "nan", "inf", "-inf"])
@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_scorer_failures_follow_on_error(before, scorer, on_error):
    snapshot = copy.deepcopy(before)
    candidate = summarize(before)
    decision = Guard(scorer, on_error=on_error).review(event(before, candidate), FactPolicy(FACT))
    assert decision.error
    assert decision.verdict is (Verdict.COMMIT if on_error == "open" else Verdict.VETO)
    assert decision.messages == (candidate if on_error == "open" else before)
    assert any(on_error in r for r in decision.reasons)
    assert before == snapshot


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_scorer_timeout(before, on_error):
    started = time.perf_counter()
    decision = Guard(SlowScorer(2.0), timeout=0.2, on_error=on_error).review(event(before, summarize(before)), FactPolicy(FACT))
    assert time.perf_counter() - started < 1.5
    assert "timeout" in decision.error
    assert decision.verdict is (Verdict.COMMIT if on_error == "open" else Verdict.VETO)


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_policy_probe_failure(before, on_error):
    def broken(messages):
        raise ConnectionError("agent API down")

    decision = Guard(KeyedScorer(), on_error=on_error).review(event(before, summarize(before)), broken)
    assert "ConnectionError" in decision.error
    assert decision.verdict is (Verdict.COMMIT if on_error == "open" else Verdict.VETO)
    assert decision.response is None


def test_error_messages_do_not_echo_conversation(before):
    secret = "s3cr3t-token"
    decision = Guard(RaisingScorer(ValueError("x" * 500 + secret))).review(event(before, summarize(before)), FactPolicy(FACT))
    assert secret not in decision.error and len(decision.error) < 300


@pytest.mark.parametrize(("summary_text", "reason"), [
    ("", "empty summary"),
    ("No previous conversation history.", "placeholder"),
    ("Error code: 429 - rate limited", "error message"),
    ("Traceback (most recent call last):\n  File x", "error message"),
])
def test_rails_reject_before_any_rm_call(before, summary_text, reason):
    scorer = ValueScorer(0.0)  # would say SAFE: the rails must win
    candidate = [*before[:2], {"role": "user", "content": summary_text}, *before[-2:]]
    decision = Guard(scorer).review(event(before, candidate), FactPolicy(FACT))
    assert decision.verdict is Verdict.VETO
    assert reason in decision.candidates[0].rejected


def test_rails_orphan_tool_and_dropped_system(before):
    orphan = [*before[:2], summary_message("ok"), *before[-1:]]  # a tool result without its call
    decision = Guard(ValueScorer(0.0)).review(event(before, orphan), FactPolicy(FACT))
    assert "orphan tool message" in decision.candidates[0].rejected
    no_system = [*before[1:2], summary_message("ok"), *before[-2:]]
    decision = Guard(ValueScorer(0.0)).review(event(before, no_system), FactPolicy(FACT))
    assert "system prompt" in decision.candidates[0].rejected


def test_rejected_candidate_never_committed_even_under_budget(before):
    candidate = [*before[:2], {"role": "user", "content": ""}]
    decision = Guard(ValueScorer(0.0), hard_budget=50).review(event(before, candidate), FactPolicy(FACT))
    assert decision.verdict is Verdict.VETO and decision.messages == before


def test_precomputed_responses_skip_probing(before):
    def no_agent(messages):
        raise AssertionError("must not be called")

    ev = event(before, summarize(before), recorded_response={"role": "assistant", "content": "cat src/app.py"},
               proposed_response={"role": "assistant", "content": "ls -la"})
    decision = Guard(KeyedScorer({"ls -la": 0.2})).review(ev, no_agent)
    assert decision.verdict is Verdict.COMMIT and decision.p_harmful == pytest.approx(0.2)


async def test_areview_matches_review():
    before = swe_conversation(n_turns=12, fact=FACT, fact_turn=3)
    masking = ObservationMasking(keep_last=5)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), fallbacks=(masking, KeepMore(masking, 2.0)))
    sync = guard.review(event(before, summarize(before)), FactPolicy(FACT))
    for policy in (FactPolicy(FACT), AsyncFactPolicy(FACT)):
        result = await guard.areview(event(before, summarize(before)), policy)
        assert (result.verdict, result.strategy, result.messages) == (sync.verdict, sync.strategy, sync.messages)


async def test_areview_timeout_does_not_block_loop(before):
    guard = Guard(SlowScorer(2.0), timeout=0.2, on_error="closed")
    started = time.perf_counter()
    decision = await guard.areview(event(before, summarize(before)), AsyncFactPolicy(FACT))
    assert time.perf_counter() - started < 1.5 and decision.verdict is Verdict.VETO


def test_invalid_options():
    with pytest.raises(ValueError, match="mode"):
        Guard(KeyedScorer(), mode="block")
    with pytest.raises(ValueError, match="threshold"):
        Guard(KeyedScorer(), threshold=0)
    with pytest.raises(TypeError, match="scorer"):
        Guard(object())
    with pytest.raises(ValueError, match="policy"):
        Guard(KeyedScorer()).review(event([{"role": "user", "content": "x"}], [{"role": "user", "content": "x"}]))


def test_bad_messages_give_clear_errors():
    with pytest.raises(ValueError, match="message 1"):
        Guard(KeyedScorer()).review(event([{"role": "user", "content": "x"}, 3], []), FactPolicy(FACT))
