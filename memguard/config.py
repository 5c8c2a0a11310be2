"""The guard's TOML configuration: schema, loading with errors that name the bad key, writing.

```toml
[guard]
mode = "enforce"          # enforce | audit
threshold = 0.5           # the commit rule: commit iff P(HARMFUL) < threshold
band = 0.88               # coverage band t, reported: uncertain iff 1 - t < P(SAFE) < t
band_gate = false         # true: an uncertain score is not committed either
fallbacks = ["observation_masking", "observation_masking+keep_more_x2", "recent_window"]
on_error = "open"         # open (commit) | closed (veto) when the scorer fails
# optional: search = "sequential" | "parallel", hard_budget (tokens), timeout (s), cooldown (steps),
# identical_is_safe, audit_queue_size, max_conversations, max_stalled_calls

[scorer]
kind = "local"            # local (in-process MemRM) | remote (vLLM server)
base = "Qwen/Qwen3-1.7B-Base"
adapter = "MemGym/memgym-rm-1p7b"
subfolder = "checkpoint-500"
# revision, adapter_revision, quantization ("nf4", ...), max_length; url for kind = "remote"

[audit]                   # optional: a JSONL audit log (what `memguard report` reads)
jsonl = "memguard-audit.jsonl"
redact = false            # true: hashes and sizes instead of any text
```

TOML has no null: a key left out takes its default. The `[guard]` table is
`memguard.settings.GuardSettings` itself, so its keys and defaults are exactly `Guard`'s.

`GuardConfig.build_scorer()` loads the scorer the `[scorer]` table describes, `build_guard` (and
`Guard.from_config`) the whole guard. Fallbacks are named like the strategies' own `name`s:
`observation_masking`, `recent_window`, and `<name>+keep_more_x<factor>` for a wider retry.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memguard.settings import DEFAULT_ADAPTER, DEFAULT_BASE, DEFAULT_SUBFOLDER, GuardSettings
from memguard.strategies import resolve_strategy

if TYPE_CHECKING:
    from memguard.guard import Guard
    from memguard.scoring.base import Scorer
    from memguard.strategies import Strategy

__all__ = [
    "DEFAULT_ADAPTER",
    "DEFAULT_BASE",
    "DEFAULT_SUBFOLDER",
    "AuditSettings",
    "ConfigError",
    "GuardConfig",
    "GuardSettings",
    "ScorerSettings",
    "ScorerUnavailable",
    "build_guard",
    "build_local_scorer",
    "build_remote_scorer",
    "dump_config",
    "load_config",
    "resolve_fallbacks",
]


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class ScorerUnavailable(RuntimeError):
    """The scorer a configuration asks for cannot be built here (missing module or extra)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_fallbacks(names: list[str]) -> list[Strategy]:
    """Strategies for fallback names; `ValueError` names the unknown one and lists the known."""
    return [resolve_strategy(name) for name in names]


class AuditSettings(_Strict):
    """The optional `[audit]` table: where decisions are recorded."""

    jsonl: str | None = Field(default=None, description="Path of a JSONL audit log.")
    redact: bool = False
    include_messages: bool = False
    max_bytes: int | None = Field(default=None, gt=0)


class ScorerSettings(_Strict):
    """The `[scorer]` table: where MemRM runs and which weights it loads."""

    kind: Literal["local", "remote"] = "local"
    base: str = DEFAULT_BASE
    adapter: str = DEFAULT_ADAPTER
    subfolder: str = Field(default=DEFAULT_SUBFOLDER, description='"" when the adapter is at the root.')
    revision: str | None = None
    adapter_revision: str | None = None
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
    audit: AuditSettings = Field(default_factory=AuditSettings)

    def build_scorer(self) -> Scorer:
        """Load the scorer the `[scorer]` table describes (weights load now, for local)."""
        s = self.scorer
        if s.kind == "remote":
            assert s.url is not None
            return build_remote_scorer(s.url, max_length=s.max_length)
        return build_local_scorer(
            base=s.base, adapter=s.adapter, subfolder=s.subfolder or None, revision=s.revision,
            adapter_revision=s.adapter_revision, quantization=s.quantization, max_length=s.max_length,
        )  # fmt: skip


def build_guard(config: GuardConfig, *, scorer: Scorer | None = None, **overrides: Any) -> Guard:
    """A `Guard` as `config` describes it; `scorer` (else built from `[scorer]`) and any
    `Guard` keyword in `overrides` take precedence over the file."""
    from memguard.audit import JSONLSink
    from memguard.guard import Guard

    a = config.audit
    if a.jsonl and "sinks" not in overrides:
        overrides["sinks"] = [JSONLSink(a.jsonl, redact=a.redact, include_messages=a.include_messages,
                                        max_bytes=a.max_bytes)]
    return Guard(scorer if scorer is not None else config.build_scorer(), settings=config.guard, **overrides)


def build_local_scorer(**options: Any) -> Scorer:
    """`MemRM.from_pretrained(**options)`, leaving out options that are None."""
    try:
        from memguard.scoring.local import MemRM
    except ImportError as err:
        raise ScorerUnavailable(f"the local scorer (memguard.scoring.local) cannot be imported: {err}") from err
    return MemRM.from_pretrained(**{k: v for k, v in options.items() if v is not None})


def build_remote_scorer(url: str, **options: Any) -> Scorer:
    """`RemoteMemRM(url, **options)`, a MemRM served by vLLM (None options left out)."""
    try:
        from memguard.scoring.remote import RemoteMemRM
    except ImportError as err:
        raise ScorerUnavailable(
            f"the remote scorer is not available ({err}); install memguard[remote]"
        ) from err
    return RemoteMemRM(url, **{k: v for k, v in options.items() if v is not None})


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
            field, _, rest = message.partition(": ")
            if rest and field.isidentifier() and not key.endswith(field):  # "url: required ..."
                message = rest
                key = f"{key}.{field}" if key else field
        got = item.get("input")
        quiet = item["type"] in ("extra_forbidden", "model_attributes_type") or isinstance(got, dict)
        shown = "" if quiet else f" (got {got!r})"
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
