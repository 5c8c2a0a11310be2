"""Rows to score or evaluate, read from JSONL files.

Two row shapes are understood:

- MemGym pairs (protocol §9): `label` (0 HARMFUL, 1 SAFE) and/or `completion` (" Y"/" N"), and
  the prompt as `prompt` (full text ending in "\\n\\nAnswer:"), or `input` (the same without the
  suffix), or `messages` (the turns *including* the final judgment turn);
- memguard compaction events: `before` (the pre-compaction messages), `candidate` (the compacted
  messages, kept for reference only: the prompt shows the view before compaction), `recorded` and
  `proposed` (the next action under each context, as text or as an assistant message),
  `strategy` (or an explicit `perturbation`) and `step`.

Either shape may also carry `p_harmful` (a scored row, as `memguard score` writes) and `id`.
A row's `key` (what `memguard score` resumes by) is its `id` when no other row of the file has
the same one, else its line number and content hash: two rows sharing an id (data splits
concatenated) are never taken for one. A line that is not a JSON object, or a row that cannot
give a prompt, is a `BadRow` that names the file and line; callers choose to stop there or skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from memguard.protocol import (
    LABEL_HARMFUL,
    LABEL_SAFE,
    RESPONSE_PREFIX,
    perturbation_tag,
    render_action,
    render_prompt,
    render_turns,
)
from memguard.text import decode_line, safe_json

__all__ = [
    "HARMFUL",
    "SAFE",
    "BadRow",
    "DataRow",
    "duplicate_ids",
    "OnBadLine",
    "is_harmful_label",
    "iter_jsonl",
    "parse_row",
    "read_rows",
    "row_key",
]

HARMFUL = 0
SAFE = 1
OnBadLine = Literal["stop", "skip"]


class BadRow(ValueError):
    """A line that cannot be used, with where it is."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class DataRow(BaseModel):
    """One row, ready to score (`prompt`) and/or to evaluate (`p_harmful`, `label`)."""

    model_config = ConfigDict(frozen=True)

    key: str
    line: int
    id: str | None = None
    prompt: str | None = None
    label: int | None = None
    p_harmful: float | None = None
    step: int | None = None
    perturbation: str | None = None
    trajectory_id: str | None = None

    @property
    def is_harmful(self) -> bool | None:
        return is_harmful_label(self.label)


def is_harmful_label(label: int | None) -> bool | None:
    """MemGym's integer label as the positive-class flag (0 is HARMFUL)."""
    return None if label is None else label == HARMFUL


def _row_id(obj: Mapping[str, Any]) -> str | None:
    ident = obj.get("id")
    if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident):
        return str(ident)
    return None


def _content_key(line: int, raw: str) -> str:
    return f"line:{line}:{hashlib.sha256(raw.strip().encode('utf-8')).hexdigest()[:16]}"


def row_key(obj: Mapping[str, Any], line: int, raw: str) -> str:
    """A stable key for resuming: the row's own `id`, else its line number and content hash.

    `read_rows` falls back to the content key for rows whose id another row shares.
    """
    ident = _row_id(obj)
    return f"id:{ident}" if ident is not None else _content_key(line, raw)


def duplicate_ids(rows: list[DataRow]) -> dict[str, list[int]]:
    """Ids that more than one row carries, with their line numbers (file order)."""
    lines: dict[str, list[int]] = {}
    for row in rows:
        if row.id is not None:
            lines.setdefault(row.id, []).append(row.line)
    return {ident: found for ident, found in lines.items() if len(found) > 1}


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    on_bad_line: OnBadLine = "stop",
    on_skip: Callable[[BadRow], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(line number, object, raw line) for each non-blank line holding a JSON object.

    Every string in the object is safe text (`memguard.text`): lone surrogates, escaped or
    written raw, read back as U+FFFD. A bad line (not UTF-8, not JSON, not an object, nested too
    deeply) raises `BadRow` (``on_bad_line="stop"``) or is passed to `on_skip` and skipped.
    """
    with open(path, "rb") as fh:
        for number, data in enumerate(fh, start=1):
            if not data.strip():
                continue
            try:
                raw = decode_line(data)
                obj = _json_object(raw)
            except _LineProblem as problem:
                bad = BadRow(path, number, str(problem))
            except UnicodeDecodeError as err:
                bad = BadRow(path, number, f"not UTF-8 text (byte 0x{data[err.start]:02x} at column {err.start + 1})")
            else:
                yield number, obj, raw
                continue
            if on_bad_line == "stop":
                raise bad
            if on_skip is not None:
                on_skip(bad)


class _LineProblem(ValueError):
    """Why one decoded line is not a usable JSON object (becomes a `BadRow`)."""


def _json_object(raw: str) -> dict[str, Any]:
    """The line's JSON object with every string made safe (`safe_json`)."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise _LineProblem(f"not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise _LineProblem("JSON nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise _LineProblem(f"expected a JSON object, got {type(obj).__name__}")
    clean: dict[str, Any] = safe_json(obj)  # "\\ud800" escapes decode to lone surrogates
    return clean


# --------------------------------------------------------------------------- fields


def _label(obj: Mapping[str, Any]) -> int | None:
    label = obj.get("label")
    if label is not None:
        if isinstance(label, bool) or label not in (HARMFUL, SAFE):
            raise ValueError(f"label must be 0 (HARMFUL) or 1 (SAFE), got {label!r}")
        label = int(label)
    completion: Any = obj.get("completion")
    from_completion = {LABEL_SAFE: SAFE, LABEL_HARMFUL: HARMFUL}.get(completion)
    if completion is not None and from_completion is None:
        raise ValueError(f"completion must be {LABEL_SAFE!r} or {LABEL_HARMFUL!r}, got {completion!r}")
    if label is not None and from_completion is not None and label != from_completion:
        raise ValueError(f"label {label} disagrees with completion {completion!r}")
    return label if label is not None else from_completion


def _probability(obj: Mapping[str, Any]) -> float | None:
    value = obj.get("p_harmful")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"p_harmful must be a number in [0, 1], got {value!r}")
    return float(value)


