"""Shared-prefix scoring: one prefill of what candidates share, one short pass per candidate.

All candidates of one compaction event render the same view and recorded action; only the
perturbation tag and the proposed action differ, at the very end of the prompt. So the scorer
prefills the longest common prefix of the candidates' *token ids* once, keeps its keys/values,
and runs each candidate's few remaining tokens against them.

Working on token ids (not text) makes this exact by construction: byte-level BPE may merge across
any text boundary, but the ids compared here are those of each whole prompt, already cut from the
left like `MemRM.score` cuts them, so the model reads the same ids at the same positions as in a
whole-prompt forward. Causal attention means keys/values at positions < m depend only on ids < m.

A `PrefixStore` keeps prefixes across calls (bounded by bytes, least recently used out), so the
next event of a conversation whose view extends the last one prefills only the new turns.
`memguard.scoring.stream` runs the same split one decoder layer at a time instead, holding one
layer's keys/values rather than all of them, when the prefix is not going to be kept.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

__all__ = [
    "KV",
    "PrefixGroup",
    "PrefixStore",
    "common_prefix_len",
    "kv_bytes",
    "kv_bytes_per_token",
    "plan_prefix_groups",
    "prefill",
    "suffix_logits",
]

KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]
"""Per-layer (keys, values), each shaped (1, kv_heads, tokens, head_dim)."""


# ------------------------------------------------------------------------------ planning


def common_prefix_len(a: Sequence[int] | torch.Tensor, b: Sequence[int] | torch.Tensor) -> int:
    """Length of the longest common prefix of two id sequences (vectorised, ~µs at 32K)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    ta = torch.as_tensor(a[:n]) if not isinstance(a, torch.Tensor) else a[:n]
    tb = torch.as_tensor(b[:n]) if not isinstance(b, torch.Tensor) else b[:n]
    diff = (ta != tb).nonzero()
    return int(diff[0, 0]) if diff.numel() else n


@dataclass(frozen=True)
class PrefixGroup:
    """Prompts (by index) that share their first `prefix_len` ids; each has >= 1 id after it."""

    indices: tuple[int, ...]
    prefix_len: int


def plan_prefix_groups(seqs: Sequence[Sequence[int]], min_prefix: int) -> list[PrefixGroup]:
    """Cluster sequences by shared prefix: sort them, cut where neighbours share too little.

    In lexicographic order the common prefix of a run equals the minimum over adjacent pairs, so
    one pass suffices. A sequence joins the current run while the run would still share at least
    `min_prefix` ids and at least half of what it shared before (candidates of one event stay
    together; another conversation that only shares a system prompt starts its own run).
    A group's prefix stops one id before its shortest member's end: every member needs one id
    of its own to read the last-position logits from. Loners come back with prefix_len 0.
    """
    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    groups: list[PrefixGroup] = []
    run: list[int] = []
    run_lcp = run_short = 0

    def close() -> None:
        if len(run) == 1:
            groups.append(PrefixGroup((run[0],), 0))
        elif run:
            groups.append(PrefixGroup(tuple(sorted(run)), min(run_lcp, run_short - 1)))

    for i in order:
        if run:
            lcp = common_prefix_len(seqs[run[-1]], seqs[i])
            shared = lcp if len(run) == 1 else min(run_lcp, lcp)
            shortest = min(run_short, len(seqs[i]))
            usable = min(shared, shortest - 1)
            if usable >= min_prefix and (len(run) == 1 or 2 * shared >= run_lcp):
                run.append(i)
                run_lcp, run_short = shared, shortest
                continue
            close()
        run, run_lcp, run_short = [i], 0, len(seqs[i])
    close()
    return groups


# ------------------------------------------------------------------------------ KV caches


def kv_bytes(kv: KV) -> int:
    return sum(k.nbytes + v.nbytes for k, v in kv)


def kv_prefix(kv: KV, length: int) -> KV:
    """The first `length` positions (views, no copy)."""
    return tuple((k[..., :length, :], v[..., :length, :]) for k, v in kv)


