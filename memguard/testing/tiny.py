"""Tiny random MemRM look-alikes: a Qwen3 base + a LoRA adapter under `checkpoint-500/`.

They are saved to disk exactly like the real weights (safetensors, adapter in a subfolder), so
tests and benchmarks load them through the same public `MemRM.from_pretrained` users call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from memguard._extras import needs_extra
from memguard._quiet import quiet_model_libraries
from memguard.settings import DEFAULT_SUBFOLDER
from memguard.testing.tokenizers import (
    QWEN3_VOCAB_SIZE,
    build_byte_tokenizer,
    build_qwen_tokenizer,
    load_tokenizer,
)

SUBFOLDER = DEFAULT_SUBFOLDER
"""The adapter's subfolder, ``checkpoint-500``: laid out like the real adapter, not at the root."""
LORA_SETTINGS: dict[str, Any] = dict(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    task_type="CAUSAL_LM",
)
"""The real adapter's LoRA settings (MemGym checkpoint-500), as `peft.LoraConfig` keywords."""


def build_tiny_rm(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    head_dim: int = 64,
    vocab: int | None = None,
    tokenizer: Literal["qwen", "byte"] = "qwen",
    forced: float | None = None,
    init_std: float = 0.05,
    lora_b_std: float = 0.05,
) -> Path:
    """Write `path/base` (Qwen3ForCausalLM + tokenizer) and `path/adapter/checkpoint-500` (LoRA).

    Weights are random but scaled so P(HARMFUL) varies across prompts, and the LoRA B matrices
    are non-zero so merged and unmerged models are genuinely different computations. Load the
    result with ``MemRM.from_pretrained(base=str(path / "base"), adapter=str(path / "adapter"))``;
    its scores are meaningless.

    Args:
        path: The folder to write (created if missing).
        seed: The torch seed for the random weights.
        hidden_size: The model's hidden size.
        num_layers: Transformer layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention, as Qwen3 uses).
        head_dim: Size of each attention head.
        vocab: Embedding rows; None: Qwen3's 151,936 (or 264 for the byte tokenizer).
        tokenizer: "qwen" (the real Qwen2/3 vocabulary) or "byte" (a tiny byte-level one).
        forced: ``forced=d`` builds a model whose last-position logits are z(" Y") = -d/2 and
            z(" N") = +d/2 for every input, so P(HARMFUL) = sigmoid(d): it proves the label
            polarity end to end. None: random logits.
        init_std: Standard deviation of the base's random weights.
        lora_b_std: Standard deviation of the LoRA B matrices.

    Returns:
        `path`, holding ``base/`` and ``adapter/checkpoint-500/``.

    Raises:
        ImportError: memguard[local] is not installed (torch, transformers, peft).
        ValueError: `tokenizer` is not "qwen" or "byte", or `vocab` is smaller than the
            tokenizer.
    """

    # Imported quietly: bitsandbytes (pulled in by peft) warns at import about optional kernels.
    with quiet_model_libraries(), needs_extra("local", "memguard.testing.build_tiny_rm"):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import Qwen3Config, Qwen3ForCausalLM

    # transformers' and peft's progress bars and FutureWarnings say nothing about a throwaway model.
    with quiet_model_libraries():
        root = Path(path)
        base_dir, adapter_dir = root / "base", root / "adapter"
        if tokenizer == "qwen":
            build_qwen_tokenizer(base_dir)
            default_vocab = QWEN3_VOCAB_SIZE
        elif tokenizer == "byte":
            build_byte_tokenizer(base_dir)
            default_vocab = 264
        else:
            raise ValueError(f"tokenizer must be 'qwen' or 'byte', not {tokenizer!r}")
        tok = load_tokenizer(base_dir)
        vocab = vocab or default_vocab
        if vocab < len(tok):
            raise ValueError(f"vocab={vocab} does not cover the tokenizer's {len(tok)} tokens")

        torch.manual_seed(seed)
        config = Qwen3Config(
            vocab_size=vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            head_dim=head_dim,
            max_position_embeddings=40_960,
            # transformers 5 declares only rope_parameters (and still accepts this); 4.x needs it
            rope_theta=1_000_000.0,  # type: ignore[call-arg]
            tie_word_embeddings=forced is None,  # forcing needs its own lm_head rows
            initializer_range=init_std,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=None,
        )
        model = Qwen3ForCausalLM(config).float().eval()
        if forced is not None:
            _force_label_logits(model, tok, forced)
        model.save_pretrained(base_dir, safe_serialization=True)

        peft_model = get_peft_model(model, LoraConfig(**LORA_SETTINGS))
        peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    # Forced models keep a zero delta so the forced logits stay exact.
                    param.copy_(torch.randn_like(param) * (0.0 if forced is not None else lora_b_std))
        peft_model.save_pretrained(str(adapter_dir / SUBFOLDER), safe_serialization=True)
    return root


def _force_label_logits(model: Any, tok: Any, gap: float) -> None:
    """Make the last hidden state a constant unit vector e_0 whatever the input.

    Every token embeds to e_0, attention and MLP outputs are zeroed (o_proj, down_proj = 0), and
    the final RMSNorm's weight undoes its own scaling, so h = e_0 and logits = lm_head[:, 0].
    """
    import torch

    from memguard.scoring.labels import derive_label_ids

    y_id, n_id = derive_label_ids(tok)
    hidden = model.config.hidden_size
    eps = model.config.rms_norm_eps
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.zero_()
        emb[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        norm_w = model.model.norm.weight
        norm_w.zero_()
        # RMSNorm(e_0) = e_0 / sqrt(1/hidden + eps) * w  ->  choose w_0 so that h_0 = 1 exactly.
        norm_w[0] = (1.0 / hidden + eps) ** 0.5
        head = model.get_output_embeddings().weight
        head.zero_()
        head[y_id, 0] = -gap / 2
        head[n_id, 0] = gap / 2
