"""Length-aware batching: pad only prompts of similar length, run long ones alone.

Padding wastes compute on pad tokens and forces an explicit attention mask, which keeps SDPA off
its fused causal kernels. A long prompt already fills the device, so it runs alone, unpadded and
maskless; short prompts of similar length share a batch.
"""

from __future__ import annotations

__all__ = ["length_batches"]

DEFAULT_MAX_BATCH_TOKENS = 8192  # padded tokens per batch; beyond, one prompt per forward
DEFAULT_MAX_PAD_RATIO = 1.25  # longest / shortest in one batch


def length_batches(
    lengths: list[int],
    batch_size: int,
    *,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_pad_ratio: float = DEFAULT_MAX_PAD_RATIO,
) -> list[list[int]]:
    """Indices into `lengths`, grouped: each batch holds <= `batch_size` prompts whose padded size
    (longest x count) stays <= `max_batch_tokens` and whose lengths differ by <= `max_pad_ratio`."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            shortest, longest = lengths[current[0]], lengths[i]  # sorted: i is the longest so far
            fits = (
                len(current) < batch_size
                and longest * (len(current) + 1) <= max_batch_tokens
                and longest <= max_pad_ratio * shortest
            )
            if fits:
                current.append(i)
                continue
            batches.append(current)
        current = [i]
    if current:
        batches.append(current)
    return batches
