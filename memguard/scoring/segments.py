"""Tokenize prompts piece by piece at block headers, caching the pieces.

The candidates of one event, and successive events of one conversation, repeat the same turns;
tokenizing a 32K-token view for every candidate would cost more than the guard's whole budget
outside the model. A prompt is cut right before every "[" that starts a line (each block header
`[User]`, `[Tool]`...), each piece is encoded once and remembered, and the ids are concatenated.

That equals encoding the whole text only when no token can span a newline followed by "[":
true for byte-level BPE behind the GPT-2/Qwen2 pre-tokenizer regexes (no alternative matches
"\\n" then a non-space), under NFC (a "[" composes with nothing). `segment_safe` checks that the
tokenizer is such a tokenizer; anything else is encoded whole.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from itertools import pairwise
from typing import Any

__all__ = ["SegmentEncoder", "segment_safe", "split_at_headers"]

_HEADER_START = re.compile(r"(?<=\n)\[")

# Pre-tokenizer patterns under which "\n" + "[" never share a pre-token.
_SAFE_PATTERNS = {
    # Qwen2 / Qwen3
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    # GPT-2 (ByteLevel use_regex=True)
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
}
_SAFE_NORMALIZERS = {None, "NFC"}


def split_at_headers(text: str) -> list[str]:
    """Pieces of `text`, cut before each "[" that follows a newline; "".join(pieces) == text."""
    cuts = [m.start() for m in _HEADER_START.finditer(text)]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in pairwise(bounds) if b > a]


def segment_safe(tokenizer: object) -> bool:
    """True when piecewise encoding at header starts provably equals whole encoding."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    try:  # only the small components: serialising the whole tokenizer costs ~1 s
        if type(backend.model).__name__ != "BPE":
            return False
        normalizer = _state(backend.normalizer)
        pre = _state(backend.pre_tokenizer)
        added = [str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()]
    except Exception:  # noqa: BLE001 - unknown backend: stay exact, encode whole
        return False
    if (normalizer or {}).get("type") not in _SAFE_NORMALIZERS:
        return False
    if any("\n[" in token for token in added):
        return False
    return _pre_tokenizer_safe(pre)


def _state(component: Any) -> dict[str, Any] | None:
    if component is None:
        return None
    state: dict[str, Any] = json.loads(component.__getstate__())
    return state


def _pre_tokenizer_safe(pre: dict[str, Any] | None) -> bool:
    """A safe regex split (or GPT-2 byte-level split), plus byte mapping: nothing else."""
    if not pre:
        return False
    parts = pre.get("pretokenizers") or [] if pre.get("type") == "Sequence" else [pre]
    splits = False
    for part in parts:
        kind = part.get("type")
        if kind == "Split":
            if (part.get("pattern") or {}).get("Regex") not in _SAFE_PATTERNS or part.get("behavior") != "Isolated" \
                    or part.get("invert"):
                return False
            splits = True
        elif kind == "ByteLevel":
            if part.get("add_prefix_space"):
                return False
            splits = splits or bool(part.get("use_regex", True))
        else:
            return False
    return splits


class SegmentEncoder:
    """`encode(text)` through a cache of header-delimited pieces (bounded by characters, LRU)."""

    def __init__(self, encode: Callable[[str], list[int]], *, max_chars: int = 8_000_000) -> None:
        self._encode = encode
        self.max_chars = max_chars
        self._pieces: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._chars = 0

    def __call__(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in split_at_headers(text):
            cached = self._pieces.get(piece)
            if cached is None:
                cached = tuple(self._encode(piece))
                self._remember(piece, cached)
            else:
                self._pieces.move_to_end(piece)
            ids.extend(cached)
        return ids

    def _remember(self, piece: str, ids: tuple[int, ...]) -> None:
        if len(piece) > self.max_chars:
            return
        self._pieces[piece] = ids
        self._chars += len(piece)
        while self._chars > self.max_chars:
            old, _ = self._pieces.popitem(last=False)
            self._chars -= len(old)
