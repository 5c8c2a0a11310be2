"""Health counters: what an operator reads to see a failing scorer without reading logs.

`Guard.stats()` returns `GuardStats.snapshot()`: reviews by verdict, decisions published without
a review (`skipped`, with `cooldown_skips`, `compaction_failures`, `audit_dropped`, `audit_failed`
naming why), errors (by the `on_error` policy that handled them), timeouts, stalled scorer calls,
and latency percentiles over the most recent reviews. Every counter counts exactly what its name
says. Thread-safe; the OpenTelemetry sink exports the same figures.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

from memguard.events import Decision

__all__ = ["LATENCY_WINDOW", "GuardStats"]

LATENCY_WINDOW = 2048  # reviews whose latency the percentiles are computed over


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class GuardStats:
    """Counters one guard keeps for its lifetime (and a window of recent latencies)."""

    COUNTERS = ("reviews", "commit", "fallback", "veto", "forced", "audit", "skipped", "errors", "errors_open",
                "errors_closed", "timeouts", "cooldown_skips", "rails_rejected", "scorer_calls",
                "scored_prompts", "probe_calls", "audit_submitted", "audit_completed", "audit_dropped",
                "audit_failed", "compaction_failures")

    def __init__(self, on_error: str = "open") -> None:
        self._on_error = on_error
        self._counts: Counter[str] = Counter()
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._lock = threading.Lock()
        self._stalled = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def stall_started(self) -> None:
        """A scorer call timed out but its thread still runs (and holds the model)."""
        with self._lock:
            self._stalled += 1

    def stall_ended(self) -> None:
        with self._lock:
            self._stalled -= 1

    @property
    def stalled(self) -> int:
        with self._lock:
            return self._stalled

    def record(self, decision: Decision) -> None:
        """Count one decision the guard published.

        Verdict counters (`commit`, `fallback`, `veto`, `forced`, `audit`) and `reviews` count
        reviews; a decision published without one (a cooldown skip, a failed compaction, an audit
        job dropped or failed) counts in `skipped` only, beside its own counter.
        """
        with self._lock:
            if not decision.reviewed:
                self._counts["skipped"] += 1
            elif not decision.pending:
                self._counts[decision.verdict.value] += 1
                self._counts["reviews"] += 1
                self._latency.append(decision.timings.total)
            if decision.error is not None and decision.reviewed:
                self._counts["errors"] += 1
                if decision.mode == "enforce":
                    self._counts[f"errors_{self._on_error}"] += 1
            self._counts["rails_rejected"] += sum(1 for c in decision.candidates if c.rejected)

    def snapshot(self) -> dict[str, Any]:
        """A plain mapping: every counter, `stalled_scorer_calls`, and latency percentiles in ms."""
        with self._lock:
            counts: dict[str, Any] = {name: self._counts.get(name, 0) for name in self.COUNTERS}
            latencies = sorted(self._latency)
            stalled = self._stalled
        counts["stalled_scorer_calls"] = stalled
        for q in (50, 90, 99):
            counts[f"latency_p{q}_ms"] = round(_percentile(latencies, q) * 1000.0, 3)
        counts["latency_max_ms"] = round((latencies[-1] if latencies else 0.0) * 1000.0, 3)
        return counts
