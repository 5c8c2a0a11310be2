"""A self-contained HTML report of an audit log (one guard Decision per JSONL line).

The Decision schema may grow, and old logs must still render, so every field is read
defensively: a missing or odd field counts as unknown instead of failing the report. Plots are
drawn with matplotlib's object API (no pyplot global state) and embedded as base64 PNGs, so the
report is one file that can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from memguard.datasets import BadRow, OnBadLine, iter_jsonl
from memguard.text import safe_text

__all__ = [
    "VERDICTS",
    "AuditDecision",
    "AuditSummary",
    "Percentiles",
    "read_audit",
    "render_html",
    "summarize",
]

VERDICTS = ("commit", "fallback", "veto", "forced", "audit", "error")
VERDICT_COLORS = {
    "commit": "#2e7d32",
    "fallback": "#ef6c00",
    "veto": "#c62828",
    "forced": "#6a1b9a",
    "audit": "#1565c0",
    "error": "#616161",
}
TIMING_PARTS = ("probe", "render", "score", "total")
MAX_TIMELINES = 6


class AuditDecision(BaseModel):
    """The fields the report uses, read leniently from one audit line."""

    line: int
    verdict: str
    strategy: str | None = None
    chosen_strategy: str | None = None
    step: int | None = None
    conversation_id: str
    p_harmful: float | None = Field(description="P(HARMFUL) of the proposed compaction.")
    reasons: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    mode: str | None = None
    timestamp: str | None = None
    error: str | None = Field(default=None, description="Scorer or probe failure, if any.")


class Percentiles(BaseModel):
    n: int
    p50: float
    p90: float
    p99: float
    max: float


class AuditSummary(BaseModel):
    """The numbers in the report."""

    n_decisions: int
    n_bad_lines: int = 0
    n_conversations: int
    verdicts: dict[str, int]
    modes: dict[str, int]
    fallback_strategies: dict[str, int]
    latency_seconds: dict[str, Percentiles]
    top_reasons: list[tuple[str, int]]
    mean_p_harmful: dict[str, float]
    n_unscored: int
    n_errors: int = 0
    errors: list[tuple[str, int]] = Field(default_factory=list)
    first_timestamp: str | None = None
    last_timestamp: str | None = None

    @property
    def vetoes(self) -> int:
        return self.verdicts.get("veto", 0)

    @property
    def fallbacks(self) -> int:
        return self.verdicts.get("fallback", 0)


# --------------------------------------------------------------------------- reading


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # e.g. {"name": "observation_masking", ...}
        value = value.get("name") or value.get("strategy")
    return None if value is None else str(value)


def _timestamp(value: Any) -> str | None:
    """ISO 8601 (UTC) for epoch seconds, as the guard writes them; other text as it is."""
    seconds = _number(value)
    if seconds is not None:
        try:
            return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            return None
    return _text(value)


def _proposed_score(obj: Mapping[str, Any], candidates: list[Any]) -> float | None:
    direct = _number(obj.get("p_harmful"))
    if direct is not None:
        return direct
    for candidate in candidates:  # the proposed compaction comes first
        if isinstance(candidate, Mapping):
            value = _number(candidate.get("p_harmful"))
            if value is not None:
                return value
    return None


def _chosen(obj: Mapping[str, Any], candidates: list[Any]) -> str | None:
    if "proposed_strategy" in obj:  # the guard's Decision: `strategy` is the winning one
        return _text(obj.get("strategy"))
    for key in ("chosen_strategy", "chosen", "final_strategy"):
        if obj.get(key) is not None:
            return _text(obj[key])
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("chosen") is True:
            return _text(candidate.get("strategy"))
    return None


def decision_from_json(obj: Mapping[str, Any], line: int) -> AuditDecision:
    """An `AuditDecision` from any dict: unknown or malformed fields become "unknown"/None."""
    candidates = obj.get("candidates")
    candidates = candidates if isinstance(candidates, list) else []
    timings = obj.get("timings")
    timings = timings if isinstance(timings, Mapping) else {}
    reasons = obj.get("reasons")
    reasons = reasons if isinstance(reasons, list) else ([reasons] if isinstance(reasons, str) else [])
    step = obj.get("step")
    verdict = obj.get("verdict")
    conversation = obj.get("conversation_id")
    return AuditDecision(
        line=line,
        verdict=str(verdict).lower() if isinstance(verdict, str) and verdict else "unknown",
        strategy=_text(obj.get("proposed_strategy", obj.get("strategy"))),
        chosen_strategy=_chosen(obj, candidates),
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        conversation_id=str(conversation) if conversation not in (None, "") else "(none)",
        p_harmful=_proposed_score(obj, candidates),
        reasons=[str(r) for r in reasons if r not in (None, "")],
        timings={k: v for k, v in ((str(k), _number(v)) for k, v in timings.items()) if v is not None},
        mode=_text(obj.get("mode")),
        timestamp=_timestamp(obj.get("timestamp")),
        error=_text(obj.get("error")) or None,
    )


def read_audit(
    path: str | os.PathLike[str],
    *,
    on_bad_line: OnBadLine = "stop",
    on_skip: Callable[[BadRow], None] | None = None,
) -> list[AuditDecision]:
    """Every decision in an audit JSONL file, in file order."""
    return [
        decision_from_json(obj, number)
        for number, obj, _ in iter_jsonl(path, on_bad_line=on_bad_line, on_skip=on_skip)
    ]


# --------------------------------------------------------------------------- numbers


def _percentiles(values: Sequence[float]) -> Percentiles:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Percentiles(n=len(values), p50=p50, p90=p90, p99=p99, max=max(values))


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?")


def _reason_kind(reason: str) -> str:
    """A reason with its numbers replaced by "#", so reasons that differ only in a score count
    together ("P(HARMFUL)=0.91" and "P(HARMFUL)=0.87" are the same kind of reason)."""
    return _NUMBER.sub("#", reason)


def summarize(decisions: Sequence[AuditDecision], *, n_bad_lines: int = 0, top: int = 10) -> AuditSummary:
    """Counts, latency percentiles and top reasons of a list of decisions."""
    verdicts = Counter(d.verdict for d in decisions)
    fallback_strategies = Counter(
        d.chosen_strategy or "(unrecorded)" for d in decisions if d.verdict == "fallback"
    )
    latency: dict[str, Percentiles] = {}
    parts = list(TIMING_PARTS) + sorted({k for d in decisions for k in d.timings} - set(TIMING_PARTS))
    for part in parts:
        values = [d.timings[part] for d in decisions if part in d.timings]
        if values:
            latency[part] = _percentiles(values)
    by_verdict: dict[str, list[float]] = defaultdict(list)
    for d in decisions:
        if d.p_harmful is not None:
            by_verdict[d.verdict].append(d.p_harmful)
    stamps = sorted(d.timestamp for d in decisions if d.timestamp)
    return AuditSummary(
        n_decisions=len(decisions),
        n_bad_lines=n_bad_lines,
        n_conversations=len({d.conversation_id for d in decisions}),
        verdicts=dict(verdicts.most_common()),
        modes=dict(Counter(d.mode or "(unrecorded)" for d in decisions).most_common()),
        fallback_strategies=dict(fallback_strategies.most_common()),
        latency_seconds=latency,
        top_reasons=Counter(_reason_kind(r) for d in decisions for r in d.reasons).most_common(top),
        mean_p_harmful={v: float(np.mean(ps)) for v, ps in by_verdict.items()},
        n_unscored=sum(d.p_harmful is None for d in decisions),
        n_errors=sum(d.error is not None or d.verdict == "error" for d in decisions),
        errors=Counter(d.error for d in decisions if d.error).most_common(top),
        first_timestamp=stamps[0] if stamps else None,
        last_timestamp=stamps[-1] if stamps else None,
    )


# --------------------------------------------------------------------------- plots


def _plain(text: str) -> str:
    """Untrusted text for a matplotlib label, shown as written: every "$" escaped, so no pair of
    them starts mathtext (an id like "cost $x^{$" would otherwise be parsed, and crash)."""
    return text.replace("$", r"\$")


def _color(verdict: str) -> str:
    return VERDICT_COLORS.get(verdict, "#9e9e9e")


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _ordered_verdicts(decisions: Sequence[AuditDecision]) -> list[str]:
    present = {d.verdict for d in decisions}
    return [v for v in VERDICTS if v in present] + sorted(present - set(VERDICTS))


def plot_score_histogram(decisions: Sequence[AuditDecision]) -> str:
    """P(HARMFUL) of the proposed compactions, stacked by verdict, with the 0.5 cut and band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    scored = [d for d in decisions if d.p_harmful is not None]
    verdicts = [v for v in _ordered_verdicts(decisions) if any(d.verdict == v for d in scored)]
    data = [[d.p_harmful for d in decisions if d.verdict == v and d.p_harmful is not None] for v in verdicts]
    if data:
        ax.hist(data, bins=[i / 20 for i in range(21)], stacked=True, label=[_plain(v) for v in verdicts],
                color=[_color(v) for v in verdicts], edgecolor="white")  # fmt: skip
        ax.legend(title="verdict", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scored decisions", ha="center", va="center", transform=ax.transAxes)
    from memguard.settings import COVERAGE_T, DEFAULT_THRESHOLD

    for x, style in ((1 - COVERAGE_T, ":"), (DEFAULT_THRESHOLD, "--"), (COVERAGE_T, ":")):
        ax.axvline(x, color="#424242", linestyle=style, linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(HARMFUL) of the proposed compaction")
    ax.set_ylabel("decisions")
    ax.set_title(f"Scores by verdict (dashed: {DEFAULT_THRESHOLD:g} cut; dotted: coverage band t = {COVERAGE_T:g})",
                 fontsize=9)
    return _png(fig)


def plot_timelines(decisions: Sequence[AuditDecision], limit: int = MAX_TIMELINES) -> tuple[str, list[str]]:
    """P(HARMFUL) along the steps of the busiest conversations, each point coloured by verdict."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    groups: dict[str, list[AuditDecision]] = defaultdict(list)
    for d in decisions:
        groups[d.conversation_id].append(d)
    shown = sorted(groups, key=lambda c: (-len(groups[c]), c))[:limit]
    fig = Figure(figsize=(7.5, 0.6 + 1.5 * max(1, len(shown))), layout="constrained")
    axes = fig.subplots(max(1, len(shown)), 1, squeeze=False)[:, 0]
    for ax, conversation in zip(axes, shown, strict=True):  # one empty axis when nothing is shown
        items = groups[conversation]
        xs = [d.step if d.step is not None else i for i, d in enumerate(items)]
        ys = [d.p_harmful if d.p_harmful is not None else np.nan for d in items]
        ax.plot(xs, ys, color="#bdbdbd", linewidth=1, zorder=1)
        ax.scatter(xs, ys, c=[_color(d.verdict) for d in items], s=28, zorder=2)
        ax.set_ylim(-0.05, 1.05)
        ax.axhline(0.5, color="#424242", linestyle="--", linewidth=0.6)
        ax.set_ylabel("P(HARMFUL)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        if xs and max(xs) - min(xs) < 2:  # one or two steps: widen so ticks stay on integers
            ax.set_xlim(min(xs) - 1, max(xs) + 1)
        ax.set_title(_plain(f"conversation {conversation} ({len(items)} decisions)"), fontsize=9, loc="left")
    if not shown:
        axes[0].text(0.5, 0.5, "no decisions", ha="center", va="center", transform=axes[0].transAxes)
    axes[-1].set_xlabel("agent step")
    handles = [axes[0].scatter([], [], c=_color(v), label=_plain(v)) for v in _ordered_verdicts(decisions)]
    if handles:
        fig.legend(handles=handles, loc="outside upper right", fontsize=8, ncols=len(handles))
    return _png(fig), shown


def plot_latency(summary: AuditSummary) -> str:
    """p50 / p90 / p99 of each timing component, in milliseconds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    parts = list(summary.latency_seconds)
    if parts:
        x = np.arange(len(parts))
        bars = (("p50", "#90caf9"), ("p90", "#42a5f5"), ("p99", "#0d47a1"))
        for offset, (name, color) in zip((-0.27, 0, 0.27), bars, strict=True):
            values = [getattr(summary.latency_seconds[p], name) * 1000 for p in parts]
            ax.bar(x + offset, values, width=0.27, label=name, color=color)
        ax.set_xticks(x, [_plain(p) for p in parts])
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no timings recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("milliseconds")
    ax.set_title("Latency per stage", fontsize=9)
    return _png(fig)


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;color:#212121;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e0e0e0}
.meta{color:#616161;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{border:1px solid #e0e0e0;border-radius:8px;padding:.6rem 1rem;min-width:7rem}
.card .n{font-size:1.5rem;font-weight:600} .card .l{color:#616161;font-size:.8rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border-bottom:1px solid #eeeeee;padding:.25rem .8rem;text-align:left} td.num,th.num{text-align:right}
img{max-width:100%} .dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;margin-right:.4rem}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool]) -> str:
    if not rows:
        return "<p class='meta'>none</p>"
    head = "".join(f"<th class='{'num' if n else ''}'>{_esc(h)}</th>" for h, n in zip(headers, numeric, strict=True))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'num' if n else ''}'>{cell}</td>" for cell, n in zip(row, numeric, strict=True))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def render_html(
    decisions: Sequence[AuditDecision], summary: AuditSummary, *, title: str = "memguard audit report"
) -> str:
    """The whole report as one HTML document (every field escaped, every string safe text)."""
    n = summary.n_decisions
    cards: list[tuple[str, int | str]] = [("decisions", n), ("conversations", summary.n_conversations)]
    cards += [(v, summary.verdicts.get(v, 0)) for v in ("commit", "fallback", "veto", "forced")]
    cards.append(("errors", summary.n_errors))
    if "total" in summary.latency_seconds:
        cards.append(("p50 total (ms)", f"{summary.latency_seconds['total'].p50 * 1000:.1f}"))
    card_html = "".join(
        f"<div class='card'><div class='n'>{_esc(v)}</div><div class='l'>{_esc(k)}</div></div>" for k, v in cards
    )
    verdict_rows = [
        (f"<span class='dot' style='background:{_color(v)}'></span>{_esc(v)}", c, _pct(c, n),
         f"{summary.mean_p_harmful[v]:.3f}" if v in summary.mean_p_harmful else "–")
        for v, c in summary.verdicts.items()
    ]  # fmt: skip
    latency_rows = [
        (_esc(part), p.n, f"{p.p50 * 1000:.1f}", f"{p.p90 * 1000:.1f}", f"{p.p99 * 1000:.1f}", f"{p.max * 1000:.1f}")
        for part, p in summary.latency_seconds.items()
    ]
    timeline_png, shown = plot_timelines(decisions)
    more = summary.n_conversations - len(shown)
    not_shown = f"; {more} more not shown." if more > 0 else "."
    timeline_note = f"<p class='meta'>The {len(shown)} busiest conversations{not_shown}</p>"
    span = ""
    if summary.first_timestamp:
        span = f" · {_esc(summary.first_timestamp)} → {_esc(summary.last_timestamp)}"
    notes = []
    if summary.n_bad_lines:
        notes.append(f"{summary.n_bad_lines} malformed lines skipped.")
    if summary.n_unscored:
        notes.append(f"{summary.n_unscored} decisions carry no P(HARMFUL) (skipped identical actions, errors).")
    fallback_rows = [(_esc(s), c) for s, c in summary.fallback_strategies.items()]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_esc(title)}</h1>