def _step(obj: Mapping[str, Any]) -> int | None:
    step = obj.get("step")
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int):
        if isinstance(step, str) and step.strip().lstrip("-").isdigit():
            return int(step)
        raise ValueError(f"step must be an integer, got {step!r}")
    return step


def _messages(obj: Mapping[str, Any], name: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of messages, got {type(value).__name__}")
    return value


def _event_prompt(obj: Mapping[str, Any], step: int | None) -> str:
    before = _messages(obj, "before")
    if step is None:
        raise ValueError("an event row needs `step` (the agent step the actions belong to)")
    for name in ("recorded", "proposed"):
        if name not in obj:
            raise ValueError(f"an event row needs `{name}` (the next action, text or message)")
    perturbation = obj.get("perturbation")
    if perturbation is None:
        strategy = obj.get("strategy")
        if not isinstance(strategy, str) or not strategy:
            raise ValueError("an event row needs `strategy` (or an explicit `perturbation`)")
        perturbation = perturbation_tag(strategy)
    return render_prompt(
        before,
        step=step,
        recorded=render_action(obj["recorded"]),
        proposed=render_action(obj["proposed"]),
        perturbation=perturbation,
    )


def _prompt(obj: Mapping[str, Any], step: int | None) -> str | None:
    """The MemRM prompt of a row, from the first source it has (see module docstring)."""
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt.endswith(RESPONSE_PREFIX):
            raise ValueError(r"prompt must be a string ending in '\n\nAnswer:'")
        return prompt
    if "input" in obj:
        text = obj["input"]
        if not isinstance(text, str):
            raise ValueError("input must be a string")
        # `input` is the prompt without its suffix; tolerate one that already has it.
        return text if text.endswith(RESPONSE_PREFIX) else text + RESPONSE_PREFIX
    if "messages" in obj:
        # MemGym's `messages` already end with the judgment turn: render them as they are.
        return render_turns(_messages(obj, "messages")) + RESPONSE_PREFIX
    if "before" in obj:
        return _event_prompt(obj, step)
    return None


def parse_row(
    obj: Mapping[str, Any], *, line: int, raw: str, path: str = "<row>", need_prompt: bool = True
) -> DataRow:
    """A `DataRow` from one decoded line; `BadRow` when it cannot be used.

    With ``need_prompt=False`` a row that already has `p_harmful` needs no prompt source.
    """
    try:
        step = _step(obj)
        p_harmful = _probability(obj)
        prompt = _prompt(obj, step)
        if prompt is None and (need_prompt or p_harmful is None):
            raise ValueError(
                "no prompt source: expected `prompt`, `input`, `messages` (MemGym pairs) "
                "or `before` + `recorded` + `proposed` (memguard events)"
            )
        label = _label(obj)
    except (ValueError, TypeError) as err:
        raise BadRow(path, line, str(err)) from None
    except RecursionError:  # messages nested deeper than rendering can walk
        raise BadRow(path, line, "a field is nested too deeply to render") from None
    perturbation = obj.get("perturbation")
    if perturbation is None and isinstance(obj.get("strategy"), str):
        perturbation = perturbation_tag(obj["strategy"])
    trajectory = obj.get("trajectory_id", obj.get("conversation_id"))
    return DataRow(
        key=row_key(obj, line, raw),
        line=line,
        id=_row_id(obj),
        prompt=prompt,
        label=label,
        p_harmful=p_harmful,
        step=step,
        perturbation=None if perturbation is None else str(perturbation),
        trajectory_id=None if trajectory is None else str(trajectory),
    )


def read_rows(
    path: str | os.PathLike[str],
    *,
    on_bad_line: OnBadLine = "stop",
    on_skip: Callable[[BadRow], None] | None = None,
    need_prompt: bool = True,
) -> list[DataRow]:
    """Every usable row of a JSONL file, in file order (see `iter_jsonl` for bad lines).

    Rows whose `id` another row shares are keyed by line and content instead (`duplicate_ids`
    tells which), so every row keeps its own key.
    """
    rows = []
    raws: dict[int, str] = {}
    for number, obj, raw in iter_jsonl(path, on_bad_line=on_bad_line, on_skip=on_skip):
        try:
            rows.append(parse_row(obj, line=number, raw=raw, path=str(Path(path)), need_prompt=need_prompt))
            raws[number] = raw
        except BadRow as problem:
            if on_bad_line == "stop":
                raise
            if on_skip is not None:
                on_skip(problem)
    shared = duplicate_ids(rows)
    if shared:
        rows = [row.model_copy(update={"key": _content_key(row.line, raws[row.line])}) if row.id in shared else row
                for row in rows]
    return rows
