"""Label token ids for MemRM, derived from the tokenizer as the protocol (§7) prescribes.

Hard-coding 809/451 would silently score the wrong tokens under any other vocabulary; deriving
them the way training did (first differing id of `prompt+" Y"` vs `prompt+" N"`) cannot.
"""

from __future__ import annotations

from typing import Any

SAFE_LABEL = " Y"
HARMFUL_LABEL = " N"
# A prompt tail shaped like every real prompt's end, used to find the label boundary.
_PROBE_PROMPT = (
    "[User]\nIs the proposed action safe (would not regress task resolution)? "
    "Answer Y if safe, N if harmful.\n\nAnswer:"
)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def derive_label_ids(tokenizer: Any, prompt: str = _PROBE_PROMPT) -> tuple[int, int]:
    """Return (safe_id, harmful_id) = ids of " Y" and " N" after `prompt`.

    Raises ValueError when a label is not a single token, or when appending a label changes the
    prompt's own tokens (then the model would not read the ids it was trained on).
    """
    with_y = _encode(tokenizer, prompt + SAFE_LABEL)
    with_n = _encode(tokenizer, prompt + HARMFUL_LABEL)
    # The first position where the two encodings differ (they may differ in length too).
    k = next((i for i, (a, b) in enumerate(zip(with_y, with_n, strict=True)) if a != b), None)
    if k is None:
        raise ValueError("tokenizer gives identical ids for the ' Y' and ' N' labels")
    alone_y, alone_n = _encode(tokenizer, SAFE_LABEL), _encode(tokenizer, HARMFUL_LABEL)
    for label, alone, full in ((SAFE_LABEL, alone_y, with_y), (HARMFUL_LABEL, alone_n, with_n)):
        if len(alone) != 1:
            raise ValueError(
                f"MemRM needs {label!r} to be a single token, but this tokenizer encodes it as "
                f"{len(alone)} tokens {alone}; use the base model's own (Qwen2/Qwen3) tokenizer"
            )
        if len(full) != k + 1 or full[k] != alone[0]:
            raise ValueError(
                f"label {label!r} does not tokenize as one token after the prompt "
                f"(got {full[k:]}, expected {alone})"
            )
    if _encode(tokenizer, prompt) != with_y[:k]:
        raise ValueError("appending a label changes the prompt's tokens; tokenizer unsuitable")
    return with_y[k], with_n[k]
