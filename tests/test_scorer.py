"""MemRM (in-process scorer) against an independent reference, on tiny random weights."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading

import pytest
import torch

from memguard import MemRM, Score, Scorer
from memguard.protocol import render_action, render_prompt
from memguard.testing import QWEN_N_ID, QWEN_Y_ID, build_byte_tokenizer, build_tiny_rm, load_tokenizer
from tests.conftest import rm_paths
from tests.trajdata import load, trajectory_paths

MAX_REF_TOKENS = 2200  # the reference materialises full logits: 2200 x 151,936 fp32 = 1.3 GB


# ------------------------------------------------------------------------ reference (independent)


def reference_p_harmful(root, prompts, tokenizer) -> list[float]:
    """Plain transformers + peft: unmerged PeftModel, fp32, full logits, no truncation."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.float32)
    model = PeftModel.from_pretrained(base, root / "adapter" / "checkpoint-500").eval()
    y_id, n_id = tokenizer.encode(" Y")[0], tokenizer.encode(" N")[0]
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
            logits = model(input_ids=ids).logits  # every position's logits, the plain way
            assert logits.shape[1] == ids.shape[1]
            z_y, z_n = logits[0, -1, y_id].double(), logits[0, -1, n_id].double()
            out.append(float(torch.exp(z_n) / (torch.exp(z_y) + torch.exp(z_n))))
    return out


def trajectory_prompts(tokenizer, limit: int = 5) -> list[str]:
    """Real SWE-agent contexts rendered by the protocol, recorded != proposed actions."""
    prompts = []
    for path in trajectory_paths():
        messages = load(path)
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(turns) < 2:
            continue
        step = turns[1]
        prompt = render_prompt(
            messages[:step],
            step=step,
            recorded=render_action(messages[step]),
            proposed=render_action(messages[turns[0]]),
            perturbation="strategy_swap__observation_masking",
        )
        if len(tokenizer.encode(prompt, add_special_tokens=False)) <= MAX_REF_TOKENS:
            prompts.append(prompt)
        if len(prompts) == limit:
            break
    assert len(prompts) >= 3
    return prompts


@pytest.fixture(scope="module")
def prompts(qwen_tokenizer):
    return trajectory_prompts(qwen_tokenizer)


@pytest.fixture(scope="module")
def reference(qwen_rm_dir, prompts, qwen_tokenizer):
    return reference_p_harmful(qwen_rm_dir, prompts, qwen_tokenizer)


def max_delta(scores: list[Score], ref: list[float]) -> float:
    return max(abs(s.p_harmful - r) for s, r in zip(scores, ref))


# ------------------------------------------------------------------------------------ fidelity


def test_merged_matches_reference(qwen_rm, prompts, reference):
    assert type(qwen_rm.model).__name__ == "Qwen3ForCausalLM"  # merged by default on CPU
    scores = qwen_rm.score(prompts)
    delta = max_delta(scores, reference)
    print(f"\nfidelity merged fp32: max|dp| = {delta:.3e} over {len(prompts)} trajectory prompts")
    assert delta < 1e-5
    assert all(s.n_truncated == 0 and s.n_tokens > 1000 for s in scores)
    assert len({round(s.p_harmful, 4) for s in scores}) > 1  # weights make scores vary


@pytest.fixture(scope="module")
def unmerged_rm(qwen_rm_dir):
    return MemRM.from_pretrained(**rm_paths(qwen_rm_dir), merge=False)


def test_unmerged_matches_reference(unmerged_rm, prompts, reference):
    assert type(unmerged_rm.model).__name__ == "PeftModelForCausalLM"
    delta = max_delta(unmerged_rm.score(prompts), reference)
    print(f"\nfidelity unmerged fp32: max|dp| = {delta:.3e}")
    assert delta < 1e-5


def test_adapter_is_really_applied(qwen_rm_dir, prompts, reference):
    """Guards the fidelity tests against an adapter that silently does nothing."""
    bare = MemRM.from_pretrained(base=str(qwen_rm_dir / "base"), adapter=None)
    assert max_delta(bare.score(prompts), reference) > 1e-3


