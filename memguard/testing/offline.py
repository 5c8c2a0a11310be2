"""Offline stand-ins for the examples and for trying memguard without weights or a GPU.

`load_tiny_rm()` is a tiny *random* MemRM, loaded through the real `MemRM.from_pretrained` path
and left nowhere on disk: its scores are meaningless, it exercises the plumbing. `MarkerScorer`
is a labelled scorer double that plays a well-behaved RM in a scripted scenario: it calls a
compaction harmful exactly when the proposed next action shows the forgetting the script plants.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memguard.protocol import JUDGMENT_TEMPLATE
from memguard.scoring.base import Score
from memguard.settings import DEFAULT_SUBFOLDER
from memguard.testing.tiny import build_tiny_rm

if TYPE_CHECKING:
    from memguard.scoring.local import MemRM

__all__ = ["MarkerScorer", "load_tiny_rm"]

# "Proposed action under perturbation '": where the judgment turn's proposed action begins.
_PROPOSED = JUDGMENT_TEMPLATE.split("\n\n")[1].split("{", 1)[0]


def load_tiny_rm(**tiny: Any) -> MemRM:
    """A tiny random MemRM, built in a temporary directory and loaded quietly; nothing is left on disk.

    Args:
        **tiny: options for `memguard.testing.build_tiny_rm` (``seed``, ``tokenizer``, ...); the
            byte-level tokenizer is the default here (fast to build).

    Returns:
        The loaded scorer, ready for `Guard(...)`. Its P(HARMFUL) values are meaningless.

    Raises:
        ImportError: without memguard[local] (torch, transformers, peft).
    """
    from memguard.scoring.local import MemRM

    tiny.setdefault("tokenizer", "byte")
    with tempfile.TemporaryDirectory(prefix="memguard-tiny-rm-") as folder:
        root = build_tiny_rm(Path(folder), **tiny)
        return MemRM.from_pretrained(base=str(root / "base"), adapter=str(root / "adapter"),
                                     subfolder=DEFAULT_SUBFOLDER, quiet=True)


class MarkerScorer:
    """A labelled scorer double (not MemRM): harmful iff the proposed action holds a marker.

    It reads the prompt's judgment turn and looks at the *proposed* action only (the agent's next
    action under the compacted context). A scripted agent that, having forgotten, re-explores
    (``ls -la``) or says so makes that action carry a marker; the double then answers `harmful`,
    otherwise `safe`, like a well-behaved RM would on that script.

    Args:
        markers: substrings that show the agent forgot.
        harmful: P(HARMFUL) given when a marker is present.
        safe: P(HARMFUL) given otherwise.
    """

    def __init__(self, markers: Sequence[str], *, harmful: float = 0.97, safe: float = 0.03) -> None:
        if isinstance(markers, str) or not markers:
            raise ValueError("markers: a non-empty list of strings")
        self.markers = tuple(markers)
        self.harmful = harmful
        self.safe = safe

    def score(self, prompts: list[str]) -> list[Score]:
        """Score each prompt by whether its proposed action holds a marker.

        Args:
            prompts: rendered MemRM prompts.

        Returns:
            One `Score` per prompt.
        """
        out = []
        for prompt in prompts:
            proposed = prompt.rsplit(_PROPOSED, 1)[-1]
            forgot = any(marker in proposed for marker in self.markers)
            out.append(Score(p_harmful=self.harmful if forgot else self.safe, n_tokens=max(1, len(prompt) // 4)))
        return out
