"""Real SWE-agent trajectories shipped for the demo, examples and tests (MIT, see LICENSE-SWE-agent)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["bundled_trajectories", "load_trajectory"]


def _folder() -> Path:
    return Path(str(resources.files(__name__) / "trajectories"))


def bundled_trajectories() -> list[Path]:
    """Paths of the trajectories shipped inside the package, sorted by name."""
    return sorted(_folder().glob("*.json"))


def load_trajectory(path_or_name: str | Path) -> list[dict[str, Any]]:
    """The OpenAI-style messages of a trajectory file (a path, or a bundled file's name/stem)."""
    path = Path(path_or_name)
    if not path.exists():
        matches = [p for p in bundled_trajectories() if p.stem == str(path_or_name) or p.name == str(path_or_name)]
        if not matches:
            raise FileNotFoundError(f"no trajectory file {path_or_name!r} (bundled: "
                                    f"{', '.join(p.stem for p in bundled_trajectories())})")
        path = matches[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    messages = data["messages"] if isinstance(data, dict) else data
    if not isinstance(messages, list):
        raise ValueError(f"{path}: expected a list of messages or {{'messages': [...]}}")
    return messages
