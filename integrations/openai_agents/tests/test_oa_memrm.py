"""End to end with the real scorer code path: a tiny MemRM with forced label logits, loaded by
`MemRM.from_pretrained` like the real weights, decides for a real Runner and ToolOutputTrimmer."""

from __future__ import annotations

import math

import pytest
from agents import RunConfig
from memguard import Guard, Verdict

from oa_agent import FACT, make_agent, normalise, run_turns, scripted_model, trimmer
from openai_agents_memguard import MemGuardInputFilter


@pytest.fixture(scope="module", params=[-4.0, 4.0], ids=["forced-safe", "forced-harmful"])
def forced_rm(request, tmp_path_factory):
    from memguard.scoring.local import MemRM
    from memguard.testing import build_tiny_rm

    root = build_tiny_rm(tmp_path_factory.mktemp("rm"), forced=request.param, tokenizer="byte")
    rm = MemRM.from_pretrained(base=str(root / "base"), adapter=str(root / "adapter"), subfolder="checkpoint-500")
    return request.param, rm


def test_tiny_memrm_decides_for_a_real_runner(forced_rm):
    gap, rm = forced_rm
    decisions = []
    guarded = MemGuardInputFilter(trimmer(), Guard(rm, cooldown=0, identical_is_safe=False),
                                  on_decision=decisions.append)
    model = scripted_model()
    history = run_turns(make_agent(guarded.wrap_model(model)), RunConfig(call_model_input_filter=guarded), mode="sync")
    first = decisions[0]
    assert first.p_harmful == pytest.approx(1 / (1 + math.exp(-gap)), abs=1e-3)
    assert first.scorer is not None and first.candidates[0].prompt_tokens > 0
    alpha_lookups = [step for step in normalise(history) if step[:1] == ("call",) and "alpha" in step[3]]
    looked_up_again = len(alpha_lookups) == 2
    if gap > 0:
        assert all(d.verdict is Verdict.VETO for d in decisions)
        assert normalise(history)[-1] == ("assistant", f"The launch code is {FACT}.") and not looked_up_again
    else:
        assert all(d.verdict is Verdict.COMMIT for d in decisions) and looked_up_again
