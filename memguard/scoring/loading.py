"""Resolve and vet MemRM weights before anything is loaded into memory.

Each check exists because the failure it prevents is silent otherwise: PEFT falls back to pickle
`adapter_model.bin`, loads an adapter onto the wrong base with only a warning, and an adapter in
a subfolder that was not named loads nothing useful at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class ResolvedAdapter:
    """An adapter on local disk: `root` (+ `subfolder`) is what PEFT is given."""

    root: Path
    subfolder: str | None
    config: dict[str, Any]
    fingerprint: str

    @property
    def directory(self) -> Path:
        return self.root / self.subfolder if self.subfolder else self.root


def looks_like_path(ref: str) -> bool:
    """A hub id is `name` or `org/name`; anything else (or anything on disk) is a path."""
    if os.path.exists(ref):
        return True
    return (
        os.path.isabs(ref)
        or ref.startswith((".", "~"))
        or ref.count("/") > 1
        or "\\" in ref
    )


def fingerprint_files(files: list[Path]) -> str:
    """sha256 over the files' bytes in name order, first 16 hex: identifies the exact weights."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def check_local_base(base: str) -> None:
    """Fail early, and clearly, on a local base dir that is missing or has no safetensors."""
    if not looks_like_path(base):
        return
    path = Path(base).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"base model path does not exist: {base}")
    if not path.is_dir():
        raise ValueError(f"base model path is not a directory: {base}")
    if not any(path.glob("*.safetensors")):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        raise ValueError(
            f"no *.safetensors weights in base model dir {base}"
            + (f" (found pickle files {pickles}, which memguard refuses to load)" if pickles else "")
        )


def resolve_adapter(adapter: str, subfolder: str | None, revision: str | None) -> ResolvedAdapter:
    """Find the adapter locally or fetch only its config + safetensors from the hub."""
    if looks_like_path(adapter):
        if revision is not None:
            raise ValueError("adapter_revision only applies to hub ids, not local paths")
        root = Path(adapter).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"adapter path does not exist: {adapter}")
    else:
        root = _download_adapter(adapter, subfolder, revision)
    directory = root / subfolder if subfolder else root
    if not directory.is_dir():
        subdirs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"adapter subfolder {subfolder!r} not found in {adapter}"
            + (f"; subfolders there: {subdirs}" if subdirs else "")
        )
    config_file = directory / ADAPTER_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"no {ADAPTER_CONFIG} in {directory}: not a PEFT adapter dir")
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        raise ValueError(
            f"no {ADAPTER_WEIGHTS} in {directory}"
            + (
                f"; found only pickle weights {pickles}, which memguard refuses to load "
                "(unpickling runs arbitrary code). Convert the adapter to safetensors."
                if pickles
                else ""
            )
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    return ResolvedAdapter(root, subfolder, config, fingerprint_files([weights]))


def _download_adapter(repo_id: str, subfolder: str | None, revision: str | None) -> Path:
    """Fetch only the adapter config and safetensors (never pickles, optimizer states, ...)."""
    from huggingface_hub import snapshot_download

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    try:
        local = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[prefix + ADAPTER_CONFIG, prefix + ADAPTER_WEIGHTS],
        )
    except Exception as exc:  # network, auth, offline cache miss: all need the same advice
        raise OSError(
            f"could not get adapter {repo_id!r} (subfolder={subfolder!r}, revision={revision!r}) "
            f"from the Hugging Face hub or its local cache: {exc}"
        ) from exc
    return Path(local)


def model_name(ref: str | None) -> str:
    """Loose model name: last path component, or `Name` from a hub cache `models--Org--Name`."""
    if not ref:
        return ""
    parts = Path(str(ref).rstrip("/\\")).parts
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.split("--")[-1].lower()
    return parts[-1].lower() if parts else ""


def check_base_name(adapter_config: dict[str, Any], base: str, *, force: bool) -> None:
    """Refuse an adapter trained on a different base (e.g. the instruct model instead of -Base)."""
    expected = model_name(adapter_config.get("base_model_name_or_path"))
    got = model_name(base)
    if expected and got and expected != got and not force:
        raise ValueError(
            f"adapter was trained on {adapter_config.get('base_model_name_or_path')!r} but the base "
            f"is {base!r}; scores would be meaningless. Pass force=True if the base is the same "
            "model under another name."
        )


def check_target_modules(model: Any, adapter_config: dict[str, Any], *, force: bool) -> None:
    """Every LoRA target must exist in the base, else PEFT would leave parts of it unadapted."""
    targets = adapter_config.get("target_modules")
    if not targets or force:
        return
    names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str):
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(
            f"adapter target modules {missing} are not in the base model "
            f"({type(model).__name__}); wrong base? Pass force=True to load anyway."
        )


def check_adapter_shapes(model: Any, adapter: ResolvedAdapter, *, force: bool) -> None:
    """LoRA weights must match their config's rank and the base's layer sizes.

    PEFT would otherwise fail only after the base is loaded, with a long size-mismatch dump, or
    (with a rank that disagrees with the config) build the wrong scaling. Reads tensor shapes
    from the safetensors header; no weights are loaded.
    """
    if force:
        return
    from safetensors import safe_open

    rank = adapter.config.get("r")
    check_rank = isinstance(rank, int) and not adapter.config.get("rank_pattern")
    modules = dict(model.named_modules())
    with safe_open(str(adapter.directory / ADAPTER_WEIGHTS), framework="pt") as weights:
        for key in weights.keys():
            for part, rank_axis, size_axis, size_attr in ((".lora_A.", 0, 1, "in_features"),
                                                          (".lora_B.", 1, 0, "out_features")):
                if part not in key:
                    continue
                shape = weights.get_slice(key).get_shape()
                name = key.split(part)[0].removeprefix("base_model.model.")
                if check_rank and len(shape) == 2 and shape[rank_axis] != rank:
                    raise ValueError(
                        f"adapter_config.json says r={rank} but the adapter weights have rank "
                        f"{shape[rank_axis]} ({name}); the config does not belong to these weights."
                    )
                module = modules.get(name)
                expected = getattr(module, size_attr, None)
                fits = not isinstance(expected, int) or len(shape) != 2 or shape[size_axis] == expected
                if module is not None and not fits:
                    raise ValueError(
                        f"adapter weights for {name} have {size_attr}={shape[size_axis]} but the base "
                        f"layer has {expected}: the adapter was trained on a different base model. "
                        "Pass force=True to try anyway."
                    )
