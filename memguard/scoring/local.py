"""MemRM in-process: transformers + peft, last-position logits only, thread-safe.

The model is asked one question per prompt: which of the two label tokens comes next. So only
the last position's logits are computed (`logits_to_keep=1`); full logits at 32K tokens would
cost ~20 GB in fp32 for two numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import threading
from typing import Any, Literal

from memguard._concurrency import start_daemon
from memguard._extras import needs_extra
from memguard._quiet import quiet_model_libraries
from memguard.scoring.base import NonFiniteScoreError, Score, ScorerIdentity
from memguard.scoring.batching import length_batches
from memguard.scoring.cut import Cut, check_cut, cut_starts
from memguard.scoring.labels import derive_label_ids
from memguard.scoring.loading import (
    base_fingerprint,
    check_adapter_shapes,
    check_base_name,
    check_local_base,
    check_target_modules,
    combined_fingerprint,
    local_model_dir,
    resolve_adapter,
)
from memguard.scoring.segments import SegmentEncoder, segment_safe
from memguard.settings import DEFAULT_ADAPTER, DEFAULT_BASE, DEFAULT_MAX_LENGTH, DEFAULT_SUBFOLDER
from memguard.text import safe_text

with needs_extra("local", "MemRM (memguard.scoring.local)"):
    import torch

    from memguard.scoring.prefix import (
        PrefixStore,
        kv_bytes_per_token,
        plan_prefix_groups,
        prefill,
        suffix_logits,
    )
    from memguard.scoring.stream import can_stream, streamed_label_logits

DEFAULT_PREFIX_CACHE_BYTES = 1 << 30  # prefixes kept across calls (one 32K prefix of 1.7B bf16 is 3.5 GiB)
DEFAULT_MIN_SHARED_PREFIX = 256  # below this, one prefill + k suffix passes saves little

Quantization = Literal["auto", "nf4"] | None
QUANTIZATIONS = ("auto", "nf4", None)
PrefixMode = Literal["auto", "cache", "stream"]
PREFIX_MODES = ("auto", "cache", "stream")


def _resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return resolved


def _resolve_quantization(quantization: Quantization, device: torch.device) -> str | None:
    if quantization == "auto":
        return "nf4" if device.type == "cuda" else None
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be 'auto', 'nf4' or None, not {quantization!r}")
    return quantization


def _nf4_config() -> Any:
    """QLoRA's NF4 recipe, the setting MemGym evaluated the adapter under."""
    with needs_extra("quant", "quantization 'nf4' (or no quantization: quantization=None, --quantization none, "
                              "TOML quantization = \"none\")"):
        importlib.import_module("bitsandbytes")  # transformers would only say "install bitsandbytes"
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


