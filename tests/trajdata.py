"""Where tests find real agent trajectories: ../shared/data/trajectories beside the checkout,
else the copies bundled in the package (MIT licence beside both)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from memguard.data import bundled_trajectories

REPO = Path(__file__).resolve().parents[1]


def trajectory_dir() -> Path | None:
    for candidate in (os.environ.get("MEMGUARD_TRAJECTORIES"), REPO.parent / "shared/data/trajectories"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def trajectory_paths() -> list[Path]:
    folder = trajectory_dir()
    return sorted(folder.glob("*.json")) if folder else bundled_trajectories()


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["messages"]