class _PrefixLayer(DynamicLayer):
    """A cache layer that starts from given keys/values.

    `grow=False` (scoring a candidate's suffix): returns prefix + new states but stores nothing,
    so the shared prefix stays intact for the next candidate and no full-size copy is kept.
    `grow=True` (extending a stored prefix): behaves like a normal dynamic layer.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, *, grow: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # transformers' CacheLayerMixin.__init__(**kwargs)
        self.keys, self.values = keys, values
        self.device, self.dtype = keys.device, keys.dtype
        self.is_initialized = True
        self._grow = grow

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keys is not None and self.values is not None  # set in __init__
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        if self._grow:
            self.keys, self.values = keys, values
        return keys, values


def _cache_from(kv: KV | None, *, grow: bool) -> DynamicCache:
    cache = DynamicCache()
    if kv:
        cache.layers = [_PrefixLayer(k, v, grow=grow) for k, v in kv]
    return cache


def _kv_of(cache: DynamicCache) -> KV:
    layers: list[Any] = list(cache.layers)  # dynamic layers only: they all hold keys and values
    return tuple((layer.keys, layer.values) for layer in layers)


# ------------------------------------------------------------------------------ forwards


def _cache_kwarg(model: Any) -> str:
    model_class: Any = type(model.get_base_model() if hasattr(model, "get_base_model") else model)
    return _cache_kwarg_for(model_class)


@functools.cache
def _cache_kwarg_for(cls: Any) -> str:
    """transformers 5.x names the cache argument `cache`; earlier versions `past_key_values`."""
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _run(model: Any, ids: Sequence[int], start: int, cache: DynamicCache, device: torch.device) -> Any:
    positions = torch.arange(start, len(ids), device=device)
    new = torch.tensor([list(ids[start:])], dtype=torch.long, device=device)
    return model(input_ids=new, position_ids=positions[None], use_cache=True, logits_to_keep=1,
                 **{_cache_kwarg(model): cache})


def prefill(model: Any, ids: Sequence[int], *, start: KV | None = None, chunk: int | None = None) -> KV:
    """Keys/values for `ids`; with `start` (the KV of ids[:m]) only ids[m:] are run.

    `chunk` runs that many tokens at a time: MLP temporaries shrink to a chunk's, but every chunk
    after the first needs an explicit attention mask, which keeps SDPA off its fused causal
    kernel (measured ~1.5x slower on CPU). The default is one pass.
    """
    done = 0 if not start else start[0][0].shape[-2]
    if done >= len(ids):
        return kv_prefix(start, len(ids)) if start else ()
    cache = _cache_from(start, grow=True)
    device = next(model.parameters()).device
    while done < len(ids):
        end = len(ids) if chunk is None else min(len(ids), done + chunk)
        _run(model, ids[:end], done, cache, device)
        done = end
    return _kv_of(cache)


def suffix_logits(model: Any, kv: KV, ids: Sequence[int], label_ids: Sequence[int]) -> torch.Tensor:
    """Label logits at the last position of `ids`, whose first len(kv) ids are already in `kv`."""
    done = kv[0][0].shape[-2]
    if done >= len(ids):
        raise ValueError("a suffix pass needs at least one id after the cached prefix")
    out = _run(model, ids, done, _cache_from(kv, grow=False), kv[0][0].device)
    logits: torch.Tensor = out.logits[0, -1, list(label_ids)].float()
    return logits


# ------------------------------------------------------------------------------ the store


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys+values one token costs (from the config; 4-bit weights keep a 16-bit KV)."""
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.bfloat16)
    per_token: int = 2 * config.num_hidden_layers * kv_heads * head_dim * torch.finfo(dtype).bits // 8
    return per_token


class PrefixStore:
    """Prefix keys/values kept across calls, bounded by bytes, least recently used out.

    Entries are keyed by their token ids; a lookup returns the entry sharing the longest prefix
    with the query. An entry mostly covered by a newer one (the same conversation, one event
    later) is dropped when the newer one is stored. Not thread-safe on its own: `MemRM` uses it
    under its forward lock.
    """

    def __init__(self, max_bytes: int, *, min_match: int = 32, supersede: float = 0.9) -> None:
        if max_bytes < 0:
            raise ValueError(f"prefix_cache_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.min_match = int(min_match)
        self.supersede = supersede
        self._entries: OrderedDict[int, tuple[torch.Tensor, KV, int]] = OrderedDict()
        self._next_key = 0
        self._bytes = 0
        self.hits = 0
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """(m, KV of ids[:m]) for the stored entry sharing the longest prefix, or (0, None)."""
        if not self._entries:
            return 0, None
        query = torch.as_tensor(list(ids))
        best, best_key = 0, None
        for key, (stored, _, _) in self._entries.items():
            m = common_prefix_len(stored, query)
            if m > best:
                best, best_key = m, key
        if best_key is None or best < self.min_match:
            return 0, None
        self._entries.move_to_end(best_key)
        _, kv, _ = self._entries[best_key]
        self.hits += 1
        self.reused_tokens += best
        return best, kv_prefix(kv, best)

    def put(self, ids: Sequence[int], kv: KV) -> bool:
        """Keep `kv` (the keys/values of `ids`). False when it cannot fit the byte budget."""
        stored = torch.as_tensor(list(ids))
        for key, (other, _, other_size) in list(self._entries.items()):
            shared = common_prefix_len(other, stored)
            if shared == len(stored):  # already held (maybe as part of a longer entry)
                self._entries.move_to_end(key)
                return True
            if shared >= self.supersede * len(other):
                del self._entries[key]
                self._bytes -= other_size
        size = kv_bytes(kv)
        if size > self.max_bytes:
            return False
        while self._entries and self._bytes + size > self.max_bytes:
            _, (_, _, old_size) = self._entries.popitem(last=False)
            self._bytes -= old_size
        self._entries[self._next_key] = (stored, kv, size)
        self._next_key += 1
        self._bytes += size
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
