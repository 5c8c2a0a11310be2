"""What the agent-path benchmarks share: measure this checkout and, with `--baseline`, another one.

Each benchmark measures in a subprocess that imports memguard (and the integration it times) from
the checkout it is given (`measure_in`), and prints the figures side by side as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Option:
    """A numeric command-line option handed to `run_in` as a keyword (``--calls`` -> ``calls=``)."""

    name: str
    type: type
    default: Any
    help: str


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ms = sorted(1e3 * t for t in seconds)
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3)}


def measure_in(tree: Path, module: str, call: str, *, integration: str | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``module.<call>`` in a subprocess that imports memguard from `tree`; its JSON result.

    `integration` names the folder under ``integrations/`` whose package (and tests' doubles) the
    measurement imports from the same checkout.
    """
    paths = [str(tree)]
    if integration is not None:
        paths += [str(tree / "integrations" / integration), str(tree / "integrations" / integration / "tests")]
    paths.append(str(HERE))
    code = (f"import json, sys, warnings; sys.path[:0] = {paths!r}; warnings.simplefilter('ignore'); "
            f"import {module} as b; print(json.dumps(b.{call}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


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


def table_with_reviews(results: dict[str, dict[str, Any]], first_column: str) -> str:
    """`table`, then how the audit reviews ended in each checkout (``results[name]["reviews"]``)."""
    reviews = "; ".join(f"{name}: {figures['reviews']}" for name, figures in results.items())
    return table(results, first_column) + f"\n\naudit reviews by size ({reviews})"


def main(argv: list[str] | None, *, description: str, run_in: Callable[..., dict[str, Any]],
         options: Sequence[Option], show: Callable[[dict[str, dict[str, Any]]], str]) -> int:
    """Parse `options` and `--baseline/--json`, measure, print `show(results)`, write the JSON."""
    parser = argparse.ArgumentParser(description=description)
    for option in options:
        parser.add_argument(f"--{option.name}", type=option.type, default=option.default, help=option.help)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure side by side (e.g. main)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    chosen = {option.name: getattr(args, option.name) for option in options}
    results = {"this checkout": run_in(HERE.parent, **chosen)}
    if args.baseline is not None:
        results[f"baseline ({args.baseline})"] = run_in(args.baseline.resolve(), **chosen)
    print(show(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0
