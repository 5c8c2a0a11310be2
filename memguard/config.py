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
# local:  revision (the base's), adapter_revision, quantization ("auto" | "nf4" | "none"),
#         force (true: skip only the adapter's base-name check), dtype, device
# both:   max_length (positions, label included), cut ("exact" | "shared"), cut_block
# remote: url, model (the served adapter's name), api_key_env (NAME of the environment
#         variable holding the key), timeout, retries, merged_adapter

[audit]                   # optional: a JSONL audit log (what `memguard report` reads)
jsonl = "memguard-audit.jsonl"
redact = false            # true: hashes and sizes instead of any text
```

TOML has no null: a key left out takes its default. The `[guard]` table is
`memguard.settings.GuardSettings` itself, so its keys and defaults are exactly `Guard`'s.
Relative paths (`[audit] jsonl`, and `base`/`adapter` when they name a folder beside the file)
resolve against the folder of the configuration file, not the working directory. Secrets never go
in the file: `api_key_env` names the environment variable that holds the API key.

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

from memguard.scoring.cut import Cut
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
    "describe_error",
    "dump_config",
    "load_config",
    "resolve_fallbacks",
    "resolve_paths",
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


Quantization = Literal["auto", "nf4", "none"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
_REMOTE_ONLY = ("url", "model", "api_key_env", "timeout", "retries", "merged_adapter")


class ScorerSettings(_Strict):
    """The `[scorer]` table: where MemRM runs and which weights it loads.

    Every value is checked here, so a bad one fails when the file is read, not when the weights
    load. Keys only a remote scorer uses are refused with ``kind = "local"``; local-only keys are
    ignored with ``kind = "remote"`` (a command line's `--remote` may switch a local file's kind).
    """

    kind: Literal["local", "remote"] = "local"
    base: str = DEFAULT_BASE
    adapter: str = DEFAULT_ADAPTER
    subfolder: str = Field(default=DEFAULT_SUBFOLDER, description='"" when the adapter is at the root.')
    revision: str | None = Field(default=None, description="Hub revision of the base.")
    adapter_revision: str | None = Field(default=None, description="Hub revision of the adapter.")
    quantization: Quantization | None = Field(
        default=None, description='"auto" (NF4 on CUDA, none on CPU: the default when unset), "nf4" or "none".')
    force: bool = Field(default=False, description="Skip only the adapter's base-name check (shapes still checked).")
    dtype: Dtype | None = Field(default=None, description='"auto" (bfloat16 on CUDA, float32 on CPU: the default).')
    device: str | None = Field(default=None, description='"auto" (CUDA if available: the default), "cpu", "cuda:1"...')
    max_length: int | None = Field(default=None, ge=2, description="Positions the model reads, the label's included.")
    cut: Cut | None = Field(default=None, description='"exact" (the default: each prompt cut alone) or "shared".')
    cut_block: int | None = Field(default=None, ge=1, description="Shared cut: round its start to this many tokens.")
    url: str | None = None
    model: str | None = Field(default=None, description='The served adapter\'s name (default "memrm").')
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="Name of the environment variable holding the API key.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds per HTTP call.")
    retries: int | None = Field(default=None, ge=0, description="Retries of a failed connection or 5xx answer.")
    merged_adapter: bool = Field(default=False, description="The served model has the adapter merged in.")

    @model_validator(mode="after")
    def _keys_match_kind(self) -> ScorerSettings:
        if self.kind == "remote" and not self.url:
            raise ValueError('url: required when kind = "remote"')
        if self.kind == "local":
            for name in _REMOTE_ONLY:
                if getattr(self, name) not in (None, False):
                    raise ValueError(f'{name}: only used when kind = "remote"')
        return self

    def api_key(self) -> str | None:
        """The API key from the environment variable `api_key_env` names (None when unset).

        Raises:
            ConfigError: `api_key_env` names a variable that is not set.
        """
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(f"scorer.api_key_env: the environment variable {self.api_key_env} is not set "
                              "(it should hold the scoring server's API key)")
        return value

    def local_options(self) -> dict[str, Any]:
        """`MemRM.from_pretrained` keyword arguments (quantization "none" is None there)."""
        options: dict[str, Any] = dict(
            base=self.base, adapter=self.adapter, subfolder=self.subfolder or None, revision=self.revision,
            adapter_revision=self.adapter_revision, max_length=self.max_length, cut=self.cut,
            cut_block=self.cut_block, force=self.force or None, dtype=self.dtype, device=self.device,
        )  # fmt: skip
        options = {k: v for k, v in options.items() if v is not None}
        if self.quantization is not None:
            options["quantization"] = None if self.quantization == "none" else self.quantization
        return options

    def remote_options(self) -> dict[str, Any]:
        """`RemoteMemRM` keyword arguments, the API key read from the environment."""
        options: dict[str, Any] = dict(
            model=self.model, api_key=self.api_key(), timeout=self.timeout, retries=self.retries,
            max_length=self.max_length, cut=self.cut, cut_block=self.cut_block,
            merged_adapter=self.merged_adapter or None,
        )  # fmt: skip
        return {k: v for k, v in options.items() if v is not None}


class GuardConfig(_Strict):
    """A whole configuration file."""

    guard: GuardSettings = Field(default_factory=GuardSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    def build_scorer(self) -> Scorer:
        """Load the scorer the `[scorer]` table describes (weights load now, for local).

        Raises:
            ConfigError: `api_key_env` names an unset variable.
            ScorerUnavailable: The scorer's module or extra is missing.
        """
        s = self.scorer
        if s.kind == "remote":
            assert s.url is not None
            return build_remote_scorer(s.url, **s.remote_options())
        return _memrm(s.local_options())


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
    return _memrm({k: v for k, v in options.items() if v is not None})


def _memrm(options: dict[str, Any]) -> Scorer:
    try:
        from memguard.scoring.local import MemRM
    except ImportError as err:
        raise ScorerUnavailable(f"the local scorer (memguard.scoring.local) cannot be imported: {err}") from err
    return MemRM.from_pretrained(**options)


def build_remote_scorer(url: str, **options: Any) -> Scorer:
    """`RemoteMemRM(url, **options)`, a MemRM served by vLLM (None options left out)."""
    try:
        from memguard.scoring.remote import RemoteMemRM
    except ImportError as err:
        raise ScorerUnavailable(
            f"the remote scorer is not available ({err}); install memguard[remote]"
        ) from err
    return RemoteMemRM(url, **{k: v for k, v in options.items() if v is not None})


def describe_error(error: ValidationError) -> str:
    """A validation error as one line of ``key: problem (got value)``, keys dotted from the top."""
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
        config = GuardConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{file}: {describe_error(err)}") from None
    return resolve_paths(config, file.resolve().parent)


def _beside(folder: Path, value: str) -> str:
    """`value` resolved against `folder` when it is a relative path there, else unchanged."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return value
    candidate = folder / path
    explicit = value.startswith(("./", "../", ".\\", "..\\"))
    return os.path.normpath(candidate) if explicit or candidate.exists() else value


def resolve_paths(config: GuardConfig, folder: Path) -> GuardConfig:
    """`config` with its relative paths made absolute against `folder` (the config file's).

    `[audit] jsonl` is always a path; `[scorer]` `base` and `adapter` are paths only when they
    start with ``./`` or ``../`` or name something in `folder` (otherwise they may be hub ids,
    which look like relative paths: ``Org/name``).

    Args:
        config: A validated configuration.
        folder: The folder its file is in.

    Returns:
        The configuration with those paths resolved.
    """
    audit, scorer = config.audit, config.scorer
    if audit.jsonl:
        jsonl = Path(audit.jsonl).expanduser()
        audit = audit.model_copy(update={"jsonl": str(jsonl if jsonl.is_absolute() else folder / jsonl)})
    scorer = scorer.model_copy(update={"base": _beside(folder, scorer.base),
                                       "adapter": _beside(folder, scorer.adapter)})
    return config.model_copy(update={"audit": audit, "scorer": scorer})


def dump_config(config: GuardConfig, header: str = "") -> str:
    """TOML text for a configuration (None values left out: TOML has no null)."""
    import tomli_w  # the cli extra; reading needs only the standard library

    text = tomli_w.dumps(config.model_dump(exclude_none=True))
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + ("\n" if comment else "") + text
