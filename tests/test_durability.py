"""Durability of the audit log: a writer killed with SIGKILL, and rotation under concurrent writers.

The writer subprocess reviews real events through a Guard with a `JSONLSink` and prints each
event id (flushed) only after the guard returned, i.e. after `emit` returned. Whatever instant
the kill lands, every reported decision must be in the file and every line but possibly the
last must be valid JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memguard import CompactionEvent, Guard, JSONLSink
from memguard.protocol import summary_message
from tests import figures
from tests.doubles import FactPolicy, KeyedScorer, swe_conversation

ROOT = Path(__file__).resolve().parents[1]
KILLS = 4

WRITER = textwrap.dedent(
    """
    import sys
    from memguard import CompactionEvent, Guard, JSONLSink
    from memguard.protocol import summary_message
    from tests.doubles import FactPolicy, KeyedScorer, swe_conversation

    path = sys.argv[1]
    before = swe_conversation(n_turns=40, fact="FACT-42")  # ~10 KB of text per line
    guard = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[JSONLSink(path, include_messages=True)], cooldown=0)
    i = 0
    while True:
        candidate = [*before[:2], summary_message(f"summary {i}"), *before[-4:]]
        decision = guard.review(CompactionEvent(before=before, candidate=candidate, event_id=f"ev-{i}"),
                                FactPolicy("FACT-42"))
        print(decision.event_id, flush=True)  # only after emit returned
        i += 1
    """
)


def read_lines(path: Path) -> tuple[list[dict], int]:
    """Parsed records and the number of unparseable lines, which may only be the last one."""
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    records, bad = [], []
    for index, line in enumerate(raw):
        try:
            records.append(json.loads(line))
        except ValueError:
            bad.append(index)
    assert all(i == len(raw) - 1 for i in bad), f"invalid JSON before the last line: {bad}"
    return records, len(bad)


@pytest.mark.parametrize("trial", range(KILLS))
def test_sigkill_mid_run_loses_no_reported_decision(tmp_path, trial):
    path = tmp_path / "audit.jsonl"
    rng = random.Random(trial)
    kill_after = rng.randint(3, 60)  # reported decisions before the kill: a different instant each trial
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    reported: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(reported) < kill_after and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(line.decode().strip())
        time.sleep(rng.random() * 0.01)  # land the kill anywhere in the next write
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    reported += out.decode().split()
    assert len(reported) >= kill_after, err.decode()[-2000:]

    records, torn = read_lines(path)
    written = {r["event_id"] for r in records}
    lost = [e for e in reported if e not in written]
    figures.count("durability: SIGKILLed writers")
    figures.count("durability: decisions reported before SIGKILL", len(reported))
    figures.count("durability: reported decisions lost", len(lost))
    figures.count("durability: torn last lines", torn)
    assert not lost
    assert all(r["verdict"] == "veto" and r["n_messages"] > 0 for r in records)


def test_rotation_under_concurrent_writers_loses_and_splits_nothing(tmp_path):
    threads, per_thread, max_bytes = 8, 150, 48_000
    path = tmp_path / "audit.jsonl"
    sink = JSONLSink(path, max_bytes=max_bytes, backups=500)
    guard = Guard(KeyedScorer({"ls -la": 0.97}), sinks=[sink], cooldown=0)
    before = swe_conversation(n_turns=8, fact="FACT-42")
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for k in range(per_thread):
                candidate = [*before[:2], summary_message(f"s{t}-{k}"), *before[-4:]]
                guard.review(CompactionEvent(before=before, candidate=candidate, event_id=f"t{t}-{k}"),
                             FactPolicy("FACT-42"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    guard.close()
    assert not errors

    files = sorted(tmp_path.iterdir())
    assert len(files) > 5  # it really rotated, several times
    ids: list[str] = []
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n")  # no line split across files
        assert len(data) <= max_bytes
        for line in data.split(b"\n")[:-1]:
            ids.append(json.loads(line)["event_id"])  # every line whole
    expected = {f"t{t}-{k}" for t in range(threads) for k in range(per_thread)}
    assert len(ids) == len(set(ids)) and set(ids) == expected
    figures.note("durability: rotation under concurrent writers",
                 f"{threads} threads x {per_thread} decisions over {len(files)} files: "
                 f"{len(expected - set(ids))} lost, 0 split, 0 duplicated")