<div class="meta">{n} decisions · modes: {_esc(", ".join(f"{k} ({v})" for k, v in summary.modes.items()))}{span}</div>
{"".join(f"<p class='meta'>{_esc(t)}</p>" for t in notes)}
<div class="cards">{card_html}</div>
<h2>Verdicts</h2>
{_table(["verdict", "decisions", "share", "mean P(HARMFUL)"], verdict_rows, [False, True, True, True])}
<h2>P(HARMFUL) by verdict</h2>
<img alt="P(HARMFUL) histogram by verdict" src="data:image/png;base64,{plot_score_histogram(decisions)}">
<h2>Decisions along each conversation</h2>
{timeline_note}
<img alt="decisions along the steps of each conversation" src="data:image/png;base64,{timeline_png}">
<h2>Latency</h2>
{_table(["stage", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"], latency_rows, [False] + [True] * 5)}
<img alt="latency percentiles" src="data:image/png;base64,{plot_latency(summary)}">
<h2>Fallbacks and vetoes</h2>
<p>{summary.fallbacks} fallbacks ({_pct(summary.fallbacks, n)}), {summary.vetoes} vetoes ({_pct(summary.vetoes, n)}).
</p>
{_table(["fallback strategy chosen", "times"], fallback_rows, [False, True])}
<h2>Top reasons</h2>
{_table(["reason", "decisions"], [(_esc(r), c) for r, c in summary.top_reasons], [False, True])}
<h2>Errors</h2>
<p>{summary.n_errors} decisions hit a scorer or probe error ({_pct(summary.n_errors, n)}).</p>
{_table(["error", "decisions"], [(_esc(e), c) for e, c in summary.errors], [False, True]) if summary.errors else ""}
</body></html>
"""
    return safe_text(page)