def test_batched_equals_sequential(qwen_rm, prompts):
    one = [s.p_harmful for s in qwen_rm.score(prompts)]
    batched = [s.p_harmful for s in qwen_rm.score(prompts, batch_size=len(prompts))]
    assert max(abs(a - b) for a, b in zip(one, batched)) < 1e-5


@pytest.mark.parametrize("which", ["merged", "unmerged"])
def test_only_last_position_logits(which, request, prompts):
    """logits_to_keep=1 must reach the LM head through PeftModel too (no full-sequence logits)."""
    rm = request.getfixturevalue("qwen_rm" if which == "merged" else "unmerged_rm")
    shapes = []
    head = rm.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    try:
        rm.score(prompts[:1])
    finally:
        handle.remove()
    # A long lone prompt is scored as prefix prefill (kept for the next event) + suffix pass;
    # every LM-head call must still see one position only.
    assert 1 <= len(shapes) <= 2
    assert all(shape == (1, 1, head.weight.shape[0]) for shape in shapes)


# NF4 on CPU works with bitsandbytes 0.50 (no GPU needed). On these tiny random weights (hidden
# 128, every projection 4-bit) the measured max|dp| against the fp32 reference is 0.081 (seed 0,
# 5 trajectory prompts); the bound is ~2.5x that. It says nothing about the real 1.7B model's
# NF4 error, which must be measured on real weights.
NF4_TOLERANCE = 0.2


def test_nf4_cpu_within_tolerance(qwen_rm_dir, prompts, reference):
    pytest.importorskip("bitsandbytes")
    rm = MemRM.from_pretrained(**rm_paths(qwen_rm_dir), quantization="nf4", device="cpu")
    assert rm.identity.quantization == "nf4"
    assert type(rm.model).__name__ == "PeftModelForCausalLM"  # LoRA kept unmerged on 4-bit
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in rm.model.modules())
    delta = max_delta(rm.score(prompts), reference)
    print(f"\nNF4 (CPU) vs fp32 reference: max|dp| = {delta:.3e} (bound {NF4_TOLERANCE})")
    assert 0 < delta < NF4_TOLERANCE


def test_auto_quantization_is_none_on_cpu(qwen_rm):
    assert qwen_rm.identity.quantization is None
    assert qwen_rm.model.dtype == torch.float32


def test_merge_with_nf4_refused(byte_rm_dir):
    with pytest.raises(ValueError, match="re-quantize"):
        MemRM.from_pretrained(**rm_paths(byte_rm_dir), quantization="nf4", merge=True)


# ------------------------------------------------------------------------------------ truncation


def test_left_truncation_keeps_judgment_turn(qwen_rm, prompts, qwen_tokenizer, qwen_rm_dir):
    limit = 300  # positions, the label's included: the prompt keeps limit - 1 tokens
    kept_n = limit - 1
    rm = MemRM.from_model(qwen_rm.model, qwen_rm.tokenizer, max_length=limit)
    prompt = prompts[0]
    ids = qwen_tokenizer.encode(prompt, add_special_tokens=False)
    assert len(ids) > limit
    (score,) = rm.score([prompt])
    assert score.n_tokens == kept_n
    assert score.n_truncated == len(ids) - kept_n
    kept = qwen_tokenizer.decode(ids[-kept_n:])
    assert kept.endswith("Answer Y if safe, N if harmful.\n\nAnswer:")
    assert "Proposed action under perturbation 'strategy_swap__observation_masking'" in kept
    assert score.p_harmful == pytest.approx(rm.score_ids(ids[-kept_n:]), abs=5e-7)  # prefix path vs whole: fp32 order
    # and against the independent reference on the left-cut text's ids
    ref_model = qwen_rm.model
    with torch.no_grad():
        z = ref_model(input_ids=torch.tensor([ids[-kept_n:]])).logits[0, -1]
    expected = torch.softmax(z[[QWEN_Y_ID, QWEN_N_ID]].double(), -1)[1].item()
    assert score.p_harmful == pytest.approx(expected, abs=1e-6)


def test_no_truncation_when_it_fits(qwen_rm):
    (score,) = qwen_rm.score(["[User]\nhi\n\nAnswer:"])
    assert score.n_truncated == 0 and score.n_tokens == qwen_rm.count_tokens("[User]\nhi\n\nAnswer:")


