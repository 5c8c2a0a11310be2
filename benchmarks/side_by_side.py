"""What the agent-path benchmarks share: measure this checkout and, with `--baseline`, another one.

Each benchmark measures in a subprocess that imports memguard from the checkout it is given
(`run_in(tree, calls, pause)`), and prints the figures side by side as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RunIn = Callable[[Path, int, float], dict[str, Any]]


def table(results: dict[str, dict[str, Any]], first_column: str) -> str:
    """One row per ``name@size`` figure, one p50 / p99 column per checkout."""
    names = list(results)
    keys = [k for k in results[names[0]] if "@" in k]
    lines = [f"| {first_column} | " + " | ".join(f"{n}: p50 / p99 (ms)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in keys:
        cells = [f"{results[n][key]['p50_ms']:.3f} / {results[n][key]['p99_ms']:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None, *, description: str, run_in: RunIn, calls: int, pause: float,
         calls_help: str, show: Callable[[dict[str, dict[str, Any]]], str]) -> int:
    """Parse `--calls/--pause/--baseline/--json`, measure, print `show(results)`, write the JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--calls", type=int, default=calls, help=calls_help)
    parser.add_argument("--pause", type=float, default=pause, help="seconds between calls (the agent's own work)")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure side by side (e.g. main)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    results = {"this checkout": run_in(here, args.calls, args.pause)}
    if args.baseline is not None:
        results[f"baseline ({args.baseline})"] = run_in(args.baseline.resolve(), args.calls, args.pause)
    print(show(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0
