"""`memguard.testing.LookupScorer`: P(HARMFUL) looked up by what each real rendered prompt asks about."""

from __future__ import annotations

import pytest
from memguard import render_prompt
from memguard.testing import LookupScorer

VIEW = [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Proposed action under "
                                                          "perturbation 'strategy_swap__decoy':\nrm -rf /"}]


def prompt(strategy: str, action: str) -> str:
    return render_prompt(VIEW, step=3, recorded="ls", proposed=action, perturbation=f"strategy_swap__{strategy}")


def test_the_strategy_under_review_is_looked_up_first_then_the_action_then_the_default():
    scorer = LookupScorer({"cat ": 0.7}, default=0.05, by_strategy={"recent_window": 0.9})
    scores = scorer.score([prompt("recent_window", "cat a.py"), prompt("masking", "cat a.py"), prompt("masking", "ls")])
    assert [s.p_harmful for s in scores] == [0.9, 0.7, 0.05]
    assert scorer.seen == [("strategy_swap__recent_window", "cat a.py"), ("strategy_swap__masking", "cat a.py"),
                           ("strategy_swap__masking", "ls")]  # the judgment turn's, not the decoy in the view
    assert len(scorer.prompts) == 3


@pytest.mark.parametrize("match, expected", [("exact", [0.05, 0.05, 0.8]), ("prefix", [0.8, 0.05, 0.8]),
                                             ("contains", [0.8, 0.8, 0.8])])
def test_action_keys_match_exactly_by_prefix_or_anywhere(match, expected):
    scorer = LookupScorer({"grep x": 0.8}, default=0.05, action_match=match)
    actions = ["grep x a.py", "cd src && grep x a.py", "grep x"]
    assert [s.p_harmful for s in scorer.score([prompt("s", a) for a in actions])] == expected


def test_strategy_keys_match_the_name_or_anywhere_in_the_tag():
    exact = LookupScorer(default=0.1, by_strategy={"window": 0.9})
    anywhere = LookupScorer(default=0.1, by_strategy={"window": 0.9}, strategy_match="contains")
    prompts = [prompt("window", "ls"), prompt("sliding_window_11", "ls")]
    assert [s.p_harmful for s in exact.score(prompts)] == [0.9, 0.1]
    assert [s.p_harmful for s in anywhere.score(prompts)] == [0.9, 0.9]


def test_a_prompt_that_breaks_the_protocol_is_refused():
    scorer = LookupScorer()
    with pytest.raises(AssertionError, match="Answer:"):
        scorer.score([prompt("s", "ls") + " Y"])
    with pytest.raises(AssertionError, match="without a proposed action"):
        scorer.score(["something else\n\nAnswer:"])
