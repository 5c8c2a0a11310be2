"""The scorer contract: any object that turns rendered MemRM prompts into P(HARMFUL).

`MemRM` (in-process), `RemoteMemRM` (vLLM) and test doubles all satisfy `Scorer`, so the guard
never needs to know where the model runs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class Score(BaseModel):
    """One prompt's verdict from the reward model."""

    model_config = ConfigDict(frozen=True)

    p_harmful: float = Field(description="P(HARMFUL) = softmax([z(' Y'), z(' N')])[1].")
    """P(HARMFUL) = softmax([z(" Y"), z(" N")])[1] at the position after the prompt."""
    n_tokens: int = Field(description="Prompt tokens the model read (after any cut).")
    """Prompt tokens the model read (after any cut)."""
    n_truncated: int = Field(default=0, description="Tokens cut from the left to fit max_length - 1.")
    """Tokens cut from the left so the prompt and its label fit `max_length`."""

    @property
    def p_safe(self) -> float:
        """P(SAFE) = 1 - P(HARMFUL)."""
        return 1.0 - self.p_harmful


class ScorerIdentity(BaseModel):
    """What produced a score: recorded in every Decision so audits can be traced to weights."""

    model_config = ConfigDict(frozen=True)

    base: str
    """The base model (a hub id or a path; for a remote scorer, what the server names)."""
    adapter: str | None = None
    """The LoRA adapter (None: none, or merged into the base)."""
    subfolder: str | None = None
    """The adapter's subfolder in its repository (``checkpoint-500``)."""
    revision: str | None = None
    """The base's hub revision, when one was pinned."""
    adapter_revision: str | None = None
    """The adapter's hub revision, when one was pinned."""
    quantization: str | None = None
    """How the base was quantised ("nf4"), None for full precision."""
    fingerprint: str | None = Field(
        default=None,
        description="Hash identifying the scoring function by content: the adapter's weights and "
        "config, and the base's config and weight shapes (never a folder name).",
    )
    """Hash identifying the scoring function by content: the adapter's weights and config, and the
    base's config and weight shapes (never a folder name).
    """
    base_fingerprint: str | None = Field(
        default=None, description="Hash of the base's config and weight shapes alone."
    )
    """Hash of the base's config and weight shapes alone."""


class NonFiniteScoreError(RuntimeError):
    """The reward model's label logits are NaN or infinite, so there is no P(HARMFUL) to give.

    Raised instead of returning NaN (which no threshold can judge): the guard treats it as a
    scorer failure (its `on_error` decides), and `memguard score` stops without writing it.
    """


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores rendered prompts: `MemRM`, `RemoteMemRM`, `ScoringWorker`, a test double.

    Only `score` is required; an ``ascore`` coroutine is optional. The guard calls `score` on a
    thread of its own, bounded by its `timeout`, from sync and async reviews alike, and reads
    an ``identity`` (`ScorerIdentity`) and ``count_tokens(text)`` when the scorer has them.
    """

    def score(self, prompts: list[str]) -> list[Score]:
        """Score rendered MemRM prompts.

        A scorer raises rather than return a score it cannot vouch for (a NaN, say:
        `NonFiniteScoreError`); the guard treats any exception as a scorer failure, and its
        `on_error` decides.

        Args:
            prompts: Prompts from `memguard.protocol.render_prompt`.

        Returns:
            One `Score` per prompt, in order.
        """
        ...