# ------------------------------------------------------------------------------------ labels


def test_qwen_label_ids(qwen_rm):
    assert qwen_rm.label_ids == (QWEN_Y_ID, QWEN_N_ID) == (809, 451)


def test_multi_token_label_refused(byte_rm_dir, tmp_path):
    split = load_tokenizer(build_byte_tokenizer(tmp_path / "split", single_token_labels=False))
    model = MemRM.from_pretrained(**rm_paths(byte_rm_dir)).model
    with pytest.raises(ValueError, match="single token"):
        MemRM.from_model(model, split)


# ------------------------------------------------------------------------------------ polarity


@pytest.mark.parametrize("gap", [20.0, -20.0, 0.0, 1.5, -0.7])
def test_polarity_forced_byte(tmp_path, gap):
    root = build_tiny_rm(tmp_path, tokenizer="byte", forced=gap)
    rm = MemRM.from_pretrained(**rm_paths(root))
    scores = rm.score(["[User]\nanything\n\nAnswer:", "x" * 50])
    expected = torch.sigmoid(torch.tensor(gap, dtype=torch.float64)).item()
    for s in scores:
        assert s.p_harmful == pytest.approx(expected, abs=1e-6)
        assert s.p_safe == pytest.approx(1 - expected, abs=1e-6)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_logits_raise_instead_of_giving_a_nan_score(tmp_path, value):
    """Before: fp16 overflow gave p_harmful = NaN, which no threshold can judge (and `memguard score`
    wrote it with exit 0). Now every path raises; the guard's on_error decides."""
    from memguard import CompactionEvent, Guard, Verdict
    from memguard.scoring import NonFiniteScoreError
    from tests.doubles import FactPolicy, swe_conversation

    root = build_tiny_rm(tmp_path, tokenizer="byte", forced=3.0)
    rm = MemRM.from_pretrained(**rm_paths(root))
    with torch.no_grad():
        rm.model.get_output_embeddings().weight[list(rm.label_ids), 0] = value
    shared = "[System]\n" + "a long shared view. " * 20
    for prompts in (["[User]\nhi\n\nAnswer:"], [shared + "one\n\nAnswer:", shared + "two!\n\nAnswer:"]):
        with pytest.raises(NonFiniteScoreError, match="not finite"):
            rm.score(prompts)
    assert rm.prefix_store is None or len(rm.prefix_store) == 0  # nothing non-finite is kept
    before = swe_conversation(6, fact="FACT-42")
    decision = Guard(rm, on_error="closed", identical_is_safe=False).review(
        CompactionEvent(before=before, candidate=before[:2] + before[-2:]), FactPolicy("FACT-42"))
    assert decision.verdict is Verdict.VETO and "NonFiniteScoreError" in (decision.error or "")


def test_polarity_forced_qwen_vocab(tmp_path_factory):
    """Preferring " N" (id 451) means HARMFUL: p_harmful = sigmoid(z_N - z_Y)."""
    root = build_tiny_rm(tmp_path_factory.mktemp("forced_qwen"), tokenizer="qwen", forced=3.0)
    rm = MemRM.from_pretrained(**rm_paths(root))
    (s,) = rm.score(["[User]\nIs it safe?\n\nAnswer:"])
    assert s.p_harmful == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=1e-6)
    assert s.p_harmful > 0.95


# ------------------------------------------------------------------------------------ loading


def test_identity_and_fingerprint(qwen_rm, qwen_rm_dir):
    ident = qwen_rm.identity
    assert len(ident.fingerprint) == 16 and len(ident.base_fingerprint) == 16
    assert ident.fingerprint != ident.base_fingerprint  # the adapter counts too
    assert ident.base == str(qwen_rm_dir / "base")
    assert ident.subfolder == "checkpoint-500"
    assert isinstance(qwen_rm, Scorer)


def _copy_adapter(byte_rm_dir, tmp_path):
    dst = tmp_path / "adapter"
    shutil.copytree(byte_rm_dir / "adapter", dst)
    return dst, dst / "checkpoint-500"


