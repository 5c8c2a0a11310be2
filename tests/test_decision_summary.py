"""`Decision.summary()`: one readable line per decision, with no conversation text in it."""

from __future__ import annotations

from memguard import CompactionEvent, Guard, ObservationMasking
from memguard.testing import ConstantScorer, HashScorer

SECRET = "sk-live-4111-1111-1111-1111"
BEFORE = [
    {"role": "system", "content": "You fix bugs."},
    {"role": "user", "content": f"Use the key {SECRET}."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "app.py " * 40},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": '{"command": "cat app.py"}'}}]},
    {"role": "tool", "tool_call_id": "c2", "content": "print(1)"},
]


def agent(messages):
    return {"role": "assistant", "content": f"echo {len(messages)} {SECRET}"}


def review(p_harmful, **options):
    guard = Guard(ConstantScorer(p_harmful), identical_is_safe=False, **options)
    event = CompactionEvent(before=BEFORE, candidate=BEFORE[:2], strategy="summarization", conversation_id="c")
    return guard, guard.review(event, agent)


def test_commit_and_veto_lines_show_the_score_rounded():
    assert review(0.1234)[1].summary() == "commit: P(HARMFUL)=0.12 (summarization)"
    assert str(review(0.8765)[1]) == "veto: P(HARMFUL)=0.88 (summarization)"


def test_a_cooldown_skip_says_so_instead_of_a_missing_score():
    guard, _ = review(0.9, cooldown=2)
    gate = guard.gate(BEFORE, conversation_id="c")
    assert not gate.review
    assert guard.skip(gate, BEFORE, strategy="summarization").summary() == "veto: skipped (cooldown)"


def test_a_fallback_line_names_the_fallback_and_the_proposal_it_replaced():
    class ProposalHarmful(HashScorer):
        def score(self, prompts):
            scores = ConstantScorer(0.9).score(prompts)
            return [s.model_copy(update={"p_harmful": 0.9 if i == 0 else 0.05}) for i, s in enumerate(scores)]

    guard = Guard(ProposalHarmful(), identical_is_safe=False, search="parallel",
                  fallbacks=[ObservationMasking(keep_last=1)])
    event = CompactionEvent(before=BEFORE, candidate=BEFORE[:2], strategy="summarization")
    line = guard.review(event, agent).summary()
    assert line == "fallback observation_masking: P(HARMFUL)=0.05 (summarization: P(HARMFUL)=0.90)"


def test_audit_pending_and_errors_are_named_without_conversation_text():
    guard = Guard(ConstantScorer(0.5), mode="audit")
    event = CompactionEvent(before=BEFORE, candidate=BEFORE[:2], strategy="summarization")
    assert guard.review(event, agent).summary() == "audit: pending (scored in the background)"
    guard.close()

    class Broken:
        def score(self, prompts):
            raise KeyError(SECRET)

    failed = Guard(Broken()).review(event, agent)
    assert failed.summary().startswith("commit: (summarization) [error: KeyError")
    assert SECRET not in failed.summary()
