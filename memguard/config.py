"""The guard's TOML configuration: schema, loading with errors that name the bad key, writing.

```toml
[guard]
mode = "enforce"          # enforce | audit
threshold = 0.5           # on P(HARMFUL): HARMFUL iff P(HARMFUL) > threshold
band = 0.88               # coverage band t: uncertain iff 1 - t < P(SAFE) < t (0.5: no band)
uncertain = "harmful"     # what an uncertain score counts as: harmful | safe
fallbacks = ["observation_masking"]
on_error = "open"         # open (commit) | closed (veto) when the scorer fails

[scorer]
kind = "local"            # local (in-process MemRM) | remote (vLLM server)
base = "Qwen/Qwen3-1.7B-Base"
adapter = "MemGym/memgym-rm-1p7b"
subfolder = "checkpoint-500"
# revision, quantization ("nf4", ...), max_length; url for kind = "remote"
```

TOML has no null: a key left out takes its default.

`GuardConfig.build_scorer()` loads the scorer the `[scorer]` table describes; `Guard.from_config`
builds the rest on top of `load_config`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from memguard.scoring.base import Scorer

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_ADAPTER",
    "DEFAULT_SUBFOLDER",
    "ConfigError",
    "ScorerUnavailable",
    "GuardSettings",
    "ScorerSettings",
    "GuardConfig",
    "load_config",
    "dump_config",
    "build_local_scorer",
    "build_remote_scorer",
]

DEFAULT_BASE = "Qwen/Qwen3-1.7B-Base"
DEFAULT_ADAPTER = "MemGym/memgym-rm-1p7b"
DEFAULT_SUBFOLDER = "checkpoint-500"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class ScorerUnavailable(RuntimeError):
    """The scorer a configuration asks for cannot be built here (missing module or extra)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardSettings(_Strict):
    """The `[guard]` table: the policy applied to each score."""

    mode: Literal["enforce", "audit"] = "enforce"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="HARMFUL iff P(HARMFUL) > threshold.")
    band: float = Field(
        default=0.88, ge=0.5, le=1.0, description="Coverage band t; 0.5 means no uncertain band."
    )
    uncertain: Literal["harmful", "safe"] = "harmful"
    fallbacks: list[str] = Field(default_factory=lambda: ["observation_masking"])
    on_error: Literal["open", "closed"] = "open"

    @model_validator(mode="after")
    def _named_fallbacks(self) -> GuardSettings:
        if any(not name.strip() for name in self.fallbacks):
            raise ValueError("fallbacks: strategy names must not be empty")
        return self


class ScorerSettings(_Strict):
    """The `[scorer]` table: where MemRM runs and which weights it loads."""

    kind: Literal["local", "remote"] = "local"
    base: str = DEFAULT_BASE
    adapter: str = DEFAULT_ADAPTER
    subfolder: str = Field(default=DEFAULT_SUBFOLDER, description='"" when the adapter is at the root.')
    revision: str | None = None
    quantization: str | None = None
    max_length: int | None = Field(default=None, gt=0)
    url: str | None = None

    @model_validator(mode="after")
    def _url_matches_kind(self) -> ScorerSettings:
        if self.kind == "remote" and not self.url:
            raise ValueError('url: required when kind = "remote"')
        if self.kind == "local" and self.url:
            raise ValueError('url: only used when kind = "remote"')
        return self


class GuardConfig(_Strict):
    """A whole configuration file."""

    guard: GuardSettings = Field(default_factory=GuardSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)

    def build_scorer(self) -> Scorer:
        """Load the scorer the `[scorer]` table describes (weights load now, for local)."""
        s = self.scorer
        if s.kind == "remote":
            assert s.url is not None
            return build_remote_scorer(s.url)
        return build_local_scorer(
            base=s.base, adapter=s.adapter, subfolder=s.subfolder or None, revision=s.revision,
            quantization=s.quantization, max_length=s.max_length,
        )  # fmt: skip


def build_local_scorer(**options: Any) -> Scorer:
    """`MemRM.from_pretrained(**options)`, leaving out options that are None."""
    try:
        from memguard.scoring.local import MemRM
    except ImportError as err:
        raise ScorerUnavailable(f"the local scorer (memguard.scoring.local) cannot be imported: {err}") from err
    return MemRM.from_pretrained(**{k: v for k, v in options.items() if v is not None})


def build_remote_scorer(url: str) -> Scorer:
    """`RemoteMemRM(url)`, a MemRM served by vLLM."""
    try:
        from memguard.scoring.remote import RemoteMemRM
    except ImportError as err:
        raise ScorerUnavailable(
            f"the remote scorer is not available ({err}); install memguard[remote]"
        ) from err
    return RemoteMemRM(url)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
            if ": " in message and not key.endswith(message.split(": ", 1)[0]):
                field, message = message.split(": ", 1)
                key = f"{key}.{field}" if key else field
        got = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "model_attributes_type") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key or '<top level>'}: {message}{shown}")
    return "; ".join(lines)


def load_config(path: str | os.PathLike[str]) -> GuardConfig:
    """Read and validate a TOML configuration; `ConfigError` names the file and the bad key."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file}: cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML: {err}") from None
    try:
        return GuardConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{file}: {_describe(err)}") from None


def dump_config(config: GuardConfig, header: str = "") -> str:
    """TOML text for a configuration (None values left out: TOML has no null)."""
    import tomli_w  # the cli extra; reading needs only the standard library

    text = tomli_w.dumps(config.model_dump(exclude_none=True))
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + ("\n" if comment else "") + text
