"""Resolve and vet MemRM weights before anything is loaded into memory.

Each check exists because the failure it prevents is silent otherwise: PEFT falls back to pickle
`adapter_model.bin`, loads an adapter onto the wrong base with only a warning (and drops the LoRA
weights of layers the base does not have), and an adapter in a subfolder that was not named loads
nothing useful at all.

Identity is by content, never by folder name: the fingerprint recorded in every Decision hashes
the adapter's weights and its config (`lora_alpha` changes every score), and the base's config and
weight shapes, so a base copied to another folder keeps its fingerprint and a changed one does not.
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
BASE_CONFIG = "config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class ResolvedAdapter:
    """An adapter on local disk: `root` (+ `subfolder`) is what PEFT is given."""

    root: Path
    subfolder: str | None
    config: dict[str, Any]
    fingerprint: str  # the adapter's weights and the config keys that change scores

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


# Keys that name where a model came from or which library wrote it, not what it computes.
_ADAPTER_PROVENANCE_KEYS = frozenset({"base_model_name_or_path", "revision", "inference_mode", "peft_version"})
_BASE_PROVENANCE_KEYS = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache"})


def _canonical(config: dict[str, Any], ignore: frozenset[str]) -> bytes:
    """The config's meaningful keys as canonical JSON (unset-like values dropped: None == absent)."""
    kept = {k: v for k, v in config.items() if k not in ignore and v not in (None, {}, [])}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def adapter_fingerprint(weights: Path, config: dict[str, Any]) -> str:
    """First 16 hex of sha256 over the adapter's weights and its canonical config.

    Args:
        weights: `adapter_model.safetensors`.
        config: Its `adapter_config.json`, parsed.

    Returns:
        The fingerprint: equal for the same weights and settings, whatever folder holds them.
    """
    digest = hashlib.sha256(fingerprint_files([weights]).encode("ascii"))
    digest.update(_canonical(config, _ADAPTER_PROVENANCE_KEYS))
    return digest.hexdigest()[:16]


def base_signature(directory: Path) -> dict[str, Any]:
    """What identifies a base model by content: its config and every weight's name and shape.

    Reads `config.json` and the safetensors headers only (no weights are loaded), so it costs
    milliseconds even for a multi-gigabyte model.

    Args:
        directory: A model folder holding `config.json` and `*.safetensors`.

    Returns:
        ``{"config": {...}, "shapes": {name: [dims]}}``, provenance keys left out.
    """
    from safetensors import safe_open

    config = json.loads((directory / BASE_CONFIG).read_text(encoding="utf-8"))
    shapes: dict[str, list[int]] = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():
                shapes[key] = list(weights.get_slice(key).get_shape())
    return {"config": json.loads(_canonical(config, _BASE_PROVENANCE_KEYS)), "shapes": dict(sorted(shapes.items()))}


def base_fingerprint(directory: Path) -> str:
    """First 16 hex of sha256 over `base_signature(directory)`."""
    return hashlib.sha256(json.dumps(base_signature(directory), sort_keys=True).encode("utf-8")).hexdigest()[:16]


def combined_fingerprint(adapter: str | None, base: str | None) -> str | None:
    """The one fingerprint of the scoring function: adapter and base together (None if neither)."""
    if adapter is None and base is None:
        return None
    return hashlib.sha256(f"{adapter or '-'}:{base or '-'}".encode("ascii")).hexdigest()[:16]


def local_model_dir(ref: str, revision: str | None = None) -> Path | None:
    """The folder holding a model's `config.json` on this machine: the path itself, or the
    Hugging Face cache's snapshot for a hub id. None when it is not here (never downloads).

    Args:
        ref: A local path or a hub id.
        revision: The hub revision (None: the cached default branch).

    Returns:
        The folder, or None.
    """
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        return path if (path / BASE_CONFIG).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, BASE_CONFIG, revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id or an unreadable cache: simply not here
        return None
    return Path(found).parent if isinstance(found, str) else None


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
    return ResolvedAdapter(root, subfolder, config, adapter_fingerprint(weights, config))


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


def _config_differences(expected: Path, got: Path) -> list[str]:
    """Config keys whose values differ between two base folders ("key: a != b")."""
    a, b = base_signature(expected), base_signature(got)
    keys = sorted(set(a["config"]) | set(b["config"]))
    differences = [f"{k}: {a['config'].get(k)!r} != {b['config'].get(k)!r}" for k in keys
                   if a["config"].get(k) != b["config"].get(k)]
    if not differences and a["shapes"] != b["shapes"]:
        differences.append("weight shapes differ")
    return differences


