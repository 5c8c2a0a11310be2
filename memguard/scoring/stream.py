"""Layer-streamed shared-prefix scoring: hold one decoder layer's prefix keys/values at a time.

`prefix.prefill` + `prefix.suffix_logits` keep the shared prefix's keys/values for *every* layer
while the candidates run (112 KiB per token on Qwen3-1.7B in bf16: 1.75 GiB at 16K tokens). Here
the model is walked one decoder layer at a time instead: the prefix's hidden states go through
layer i (which yields layer i's keys/values), then each candidate's suffix hidden states go
through layer i attending to them, and layer i's keys/values are dropped before layer i+1. The
peak holds one layer's prefix KV (~64 MiB at 16K) next to the prefix's hidden states.

The computation is the model's own, module by module (`embed_tokens`, `rotary_emb`, each decoder
layer, `norm`, `lm_head`), with masks from transformers' `create_causal_mask`, so the results
equal `prefill` + `suffix_logits` (and whole-prompt forwards). PEFT injects LoRA into the layers'
linear modules in place, so an unmerged `PeftModel` is walked through the same modules.

The trade-off against the cached path: nothing is left to keep, so a `PrefixStore` cannot reuse
this prefix for the conversation's next event (a stored prefix can still be *read* as the start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import create_causal_mask

from memguard.scoring.prefix import KV, _cache_kwarg_for, _PrefixLayer

__all__ = ["can_stream", "streamed_label_logits"]


def _causal_lm(model: Any) -> Any:
    """The transformers causal LM under a PEFT wrapper (its linear modules carry the LoRA)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder(lm: Any) -> Any:
    return getattr(lm, lm.base_model_prefix)


def can_stream(model: Any) -> bool:
    """True for decoder-only models with full causal attention in every layer (Qwen3, Llama...)."""
    lm = _causal_lm(model)
    decoder = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    if decoder is None or not all(hasattr(decoder, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return False
    if not hasattr(lm, "lm_head"):
        return False
    types = getattr(lm.config, "layer_types", None) or ["full_attention"]
    return all(t == "full_attention" for t in types)


def _one_layer_cache(layer: DynamicLayer, n_layers: int) -> DynamicCache:
    """A cache whose every index is the same layer object: it holds the current layer only."""
    cache = DynamicCache()
    cache.layers = [layer] * n_layers
    return cache


def streamed_label_logits(
    model: Any,
    seqs: Sequence[Sequence[int]],
    prefix_len: int,
    label_ids: Sequence[int],
    *,
    start: KV | None = None,
) -> torch.Tensor:
    """Label logits (k, len(label_ids)) at the last position of each of `seqs`.

    All `seqs` share their first `prefix_len` ids and each has at least one id after them.
    `start`, the keys/values of the first m <= prefix_len ids (e.g. from a `PrefixStore`), skips
    running those ids; it is read, never extended or kept.
    """
    if not can_stream(model):
        raise ValueError(f"{type(_causal_lm(model)).__name__} cannot be layer-streamed")
    if prefix_len < 1:
        raise ValueError(f"a shared prefix needs at least one id, got prefix_len={prefix_len}")
    if any(len(s) <= prefix_len for s in seqs):
        raise ValueError("every sequence needs at least one id after the shared prefix")
    lm = _causal_lm(model)
    decoder = _decoder(lm)
    layers = decoder.layers[: lm.config.num_hidden_layers]
    layer_class: Any = type(layers[0])
    cache_kwarg = _cache_kwarg_for(layer_class)
    device = next(model.parameters()).device
    done = start[0][0].shape[-2] if start else 0
    if start and (done > prefix_len or len(start) != len(layers)):
        raise ValueError("start must hold every layer's keys/values of at most prefix_len ids")

    def embed(ids: Sequence[int], first: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.tensor([list(ids)], dtype=torch.long, device=device)
        positions = torch.arange(first, first + len(ids), device=device)[None]
        return decoder.embed_tokens(tokens), positions

    def mask(hidden: torch.Tensor, positions: torch.Tensor, cache: DynamicCache) -> Any:
        return create_causal_mask(config=lm.config, inputs_embeds=hidden, attention_mask=None,
                                  cache=cache, position_ids=positions)

    def run(layer: Any, hidden: torch.Tensor, positions: torch.Tensor, rope: Any, attn_mask: Any,
            cache: DynamicCache) -> torch.Tensor:
        out = layer(hidden, attention_mask=attn_mask, position_embeddings=rope, position_ids=positions,
                    use_cache=True, **{cache_kwarg: cache})
        hidden_out: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return hidden_out

    # The prefix ids still to run (none when `start` covers the whole prefix) and each suffix.
    prefix_h, prefix_pos = embed(seqs[0][done:prefix_len], done) if prefix_len > done else (None, None)
    prefix_rope = decoder.rotary_emb(prefix_h, prefix_pos) if prefix_h is not None else None
    suffixes = [embed(s[prefix_len:], prefix_len) for s in seqs]
    suffix_h = [h for h, _ in suffixes]
    suffix_pos = [pos for _, pos in suffixes]
    suffix_rope = [decoder.rotary_emb(h, pos) for h, pos in suffixes]
    del suffixes
    prefix_mask: Any = None
    suffix_masks: list[Any] = []

    for i, layer in enumerate(layers):
        # Layer i's prefix keys/values: read from `start`, extended by the prefix ids still to run.
        held = _PrefixLayer(*start[i], grow=True) if start else DynamicLayer()
        if prefix_h is not None:
            assert prefix_pos is not None  # embedded together with prefix_h
            cache = _one_layer_cache(held, len(layers))
            if i == 0:
                prefix_mask = mask(prefix_h, prefix_pos, cache)
            prefix_h = run(layer, prefix_h, prefix_pos, prefix_rope, prefix_mask, cache)
            del cache
        keys, values = held.keys, held.values
        assert keys is not None and values is not None  # from `start`, or the prefix just run
        del held
        for j in range(len(seqs)):
            view = _one_layer_cache(_PrefixLayer(keys, values, grow=False), len(layers))
            if i == 0:
                suffix_masks.append(mask(suffix_h[j], suffix_pos[j], view))
            suffix_h[j] = run(layer, suffix_h[j], suffix_pos[j], suffix_rope[j], suffix_masks[j], view)
        del keys, values, view  # layer i's prefix KV goes before layer i+1 runs

    last = torch.cat([h[:, -1:, :] for h in suffix_h], dim=0)  # (k, 1, hidden)
    logits = lm.lm_head(decoder.norm(last))
    labels: torch.Tensor = logits[:, -1, list(label_ids)].float()
    return labels
