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
    n_tokens: int = Field(description="Prompt tokens the model read (after any cut).")
    n_truncated: int = Field(default=0, description="Tokens cut from the left to fit max_length - 1.")

    @property
    def p_safe(self) -> float:
        return 1.0 - self.p_harmful


class ScorerIdentity(BaseModel):
    """What produced a score: recorded in every Decision so audits can be traced to weights."""

    model_config = ConfigDict(frozen=True)

    base: str
    adapter: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    adapter_revision: str | None = None
    quantization: str | None = None
    fingerprint: str | None = Field(
        default=None,
        description="Hash identifying the scoring function by content: the adapter's weights and "
        "config, and the base's config and weight shapes (never a folder name).",
    )
    base_fingerprint: str | None = Field(
        default=None, description="Hash of the base's config and weight shapes alone."
    )


class NonFiniteScoreError(RuntimeError):
    """The reward model's label logits are NaN or infinite, so there is no P(HARMFUL) to give.

    Raised instead of returning NaN (which no threshold can judge): the guard treats it as a
    scorer failure (its `on_error` decides), and `memguard score` stops without writing it.
    """


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores rendered prompts. An `ascore` coroutine is optional."""

    def score(self, prompts: list[str]) -> list[Score]: ...