class MemRM:
    """The MemRM reward model in this process. Satisfies `memguard.scoring.Scorer`.

    One instance may be shared by many threads: forwards are serialised by a lock (a second
    concurrent forward would only compete for the same device). Use `ascore` from event loops,
    or a `ScoringWorker` to micro-batch many agents' requests.

    Prompts of one call that share at least `min_shared_prefix` leading tokens (the candidates of
    one compaction event) are scored with one prefill of the shared part and a short pass per
    prompt (`memguard.scoring.prefix`); results equal whole-prompt scoring. Up to
    `prefix_cache_bytes` of such prefixes are kept across calls, so the next event of a
    conversation whose context grew prefills only the new turns (0 disables this).

    `prefix_mode` picks how a shared prefix is run, memory against reuse across events:

    - "cache": prefill the prefix once and keep every layer's keys/values while the candidates
      run (112 KiB/token on Qwen3-1.7B bf16: 1.75 GiB at 16K), then hand them to the store.
    - "stream": walk the model one decoder layer at a time (`memguard.scoring.stream`): the peak
      holds one layer's prefix keys/values (~64 MiB at 16K), but nothing is left for the store,
      so the next event of the conversation prefills its whole view again.
    - "auto" (default): "cache" when the prefix's keys/values fit the store's budget (they are
      kept afterwards anyway, and reused), else "stream" (store off, or a prefix too long to
      keep). A stored prefix is still read as a head start when streaming.

    Prompts longer than `max_length` - 1 tokens are cut from the left (`memguard.scoring.cut`:
    `max_length` counts the label's position too). `cut="exact"` (default) cuts each prompt on
    its own, as training did; `cut="shared"` cuts the candidates of one call at one start
    offset so they still share their prefix past the cut (a few more tokens lost at the far
    left; `cut_block` rounds that start so successive events can reuse a stored prefix).

    Any string can be scored: lone surrogates are replaced first (`memguard.text.safe_text`), so a
    prompt scores exactly as its cleaned text. Non-finite logits (an fp16 overflow) raise
    `NonFiniteScoreError` rather than give a NaN the guard would have to interpret.

    Build it with `from_pretrained` (hub ids or local paths) or `from_model` (a model already
    loaded); this constructor takes a loaded model too, and needs its identity.

    Args:
        model: The causal LM, the adapter applied (merged or a `PeftModel`).
        tokenizer: Its tokenizer; each label (" Y", " N") must be one token.
        identity: What the model is, recorded on every decision.
        max_length: Positions the model reads, the label's included.
        prefix_cache_bytes: Bytes of shared prefixes' keys/values kept across calls (0: none).
        min_shared_prefix: Leading tokens prompts must share to be scored with one prefill.
        prefix_mode: "auto", "cache" or "stream" (above).
        cut: "exact" or "shared" (above).
        cut_block: Tokens the shared cut's start is rounded to.

    Raises:
        ValueError: A setting is out of range, "stream" is asked of a model that cannot stream,
            or the tokenizer splits a label into several tokens.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        identity: ScorerIdentity,
        max_length: int = DEFAULT_MAX_LENGTH,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        min_shared_prefix: int = DEFAULT_MIN_SHARED_PREFIX,
        prefix_mode: PrefixMode = "auto",
        cut: Cut = "exact",
        cut_block: int = 1,
    ) -> None:
        check_cut(cut, cut_block, max_length)
        if prefix_mode not in PREFIX_MODES:
            raise ValueError(f"prefix_mode must be one of {PREFIX_MODES}, not {prefix_mode!r}")
        if prefix_mode == "stream" and not can_stream(model):
            raise ValueError(f"prefix_mode='stream' needs a decoder-only model with full attention in "
                             f"every layer; {type(model).__name__} is not one")
        if min_shared_prefix < 1:
            raise ValueError(f"min_shared_prefix must be >= 1 token, got {min_shared_prefix}")
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._identity = identity
        self._max_length = int(max_length)
        self._cut: Cut = cut
        self._cut_block = int(cut_block)
        self._label_ids = derive_label_ids(tokenizer)
        self._pad_id = next(
            (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0
        )
        self._forward_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._min_shared_prefix = int(min_shared_prefix)
        self._store = PrefixStore(prefix_cache_bytes) if prefix_cache_bytes else None
        self._kv_per_token = kv_bytes_per_token(self._model)
        self._prefix_mode = prefix_mode
        self._can_stream = can_stream(self._model)
        # Repeated turns (candidates, successive events) are tokenized once, where that is exact.
        self._segments = SegmentEncoder(self._encode_whole) if segment_safe(tokenizer) else None

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        base: str = DEFAULT_BASE,
        adapter: str | None = DEFAULT_ADAPTER,
        subfolder: str | None = DEFAULT_SUBFOLDER,
        revision: str | None = None,
        adapter_revision: str | None = None,
        quantization: Quantization = "auto",
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        max_length: int = DEFAULT_MAX_LENGTH,
        merge: bool | None = None,
        force: bool = False,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        min_shared_prefix: int = DEFAULT_MIN_SHARED_PREFIX,
        prefix_mode: PrefixMode = "auto",
        cut: Cut = "exact",
        cut_block: int = 1,
        quiet: bool = False,
    ) -> MemRM:
        """Load base + LoRA adapter from hub ids or local paths (safetensors only, no remote code).

        `quantization="auto"` is NF4 on CUDA and none on CPU. `merge=None` merges the LoRA into
        the base when it is not quantized (faster, same numbers) and keeps it separate on NF4
        (merging would re-quantize the weights). `revision` pins the base, `adapter_revision`
        the adapter (hub ids only).

        The adapter is checked against the base before it is applied: its name for the base
        (`force=True` skips only this one, for a base renamed or copied under another name), its
        target modules, and every LoRA weight's module, rank and size; a mismatch is refused with
        a message naming what differs. `identity.fingerprint` hashes the adapter's weights and
        config and the base's config and weight shapes (`memguard.scoring.loading`).

        Args:
            base: The base model: a hub id or a local folder.
            adapter: The LoRA adapter: a hub id or a local folder (None: score with the base
                alone, e.g. one with the adapter merged in).
            subfolder: The adapter's subfolder in its repository or folder.
            revision: The base's hub revision (a commit hash pins it).
            adapter_revision: The adapter's hub revision (hub ids only).
            quantization: "auto" (NF4 on CUDA, none on CPU), "nf4" (needs memguard[quant]) or
                None.
            dtype: "auto" (bfloat16 on CUDA, float32 on CPU), a torch dtype or its name. Not
                float16: its overflows give non-finite scores.
            device: "auto" (CUDA when available), or a torch device or its name.
            max_length: Positions the model reads, the label's included (training's 32,768).
            merge: Merge the LoRA into the base (None: when it is not quantized).
            force: Skip the check that the adapter names this base.
            prefix_cache_bytes: Bytes of shared prefixes kept across calls (0: none).
            min_shared_prefix: Leading tokens prompts must share to be scored with one prefill.
            prefix_mode: "auto", "cache" or "stream" (see the class).
            cut: "exact" or "shared" (see the class).
            cut_block: Tokens the shared cut's start is rounded to.
            quiet: Silence the model libraries' progress bars, info lines and warnings about their
                own internals while loading (errors and memguard's own checks still surface).

        Returns:
            The scorer, its `identity` filled in.

        Raises:
            ImportError: memguard[local] (or, for NF4, memguard[quant]) is not installed.
            FileNotFoundError: A local base or adapter path does not exist, or is not a PEFT
                adapter.
            OSError: The adapter cannot be downloaded.
            ValueError: The adapter does not fit the base (its base name, target modules or
                weight shapes), ``merge=True`` with a quantized base, an unknown dtype or
                quantization, or a setting out of range.
        """
        with quiet_model_libraries() if quiet else contextlib.nullcontext():
            return cls._load(base=base, adapter=adapter, subfolder=subfolder, revision=revision,
                             adapter_revision=adapter_revision, quantization=quantization, dtype=dtype,
                             device=device, max_length=max_length, merge=merge, force=force,
                             prefix_cache_bytes=prefix_cache_bytes, min_shared_prefix=min_shared_prefix,
                             prefix_mode=prefix_mode, cut=cut, cut_block=cut_block)

    @classmethod
    def _load(
        cls,
        *,
        base: str,
        adapter: str | None,
        subfolder: str | None,
        revision: str | None,
        adapter_revision: str | None,
        quantization: Quantization,
        dtype: str | torch.dtype,
        device: str | torch.device,
        max_length: int,
        merge: bool | None,
        force: bool,
        prefix_cache_bytes: int,
        min_shared_prefix: int,
        prefix_mode: PrefixMode,
        cut: Cut,
        cut_block: int,
    ) -> MemRM:
        """`from_pretrained`'s work, with its arguments checked by name."""
        with needs_extra("local", "MemRM.from_pretrained"):
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = _resolve_device(device)
        quant = _resolve_quantization(quantization, dev)
        torch_dtype = _resolve_dtype(dtype, dev)
        if merge is None:
            merge = quant is None and adapter is not None
        if merge and quant is not None:
            raise ValueError("merge=True with a quantized base would re-quantize the merged weights")

        check_local_base(base)
        resolved = resolve_adapter(adapter, subfolder, adapter_revision) if adapter else None
        if resolved is not None:
            check_base_name(resolved.config, base, force=force)  # force skips this check only

        tokenizer = AutoTokenizer.from_pretrained(base, revision=revision, trust_remote_code=False)
        load_kwargs: dict[str, Any] = dict(
            revision=revision, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False
        )
        if quant == "nf4":
            load_kwargs.update(quantization_config=_nf4_config(), device_map={"": str(dev)})
        # Any: it becomes a PeftModel, then a merged model again, below.
        model: Any = AutoModelForCausalLM.from_pretrained(base, **load_kwargs)
        if quant is None:
            model = model.to(dev)

        if resolved is not None:
            check_target_modules(model, resolved.config)
            check_adapter_shapes(model, resolved)
            model = PeftModel.from_pretrained(
                model, str(resolved.root), subfolder=resolved.subfolder, is_trainable=False
            )
            if merge:
                model = model.merge_and_unload()

        base_dir = local_model_dir(base, revision)  # after loading: a hub base is in the cache now
        base_print = base_fingerprint(base_dir) if base_dir is not None else None
        identity = ScorerIdentity(
            base=base,
            adapter=adapter,
            subfolder=subfolder if adapter else None,
            revision=revision,
            adapter_revision=adapter_revision,
            quantization=quant,
            fingerprint=combined_fingerprint(resolved.fingerprint if resolved else None, base_print),
            base_fingerprint=base_print,
        )
        return cls(model, tokenizer, identity=identity, max_length=max_length,
                   prefix_cache_bytes=prefix_cache_bytes, min_shared_prefix=min_shared_prefix,
                   prefix_mode=prefix_mode, cut=cut, cut_block=cut_block)

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        identity: ScorerIdentity | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        min_shared_prefix: int = DEFAULT_MIN_SHARED_PREFIX,
        prefix_mode: PrefixMode = "auto",
        cut: Cut = "exact",
        cut_block: int = 1,
    ) -> MemRM:
        """Wrap an already-loaded causal LM (merged, PeftModel, quantized...) and its tokenizer.

        Args:
            model: The causal LM, the adapter applied.
            tokenizer: Its tokenizer.
            identity: What the model is; None names it by the model config's
                ``_name_or_path`` (no fingerprint).
            max_length: Positions the model reads, the label's included.
            prefix_cache_bytes: Bytes of shared prefixes kept across calls (0: none).
            min_shared_prefix: Leading tokens prompts must share to be scored with one prefill.
            prefix_mode: "auto", "cache" or "stream" (see the class).
            cut: "exact" or "shared" (see the class).
            cut_block: Tokens the shared cut's start is rounded to.

        Returns:
            The scorer.

        Raises:
            ValueError: As the constructor.
        """
        if identity is None:
            name = getattr(getattr(model, "config", None), "_name_or_path", None) or "unknown"
            identity = ScorerIdentity(base=str(name))
        return cls(model, tokenizer, identity=identity, max_length=max_length,
                   prefix_cache_bytes=prefix_cache_bytes, min_shared_prefix=min_shared_prefix,
                   prefix_mode=prefix_mode, cut=cut, cut_block=cut_block)

    # ---------------------------------------------------------------------------- accessors

    @property
    def identity(self) -> ScorerIdentity:
        """What the model is (base, adapter, revisions, fingerprint), recorded on every decision."""
        return self._identity

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The transformers model, in eval mode."""
        return self._model

    @property
    def label_ids(self) -> tuple[int, int]:
        """(id of " Y" = SAFE, id of " N" = HARMFUL)."""
        return self._label_ids

    @property
    def max_length(self) -> int:
        """Positions the model reads, the label's included: prompts keep at most this - 1 tokens."""
        return self._max_length

    @property
    def cut(self) -> Cut:
        """How over-long prompts of one call are cut: "exact" (each alone) or "shared"."""
        return self._cut

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter."""
        device: torch.device = next(self._model.parameters()).device
        return device

    def __repr__(self) -> str:
        i = self._identity
        return (
            f"MemRM(base={i.base!r}, adapter={i.adapter!r}, subfolder={i.subfolder!r}, "
            f"quantization={i.quantization!r}, device={self.device}, max_length={self._max_length}, "
            f"cut={self._cut!r})"
        )

    # ------------------------------------------------------------------------------ scoring

    def encode(self, text: str) -> list[int]:
        """Token ids exactly as training read them: no special tokens, no BOS.

        Lone surrogates are replaced first (`memguard.text.safe_text`; valid text is unchanged):
        the tokenizer cannot take them.

        Args:
            text: Any text.

        Returns:
            The token ids.
        """
        text = safe_text(text)
        with self._tokenizer_lock:
            if self._segments is not None:
                return self._segments(text)
            return self._encode_whole(text)

    def _encode_whole(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as `encode` gives them (the guard's hard budget counts with this).

        Args:
            text: Any text.

        Returns:
            The token count.
        """
        return len(self.encode(text))

    @property
    def prefix_store(self) -> PrefixStore | None:
        """Prefixes kept across calls (None when `prefix_cache_bytes=0`)."""
        return self._store

    def fit_prompts(self, prompts: list[str]) -> list[tuple[list[int], int]]:
        """Tokenize and cut prompts as `score` would, without running the model.

        The cut is `memguard.scoring.cut`'s rule, with this scorer's `cut` and `cut_block`.
        `ScoringWorker` calls this on the caller's thread, so a bad prompt fails alone.

        Args:
            prompts: Rendered MemRM prompts.

        Returns:
            Per prompt: the ids the model reads, and the tokens cut from the left.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty.
        """
        if isinstance(prompts, str):
            raise TypeError("score() takes a list of prompts, not a single string")
        encoded = []
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"prompts must be strings, got {type(prompt).__name__}")
            ids = self.encode(prompt)
            if not ids:
                raise ValueError("cannot score an empty prompt")
            encoded.append(ids)
        starts = cut_starts(encoded, self._max_length, self._cut, self._cut_block)
        return [(ids[start:], start) for ids, start in zip(encoded, starts, strict=True)]

    def score(self, prompts: list[str], *, batch_size: int = 1) -> list[Score]:
        """P(HARMFUL) per rendered prompt.

        Prompts sharing a long prefix share its prefill; the others run alone, or, with
        `batch_size>1`, left-padded in batches of similar length. Results match one whole-prompt
        forward per prompt either way.

        Args:
            prompts: Rendered MemRM prompts.
            batch_size: Prompts without a shared prefix run in batches of this size.

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: `prompts` is a single string, or holds a non-string.
            ValueError: A prompt is empty, or `batch_size` < 1.
            NonFiniteScoreError: A label logit is NaN or infinite (an fp16 overflow).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        fitted = self.fit_prompts(prompts)
        p_harmful = self.score_fitted([ids for ids, _ in fitted], batch_size=batch_size)
        return [
            Score(p_harmful=p, n_tokens=len(ids), n_truncated=cut)
            for p, (ids, cut) in zip(p_harmful, fitted, strict=True)
        ]

    def score_fitted(self, seqs: list[list[int]], *, batch_size: int = 1) -> list[float]:
        """P(HARMFUL) for already-tokenized, already-fitted id lists (plans prefix sharing).

        Args:
            seqs: Id lists from `fit_prompts`.
            batch_size: Sequences without a shared prefix run in batches of this size.

        Returns:
            P(HARMFUL) per sequence, in order.

        Raises:
            NonFiniteScoreError: A label logit is NaN or infinite.
        """
        results: list[float | None] = [None] * len(seqs)
        alone: list[int] = []
        for group in plan_prefix_groups(seqs, self._min_shared_prefix):
            if len(group.indices) > 1:
                ps = self._shared_prefix_p([seqs[i] for i in group.indices], group.prefix_len)
            elif self._worth_caching(seqs[group.indices[0]]):
                seq = seqs[group.indices[0]]
                ps = self._shared_prefix_p([seq], len(seq) - 1)
            else:
                alone.extend(group.indices)
                continue
            for i, p in zip(group.indices, ps, strict=True):
                results[i] = p
        for batch in length_batches([len(seqs[i]) for i in alone], batch_size):
            idx = [alone[j] for j in batch]
            for i, p in zip(idx, self._p_harmful([seqs[i] for i in idx]), strict=True):
                results[i] = p
        return results  # type: ignore[return-value]

    def _worth_caching(self, seq: list[int]) -> bool:
        """A lone prompt is worth keeping when it is long and its prefix fits the store."""
        if self._store is None or len(seq) <= self._min_shared_prefix or self.streams(len(seq) - 1):
            return False
        return (len(seq) - 1) * self._kv_per_token <= self._store.max_bytes

    @property
    def prefix_mode(self) -> str:
        """How a shared prefix is run: "auto", "cache" or "stream" (see the class)."""
        return self._prefix_mode

    def streams(self, prefix_len: int) -> bool:
        """Whether a shared prefix of `prefix_len` ids is layer-streamed rather than cached.

        Args:
            prefix_len: The shared prefix's length in tokens.

        Returns:
            True when it would be streamed.
        """
        if self._prefix_mode != "auto":
            return self._prefix_mode == "stream"
        if not self._can_stream:
            return False
        return self._store is None or prefix_len * self._kv_per_token > self._store.max_bytes

    def _shared_prefix_p(self, seqs: list[list[int]], prefix_len: int) -> list[float]:
        """One run of seqs' common first `prefix_len` ids (reusing the store), one pass each."""
        prefix = seqs[0][:prefix_len]
        stream = self.streams(prefix_len)
        with self._forward_lock, torch.inference_mode():
            _, start = self._store.lookup(prefix) if self._store else (0, None)
            if stream:
                z = streamed_label_logits(self._model, seqs, prefix_len, self._label_ids, start=start)
            else:
                kv = prefill(self._model, prefix, start=start)
                z = torch.stack([suffix_logits(self._model, kv, seq, self._label_ids) for seq in seqs])
                if self._store is not None and bool(torch.isfinite(z).all()):  # never keep a NaN prefix
                    self._store.put(prefix, kv)
                del kv
            return _p_harmful_of(z)

    async def ascore(self, prompts: list[str], *, batch_size: int = 1) -> list[Score]:
        """`score` on a daemon thread, so an event loop never blocks on a forward pass.

        Not the default executor: `asyncio.run` waits for its threads on exit, so a forward
        still running after its caller gave up would hold the program's exit.

        Args:
            prompts: Rendered MemRM prompts.
            batch_size: As for `score`.

        Returns:
            One `Score` per prompt, in order.

        Raises:
            TypeError: As `score`.
            ValueError: As `score`.
            NonFiniteScoreError: As `score`.
        """
        return await asyncio.wrap_future(start_daemon(functools.partial(self.score, prompts, batch_size=batch_size),
                                                      name="memguard-ascore"))

    def score_ids(self, ids: list[int]) -> float:
        """P(HARMFUL) for already-tokenized, already-fitted ids, one whole forward (no sharing).

        The reference that prefix sharing and batching are checked against.

        Args:
            ids: Token ids from `fit_prompts`.

        Returns:
            P(HARMFUL).

        Raises:
            NonFiniteScoreError: A label logit is NaN or infinite.
        """
        return self._p_harmful([list(ids)])[0]

    def _p_harmful(self, batch: list[list[int]]) -> list[float]:
        device = self.device
        longest = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, longest - len(ids) :] = 1
        kwargs: dict[str, Any] = {}
        if len(batch) > 1:  # left padding: real tokens keep positions 0..n-1
            kwargs["attention_mask"] = mask.to(device)
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        with self._forward_lock, torch.inference_mode():
            out = self._model(
                input_ids=input_ids.to(device), logits_to_keep=1, use_cache=False, **kwargs
            )
            z = out.logits[:, -1, list(self._label_ids)].float()
            return _p_harmful_of(z)


def _p_harmful_of(z: torch.Tensor) -> list[float]:
    """softmax([z_Y, z_N])[1] per row; `NonFiniteScoreError` rather than a NaN verdict.

    Raises:
        NonFiniteScoreError: A label logit is NaN or infinite (e.g. an fp16 overflow).
    """
    finite = torch.isfinite(z).all(dim=-1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteScoreError(
            f"MemRM's label logits are not finite (NaN or inf) for {bad} of {len(z)} prompts: the "
            "forward pass overflowed. Load the model in bfloat16 or float32, not float16 (dtype=; --dtype; "
            "TOML dtype = \"bfloat16\")."
        )
    p: list[float] = torch.softmax(z, dim=-1)[:, 1].cpu().tolist()
    return p