def check_base_name(adapter_config: dict[str, Any], base: str, *, force: bool) -> None:
    """Refuse an adapter trained on a different base (e.g. the instruct model instead of -Base).

    The names (last path component, or the hub cache's ``models--Org--Name``) are compared
    loosely; when they differ but both models are on this machine and have the same config and
    weight shapes, the base is the same model in another folder and is accepted. `force` skips
    only this check: the target-module and shape checks always run.

    Raises:
        ValueError: The names differ and the content does not show it is the same model.
    """
    trained_on = adapter_config.get("base_model_name_or_path")
    expected, got = model_name(trained_on), model_name(base)
    if not expected or not got or expected == got or force:
        return
    expected_dir, base_dir = local_model_dir(str(trained_on)), local_model_dir(base)
    differs = ""
    if expected_dir is not None and base_dir is not None:
        differences = _config_differences(expected_dir, base_dir)
        if not differences:
            return  # the same model, copied to another folder
        differs = f" Their configs differ: {'; '.join(differences[:5])}."
    raise ValueError(
        f"adapter was trained on {trained_on!r} but the base is {base!r}; scores would be "
        f"meaningless.{differs} If the base is the same model under another name, pass force=True "
        "(command line: --force; TOML [scorer]: force = true): the weight-shape checks still run."
    )


def _targets(name: str, targets: Any) -> bool:
    """Whether PEFT's `target_modules` (a list of suffixes or one regex) selects module `name`."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def check_target_modules(model: Any, adapter_config: dict[str, Any]) -> None:
    """Every LoRA target must exist in the base, else PEFT would leave parts of it unadapted.

    Raises:
        ValueError: A target module is not in the base.
    """
    targets = adapter_config.get("target_modules")
    if not targets:
        return
    names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str):
        missing = [] if any(_targets(n, targets) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(_targets(n, [t]) for n in names)]
    if missing:
        raise ValueError(
            f"adapter target modules {missing} are not in the base model "
            f"({type(model).__name__}): the adapter was trained on a different base."
        )


def _layer_count(names: set[str]) -> int:
    layers = {int(m.group(1)) for n in names if (m := re.search(r"\.layers\.(\d+)\.", n + "."))}
    return len(layers)


def check_adapter_shapes(model: Any, adapter: ResolvedAdapter) -> None:
    """LoRA weights must match their config's rank and the base's modules and layer sizes.

    PEFT would otherwise fail only after the base is loaded, with a long size-mismatch dump,
    build the wrong scaling (a rank that disagrees with the config), silently drop the weights
    of modules the base does not have (an adapter for a deeper base), or leave targeted modules
    of the base without weights (an adapter for a shallower one). Reads tensor shapes from the
    safetensors header; no weights are loaded.

    Raises:
        ValueError: Naming the first module, rank or size that differs.
    """
    from safetensors import safe_open

    rank = adapter.config.get("r")
    check_rank = isinstance(rank, int) and not adapter.config.get("rank_pattern")
    modules = dict(model.named_modules())
    adapted: set[str] = set()
    with safe_open(str(adapter.directory / ADAPTER_WEIGHTS), framework="pt") as weights:
        for key in weights.keys():
            for part, rank_axis, size_axis, size_attr in ((".lora_A.", 0, 1, "in_features"),
                                                          (".lora_B.", 1, 0, "out_features")):
                if part not in key:
                    continue
                shape = weights.get_slice(key).get_shape()
                name = key.split(part)[0].removeprefix("base_model.model.")
                adapted.add(name)
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
                        f"layer has {expected}: the adapter was trained on a different base model."
                    )
    _check_coverage(model, adapter.config, modules, adapted)


def _check_coverage(model: Any, config: dict[str, Any], modules: dict[str, Any], adapted: set[str]) -> None:
    """The adapter's modules and the base's targeted modules must be the same set."""
    extra = sorted(adapted - set(modules))
    targets = config.get("target_modules")
    selective = any(config.get(k) for k in ("layers_to_transform", "layers_pattern", "exclude_modules"))
    targeted = {n for n, m in modules.items() if isinstance(getattr(m, "in_features", None), int)
                and targets and _targets(n, targets)}
    missing = [] if selective or not adapted else sorted(targeted - adapted)
    if not extra and not missing:
        return
    sizes = (f"(adapter: {_layer_count(adapted)} layers, base {type(model).__name__}: "
             f"{_layer_count(set(modules))} layers)")
    if extra:
        raise ValueError(
            f"adapter has LoRA weights for {len(extra)} module(s) the base does not have, e.g. {extra[0]} "
            f"{sizes}: the adapter was trained on a different base model."
        )
    raise ValueError(
        f"the base has {len(missing)} targeted module(s) the adapter has no weights for, e.g. {missing[0]} "
        f"{sizes}: the adapter was trained on a different base model."
    )
