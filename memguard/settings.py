"""Every default and constant of the guard, in one frozen, validated object.

`GuardSettings` is what `Guard` runs on and what the `[guard]` table of a TOML config parses
into, so a default changes in one place and a config file cannot say anything `Guard(...)` would
refuse. The commit rule lives here too, once, for the guard and the threshold sweep alike:

    commit iff P(HARMFUL) < threshold

The coverage band (covered iff P(SAFE) >= t or <= 1 - t, t = 0.88) is reported on every candidate
and gates commits only when the user asks for it (`band_gate=True`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from memguard.protocol import COVERAGE_T, MAX_LENGTH, coverage_band
from memguard.strategies import Strategy, as_strategy, resolve_strategy

__all__ = [
    "COVERAGE_T",
    "DEFAULT_ADAPTER",
    "DEFAULT_BASE",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_SUBFOLDER",
    "DEFAULT_THRESHOLD",
    "GuardSettings",
    "band_label",
    "commits",
]

DEFAULT_BASE = "Qwen/Qwen3-1.7B-Base"
DEFAULT_ADAPTER = "MemGym/memgym-rm-1p7b"
DEFAULT_SUBFOLDER = "checkpoint-500"  # the adapter lives in a subfolder, not at the repo root
DEFAULT_MAX_LENGTH = MAX_LENGTH  # training's left-cut limit, in tokens
DEFAULT_THRESHOLD = 0.5  # the argmax behind the published accuracy and F1


def commits(p_harmful: float, threshold: float) -> bool:
    """The one commit rule: a score is acceptable iff P(HARMFUL) < threshold."""
    return p_harmful < threshold


def band_label(p_harmful: float, band: float | None, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The coverage band of a score; with no band, "safe"/"harmful" by the commit rule."""
    if band is None:
        return "safe" if commits(p_harmful, threshold) else "harmful"
    return coverage_band(p_harmful, band)


class GuardSettings(BaseModel):
    """The guard's policy: validated once, frozen, shared by `Guard` and `[guard]` in TOML.

    `fallbacks` holds strategy objects; in TOML they are written by name
    (`observation_masking`, `recent_window`, `<name>+keep_more_x<factor>`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    mode: Literal["enforce", "audit"] = "enforce"
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0,
                             description="Commit iff P(HARMFUL) < threshold.")
    band: float | None = Field(default=COVERAGE_T, ge=0.5, le=1.0,
                               description="Coverage band t, reported on every candidate; None: not reported.")
    band_gate: bool = Field(default=False,
                            description="Also refuse a candidate whose score is inside the band (uncertain).")
    fallbacks: tuple[Strategy, ...] = Field(default=(), description="Safer strategies, tried in order.")
    search: Literal["sequential", "parallel"] = "sequential"
    hard_budget: int | None = Field(default=None, gt=0, description="Tokens the context must fit in: no veto.")
    on_error: Literal["open", "closed"] = "open"
    timeout: float | None = Field(default=None, gt=0, description="Seconds for each probe, strategy and score.")
    cooldown: int = Field(default=3, ge=0, description="Steps a conversation is not reviewed after a veto.")
    identical_is_safe: bool = Field(default=True, description="Identical next actions are SAFE without an RM call.")
    audit_queue_size: int = Field(default=1024, ge=1, description="Audit jobs waiting at most; more are dropped.")
    max_conversations: int = Field(default=10_000, ge=1,
                                   description="Conversations whose cooldown state is kept (least recent out).")
    max_stalled_calls: int = Field(default=4, ge=1,
                                   description="Timed-out scorer calls still running before new ones fail fast.")

    @model_validator(mode="before")
    @classmethod
    def _uncertain_alias(cls, data: Any) -> Any:
        """`uncertain="harmful"|"safe"` (0.1.0) maps to `band_gate=True|False`."""
        if isinstance(data, dict) and "uncertain" in data:
            data = dict(data)
            uncertain = data.pop("uncertain")
            if uncertain not in ("harmful", "safe"):
                raise ValueError(f"uncertain: must be 'harmful' or 'safe' (got {uncertain!r})")
            warnings.warn("uncertain= is deprecated: use band_gate=True (uncertain='harmful') or leave it off",
                          DeprecationWarning, stacklevel=4)
            data.setdefault("band_gate", uncertain == "harmful")
        return data

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _strategies(cls, value: Any) -> tuple[Strategy, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError("fallbacks: expected a list of strategies or strategy names")
        return tuple(resolve_strategy(item) if isinstance(item, str) else as_strategy(item) for item in value)

    @field_serializer("fallbacks")
    def _names(self, fallbacks: tuple[Strategy, ...]) -> list[str]:
        return [strategy.name for strategy in fallbacks]

    # ------------------------------------------------------------------ the rule

    def acceptable(self, p_harmful: float) -> bool:
        """The commit rule, plus the band when the user gated on it."""
        if not commits(p_harmful, self.threshold):
            return False
        return not (self.band_gate and self.band_of(p_harmful) == "uncertain")

    def band_of(self, p_harmful: float) -> str:
        return band_label(p_harmful, self.band, self.threshold)

    @property
    def uncertain(self) -> str:
        """0.1.0's name for `band_gate`, read-only."""
        return "harmful" if self.band_gate else "safe"
