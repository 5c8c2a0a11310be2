"""Score a file of rows into a JSONL file of scores, resumably.

Scoring thousands of long prompts takes long enough to be interrupted, so each batch is appended
and flushed as soon as it is scored, and a rerun skips every row whose key is already in the
output. A crash mid-write can leave a torn last line; it is cut off (and rescored) on resume.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from memguard.datasets import DataRow
from memguard.metrics import COVERAGE_T, band
from memguard.scoring.base import NonFiniteScoreError, Score, Scorer
from memguard.text import safe_text

__all__ = ["OutputError", "existing_keys", "score_record", "score_rows", "score_to_file"]


class OutputError(ValueError):
    """An existing output file that cannot be resumed safely."""


def existing_keys(path: str | os.PathLike[str]) -> tuple[set[str], bool]:
    """Keys already scored in `path`, and whether a torn last line was cut off.

    Only the last line may be broken (an interrupted write); anything else is an `OutputError`,
    because appending to a file we do not understand could mix two runs' results.
    """
    file = Path(path)
    if not file.exists():
        return set(), False
    data = file.read_bytes()
    repaired = False
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:
            with open(file, "r+b") as fh:
                fh.truncate(cut)
            data, repaired = data[:cut], True
        else:
            with open(file, "ab") as fh:  # a complete record without its newline
                fh.write(b"\n")
    keys: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            keys.add(str(record["key"]))
        except (ValueError, KeyError, TypeError):
            raise OutputError(
                f"{file}:{number}: not a memguard score record; choose another output or --restart"
            ) from None
    return keys, repaired


def score_record(row: DataRow, score: Score, *, t: float = COVERAGE_T) -> dict[str, Any]:
    """One output line: the row's identity and label, P(HARMFUL), its band, token counts."""
    record: dict[str, Any] = {"key": row.key, "line": row.line}
    if row.label is not None:
        record["label"] = row.label
    record.update(
        p_harmful=score.p_harmful,
        band=band(score.p_harmful, t),
        n_tokens=score.n_tokens,
        n_truncated=score.n_truncated,
    )
    for name in ("step", "perturbation", "trajectory_id"):
        value = getattr(row, name)
        if value is not None:
            record[name] = value
    return record


def _batches(rows: Sequence[DataRow], size: int) -> Iterable[Sequence[DataRow]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def score_rows(
    rows: Sequence[DataRow],
    scorer: Scorer,
    *,
    batch_size: int = 8,
    on_batch: Callable[[Sequence[DataRow], list[Score]], None] | None = None,
) -> list[Score]:
    """Scores for `rows` (each must have a prompt), batch by batch.

    Raises:
        NonFiniteScoreError: A score is NaN, infinite or outside [0, 1] (before `on_batch`
            sees its batch: a score file never holds one).
    """
    scores: list[Score] = []
    for batch in _batches(rows, max(1, batch_size)):
        prompts = [row.prompt for row in batch]
        if any(p is None for p in prompts):
            raise ValueError("every row to score needs a prompt")
        result = list(scorer.score(prompts))  # type: ignore[arg-type]
        if len(result) != len(batch):
            raise RuntimeError(f"the scorer returned {len(result)} scores for {len(batch)} prompts")
        for row, score in zip(batch, result, strict=True):
            if not (math.isfinite(score.p_harmful) and 0.0 <= score.p_harmful <= 1.0):
                raise NonFiniteScoreError(
                    f"line {row.line}: the scorer gave P(HARMFUL) = {score.p_harmful!r}, not a probability; "
                    "nothing of this batch is written"
                )
        scores.extend(result)
        if on_batch is not None:
            on_batch(batch, result)
    return scores


def score_to_file(
    rows: Sequence[DataRow],
    scorer: Scorer,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    t: float = COVERAGE_T,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Append a record per row to `out`, flushing after every batch; returns rows written."""
    written = 0
    with open(out, "a", encoding="utf-8") as fh:

        def write(batch: Sequence[DataRow], scores: list[Score]) -> None:
            nonlocal written
            for row, score in zip(batch, scores, strict=True):
                fh.write(safe_text(json.dumps(score_record(row, score, t=t), ensure_ascii=False)) + "\n")
            fh.flush()
            written += len(batch)
            if on_batch is not None:
                on_batch(len(batch))

        score_rows(rows, scorer, batch_size=batch_size, on_batch=write)
    return written