def test_pickle_only_adapter_refused(byte_rm_dir, tmp_path):
    from safetensors.torch import load_file

    root, sub = _copy_adapter(byte_rm_dir, tmp_path)
    state = load_file(sub / "adapter_model.safetensors")
    (sub / "adapter_model.safetensors").unlink()
    torch.save(state, sub / "adapter_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        MemRM.from_pretrained(base=str(byte_rm_dir / "base"), adapter=str(root), subfolder="checkpoint-500")


def test_missing_paths_are_clear(byte_rm_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter path does not exist"):
        MemRM.from_pretrained(base=str(byte_rm_dir / "base"), adapter=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="base model path does not exist"):
        MemRM.from_pretrained(base=str(tmp_path / "nobase"), adapter=str(byte_rm_dir / "adapter"))
    with pytest.raises(FileNotFoundError, match="subfolder 'checkpoint-9'.*checkpoint-500"):
        MemRM.from_pretrained(**{**rm_paths(byte_rm_dir), "subfolder": "checkpoint-9"})
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        MemRM.from_pretrained(**{**rm_paths(byte_rm_dir), "subfolder": None})


def test_base_without_safetensors_refused(byte_rm_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(byte_rm_dir / "base", base)
    for f in base.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ValueError, match="safetensors"):
        MemRM.from_pretrained(base=str(base), adapter=str(byte_rm_dir / "adapter"), force=True)


def _edit_config(sub, **changes):
    cfg_file = sub / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.update(changes)
    cfg_file.write_text(json.dumps(cfg))


def test_base_mismatch_refused_unless_forced(byte_rm_dir, tmp_path):
    root, sub = _copy_adapter(byte_rm_dir, tmp_path)
    _edit_config(sub, base_model_name_or_path="Qwen/Qwen3-1.7B")
    kwargs = dict(base=str(byte_rm_dir / "base"), adapter=str(root), subfolder="checkpoint-500")
    with pytest.raises(ValueError, match="trained on 'Qwen/Qwen3-1.7B'"):
        MemRM.from_pretrained(**kwargs)
    assert MemRM.from_pretrained(**kwargs, force=True).score(["a\n\nAnswer:"])


def test_hub_cache_names_match_loosely():
    from memguard.scoring.loading import model_name

    cache = "/h/hub/models--Qwen--Qwen3-1.7B-Base/snapshots/0123abcd"
    assert model_name(cache) == model_name("Qwen/Qwen3-1.7B-Base") == model_name("/m/qwen3-1.7b-base/")


def test_missing_target_modules_refused(byte_rm_dir, tmp_path):
    root, sub = _copy_adapter(byte_rm_dir, tmp_path)
    _edit_config(sub, target_modules=["q_proj", "c_attn"])
    with pytest.raises(ValueError, match=r"\['c_attn'\]"):
        MemRM.from_pretrained(base=str(byte_rm_dir / "base"), adapter=str(root), subfolder="checkpoint-500")


def test_offline_hub_id_gives_clear_error(byte_rm_dir):
    with pytest.raises(OSError, match="could not get adapter 'MemGym/not-cached-anywhere'"):
        MemRM.from_pretrained(base=str(byte_rm_dir / "base"), adapter="MemGym/not-cached-anywhere", force=True)


# ------------------------------------------------------------------------------------ concurrency


def test_threads_match_sequential(qwen_rm, prompts):
    short = [p[-3000:] for p in prompts]  # keep it quick; content still real
    expected = [s.p_harmful for s in qwen_rm.score(short)]
    results: dict[int, list[float]] = {}

    def work(k: int) -> None:
        order = short[k % len(short) :] + short[: k % len(short)]
        got = [s.p_harmful for s in qwen_rm.score(order)]
        results[k] = got[len(short) - k % len(short) :] + got[: len(short) - k % len(short)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))


def test_ascore_matches_score(qwen_rm, prompts):
    short = [p[-2000:] for p in prompts[:2]]

    async def main():
        return await asyncio.gather(qwen_rm.ascore(short), qwen_rm.ascore(short[::-1]))

    a, b = asyncio.run(main())
    assert a == qwen_rm.score(short) and b == a[::-1]


def test_score_rejects_a_bare_string_and_empty_prompt(qwen_rm):
    with pytest.raises(TypeError):
        qwen_rm.score("a prompt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        qwen_rm.score([""])
