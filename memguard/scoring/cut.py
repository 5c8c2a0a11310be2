"""The left cut of over-long prompts: one rule, used by `MemRM` and `RemoteMemRM` alike.

**Positions.** `max_length` counts every position the model reads, *the label token included*:
training cut each prompt + label sequence to 32,768 tokens (Qwen3-1.7B-Base's context), keeping
its end, and P(HARMFUL) is read at the position right after `Answer:`, where the label would go.
So a prompt keeps at most ``max_length - 1`` tokens (32,767 by default), taken from its end (the
judgment turn and `Answer:` always survive), and the label position is the ``max_length``-th.
vLLM's ``--max-model-len`` counts the same positions, so a server started with
``--max-model-len 32768`` cuts exactly as the in-process scorer does.

**Two ways to cut the prompts of one call** (`Cut`):

- ``"exact"`` (default): every prompt is cut on its own, at ``len - (max_length - 1)``, as training
  cut each example. The candidates of one compaction event differ only in their proposed action
  at the very end, so prompts whose actions differ in length are cut at different offsets and
  share no leading tokens: each is prefilled in full.
- ``"shared"``: prompts that share their leading tokens are cut at one start offset, the latest
  any of them needs, so every one of them starts with the same tokens: the shared part is
  prefilled once (`memguard.scoring.prefix`, or vLLM's prefix cache) and the rest costs a few
  tokens per candidate. What it changes: a candidate whose prompt is shorter than the longest
  loses that difference (a few tokens of the oldest context, at the far left) beyond what the
  exact cut removes. Prompts are grouped only when they differ in no more than their last
  `SHARED_CUT_SLACK` (512) tokens (so none loses more than that beyond its own cut) and the cut
  falls inside what they share; any other prompt is cut exactly. With ``block > 1`` the start
  is rounded up to a multiple of `block`, so successive events of a growing conversation start
  at the same offset until it grows past the next multiple, and the prefix kept from one event
  is reused by the next (at the price of up to ``block - 1`` more tokens cut).

Pure Python on token-id lists (no torch): the remote scorer uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["CUTS", "SHARED_CUT_SLACK", "Cut", "check_cut", "common_prefix", "cut_starts", "prompt_budget"]

Cut = Literal["exact", "shared"]
CUTS: tuple[str, ...] = ("exact", "shared")
SHARED_CUT_SLACK = 512
"""Most tokens a prompt may lose beyond its own exact cut under the shared cut. The candidates of
one event differ only in the proposed action (at most 500 characters) and its tag, well within."""


def prompt_budget(max_length: int) -> int:
    """Prompt tokens kept under `max_length` positions: one position is the label's."""
    return max_length - 1


def check_cut(cut: str, block: int, max_length: int) -> None:
    """Validate a scorer's cut settings; `ValueError` names the bad one.

    Args:
        cut: "exact" or "shared".
        block: The shared cut's start granularity in tokens (1 to ``(max_length - 1) // 2``).
        max_length: Positions the model reads, label included (>= 2).

    Raises:
        ValueError: A setting is out of range.
    """
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {CUTS}, not {cut!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (a prompt token and the label's position), got {max_length}")
    if block < 1 or (block > 1 and block > prompt_budget(max_length) // 2):
        raise ValueError(f"cut_block must be between 1 and (max_length - 1) // 2 tokens, got {block}: "
                         "a larger block could cut into the judgment turn")


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists (list slices compare in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _round_up(start: int, block: int) -> int:
    return -(-start // block) * block


def cut_starts(seqs: Sequence[Sequence[int]], max_length: int, cut: Cut = "exact", block: int = 1) -> list[int]:
    """How many tokens to cut from the left of each prompt (see the module docstring).

    Args:
        seqs: Each prompt's full token ids.
        max_length: Positions the model reads, the label's included.
        cut: "exact" (each prompt on its own) or "shared" (one start for prompts that share it).
        block: Shared cut only: round each start up to a multiple of this many tokens.

    Returns:
        The start offset of each prompt; it keeps ``seqs[i][start:]``.
    """
    budget = prompt_budget(max_length)
    needs = [max(0, len(ids) - budget) for ids in seqs]
    if cut == "exact":
        return needs
    starts = [_round_up(need, block) for need in needs]  # < len: block <= budget // 2 (check_cut)
    # In lexicographic order, the prefix a run of prompts shares is the least one between
    # neighbours, so one pass over sorted neighbours finds the groups.
    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    run: list[int] = []
    shared = 0
    for i in order:
        if run:
            lcp = common_prefix(seqs[run[-1]], seqs[i])
            lcp = lcp if len(run) == 1 else min(shared, lcp)
            if _shared_start([*run, i], seqs, needs, lcp, block) is not None:
                run, shared = [*run, i], lcp
                continue
            _assign(run, seqs, needs, shared, block, starts)
        run, shared = [i], 0
    _assign(run, seqs, needs, shared, block, starts)
    return starts


def _shared_start(group: list[int], seqs: Sequence[Sequence[int]], needs: list[int], lcp: int,
                  block: int) -> int | None:
    """The one start of `group` (prompts sharing `lcp` leading ids), or None when they are not the
    candidates of one event (they differ in more than their last `SHARED_CUT_SLACK` ids) or the
    cut would leave what they share."""
    if max(len(seqs[i]) for i in group) - lcp > SHARED_CUT_SLACK:
        return None
    latest = max(needs[i] for i in group)
    if latest == 0:
        return 0  # nothing to cut (yet): the group may still grow
    shortest = min(len(seqs[i]) for i in group)
    for start in (_round_up(latest, block), latest):  # unrounded when rounding would leave the shared part
        if start <= lcp and start < shortest:
            return start
    return None


def _assign(run: list[int], seqs: Sequence[Sequence[int]], needs: list[int], lcp: int, block: int,
            starts: list[int]) -> None:
    if len(run) < 2:
        return
    start = _shared_start(run, seqs, needs, lcp, block)
    if start:
        for i in run:
            starts[i] = start
