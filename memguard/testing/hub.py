"""An offline Hugging Face hub cache that holds tiny random MemRM look-alikes under the real ids.

`MemRM.from_pretrained()` with its defaults asks the hub for `Qwen/Qwen3-1.7B-Base` and
`MemGym/memgym-rm-1p7b` (`checkpoint-500`). With ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``
pointing at a cache laid out by `install_offline_hub`, that very call (the real resolution and
loading code, hub ids included) loads a tiny random model instead, without any network. The
documentation's examples run this way in the test suite; scores from it are meaningless.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memguard.settings import DEFAULT_ADAPTER, DEFAULT_BASE, DEFAULT_SUBFOLDER
from memguard.testing.tiny import build_tiny_rm

__all__ = ["OFFLINE_COMMIT", "install_offline_hub", "offline_hub"]

OFFLINE_COMMIT = "0" * 40
"""The commit hash every model in the offline cache is stored under (what `refs/main` names)."""


def _store(cache: Path, repo_id: str, source: Path, *, subfolder: str | None = None) -> Path:
    """Copy `source` into `cache` as the `main` snapshot of model `repo_id`; returns the snapshot."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / OFFLINE_COMMIT
    target = snapshot / subfolder if subfolder else snapshot
    shutil.copytree(source, target, dirs_exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(OFFLINE_COMMIT, encoding="utf-8")
    return snapshot


def install_offline_hub(cache: str | os.PathLike[str], *, base: str = DEFAULT_BASE,
                        adapter: str = DEFAULT_ADAPTER, subfolder: str = DEFAULT_SUBFOLDER,
                        **tiny: Any) -> Path:
    """Write a hub cache holding a tiny random base and adapter under the given hub ids.

    Args:
        cache: The directory to use as ``HF_HUB_CACHE`` (created if missing).
        base: The hub id the tiny base is stored under (default: MemRM's real base).
        adapter: The hub id the tiny adapter is stored under (default: MemRM's real adapter).
        subfolder: The adapter's subfolder in its repository (default ``checkpoint-500``).
        **tiny: Options for `memguard.testing.build_tiny_rm` (seed, tokenizer, forced, ...).

    Returns:
        The cache directory.

    Raises:
        ImportError: memguard[local] is not installed (building the model needs torch,
            transformers, peft).
    """
    root = Path(cache)
    build = root / ".build"
    build_tiny_rm(build, **tiny)
    adapter_dir = build / "adapter" / DEFAULT_SUBFOLDER
    config_file = adapter_dir / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base  # as the real adapter names its base
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    _store(root, base, build / "base")
    _store(root, adapter, adapter_dir, subfolder=subfolder)
    shutil.rmtree(build)
    return root


@contextmanager
def offline_hub(cache: str | os.PathLike[str], **options: Any) -> Iterator[Path]:
    """Within the block, the hub is this offline cache (built by `install_offline_hub` if empty).

    Sets ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (and restores them
    after), so nothing can reach the network and the default hub ids load the tiny model.

    Args:
        cache: The cache directory.
        **options: Passed to `install_offline_hub` when the cache has to be built.

    Yields:
        The cache directory.
    """
    root = Path(cache)
    if not any(root.glob("models--*")):
        install_offline_hub(root, **options)
    names = ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    constants: Any = None
    try:
        from huggingface_hub import constants  # read at import: patch the live values as well

        old = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(root), True
    except ImportError:  # pragma: no cover - memguard[local] brings huggingface-hub
        constants = None
    try:
        yield root
    finally:
        if constants is not None:
            constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = old
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
