"""§8 metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from memguard.metrics import (
    SWEEP_THRESHOLDS,
    band,
    bootstrap_auroc_ci,
    coverage_at,
    evaluate,
    expected_calibration_error,
    sweep_thresholds,
)


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced like the training data (~88% HARMFUL), informative but imperfect scores."""
    rng = np.random.default_rng(seed)
    harmful = rng.random(n) < 0.88
    logits = np.where(harmful, 2.0, -2.0) + rng.normal(0, 1.6, n)
    return 1 / (1 + np.exp(-logits)), harmful


def test_auroc_and_class_scores_match_sklearn():
    p, y = synthetic()
    m = evaluate(p, y, bootstrap=50)
    assert m.auroc == pytest.approx(roc_auc_score(y, p))
    pred = p > 0.5
    assert m.harmful.precision == pytest.approx(precision_score(y, pred))
    assert m.harmful.recall == pytest.approx(recall_score(y, pred))
    assert m.harmful.f1 == pytest.approx(f1_score(y, pred))
    assert m.safe.f1 == pytest.approx(f1_score(~y, ~pred))
    assert m.safe.precision == pytest.approx(precision_score(~y, ~pred))
    assert m.accuracy == pytest.approx((pred == y).mean())
    c = m.confusion
    assert (c.true_harmful, c.missed_harmful) == ((pred & y).sum(), (~pred & y).sum())
    assert (c.false_harmful, c.true_safe) == ((pred & ~y).sum(), (~pred & ~y).sum())
    assert m.n_harmful + m.n_safe == m.n == 400


def test_hand_computed_small_case():
    # pairs (harmful, safe): (.9,.8) ok, (.9,.1) ok, (.3,.8) wrong, (.3,.1) ok -> 3/4
    m = evaluate([0.9, 0.8, 0.3, 0.1], [True, False, True, False], bootstrap=0)
    assert m.auroc == 0.75
    assert m.accuracy == 0.5
    assert (m.harmful.precision, m.harmful.recall, m.safe.f1) == (0.5, 0.5, 0.5)
    # n < 15: one row per bin -> mean |correct - confidence|: .9 right, .8 wrong, .7 wrong, .9 right
    assert m.ece == pytest.approx((0.1 + 0.8 + 0.7 + 0.1) / 4)
    assert m.coverage.n_covered == 2 and m.coverage.accuracy == 1.0


def test_the_cut_is_the_guards_commit_rule():
    """SAFE iff P(HARMFUL) < 0.5, as the guard commits: an exact tie counts HARMFUL (MemGym: SAFE)."""
    m = evaluate([0.4999999, 0.5], [False, True], bootstrap=0)
    assert m.accuracy == 1.0
    assert m.confusion.true_safe == 1 and m.confusion.true_harmful == 1


def test_ties_in_auroc_count_half():
    assert evaluate([0.5, 0.5], [True, False], bootstrap=0).auroc == 0.5


def test_one_class_gives_none_with_a_note_not_a_crash():
    m = evaluate([0.9, 0.7, 0.2], [True, True, True])
    assert m.auroc is None and m.auroc_ci is None
    assert any("AUROC is undefined" in note for note in m.notes)
    assert m.safe.support == 0 and m.safe.f1 == 0.0
    assert m.harmful.recall == pytest.approx(2 / 3)


def test_empty_input():
    m = evaluate([], [])
    assert m.n == 0 and m.auroc is None and m.ece is None and m.accuracy is None


def test_rejects_bad_probabilities_and_lengths():
    with pytest.raises(ValueError, match="probability"):
        evaluate([1.2], [True])
    with pytest.raises(ValueError, match="labels"):
        evaluate([0.2, 0.3], [True])


def test_ece_last_bin_takes_the_remainder():
    # n = 17 -> bin size 1: bins 0..13 hold one row each, bin 14 holds the last 3 rows.
    p = [0.4] * 14 + [0.05, 0.96, 0.97]  # confidences 0.6 x14, then .95, .96, .97
    y = [False] * 14 + [False, False, True]  # correct x14, then correct, wrong, correct
    expected = (14 * 0.4 + 3 * abs(2 / 3 - 0.96)) / 17
    assert expected_calibration_error(p, y) == pytest.approx(expected)


def test_ece_equal_mass_bins_on_larger_data():
    p, y = synthetic(n=47, seed=3)
    conf = np.maximum(p, 1 - p)
    correct = (p > 0.5) == y
    order = np.argsort(conf, kind="stable")
    bins = [order[k * 3:(k + 1) * 3] for k in range(14)] + [order[42:]]  # 47 // 15 = 3
    expected = sum(len(b) / 47 * abs(correct[b].mean() - conf[b].mean()) for b in bins)
    assert expected_calibration_error(p, y) == pytest.approx(expected)


def test_perfectly_calibrated_confident_model_has_zero_ece():
    assert expected_calibration_error([1.0, 0.0, 1.0, 0.0] * 10, [True, False] * 20) == 0.0


def test_bootstrap_is_seeded_and_brackets_the_auroc():
    p, y = synthetic(n=200)
    ci, used = bootstrap_auroc_ci(p, y)
    assert used == 1000
    assert bootstrap_auroc_ci(p, y, resamples=100) == bootstrap_auroc_ci(p, y, resamples=100)
    assert bootstrap_auroc_ci(p, y, resamples=100) != bootstrap_auroc_ci(p, y, resamples=100, seed=7)
    assert ci[0] < roc_auc_score(y, p) < ci[1]


def test_bootstrap_skips_one_class_resamples():
    ci, used = bootstrap_auroc_ci([0.9, 0.1, 0.8], [True, False, True], resamples=200)
    assert 0 < used < 200 and ci is not None


def test_coverage_band():
    assert band(0.12) == "safe"  # P(SAFE) = 0.88 >= t
    assert band(0.88) == "harmful"  # P(SAFE) = 0.12 <= 1 - t
    assert band(0.5) == "uncertain"
    cov = coverage_at([0.05, 0.5, 0.95, 0.6], [False, True, False, True])
    assert cov.n_covered == 2 and cov.coverage == 0.5
    assert cov.accuracy == 0.5  # 0.05 -> SAFE right, 0.95 -> HARMFUL wrong
    assert coverage_at([0.5], [True]).accuracy is None


def test_sweep_matches_sklearn_at_every_threshold():
    p, y = synthetic(n=300, seed=1)
    sweep = sweep_thresholds(p, y)
    assert [pt.t for pt in sweep.points] == list(SWEEP_THRESHOLDS)
    assert SWEEP_THRESHOLDS[0] == 0.05 and SWEEP_THRESHOLDS[-1] == 0.95 and len(SWEEP_THRESHOLDS) == 91
    for pt in sweep.points[::10]:
        safe_pred = (1 - p) >= pt.t
        assert pt.safe_f1 == pytest.approx(f1_score(~y, safe_pred))
        assert pt.harmful_f1 == pytest.approx(f1_score(y, ~safe_pred))
    feasible = [pt for pt in sweep.points if pt.harmful_f1 >= 0.90]
    assert sweep.best is not None and sweep.best.feasible
    assert sweep.best.safe_f1 == max(pt.safe_f1 for pt in feasible)
    assert sweep.best.p_harmful_threshold == pytest.approx(1 - sweep.best.t)


def test_every_sweep_point_decides_like_a_guard_with_its_threshold():
    """The sweep and the guard agree at the boundary: P(HARMFUL) == threshold is HARMFUL for both."""
    from sklearn.metrics import precision_score, recall_score

    from memguard.settings import GuardSettings

    p = [round(k / 100, 2) for k in range(101)]  # every threshold value is itself a score
    y = np.array([k % 3 == 0 for k in range(101)])  # labels that do not follow the scores
    for point in sweep_thresholds(p, y, constraint=None).points:
        guard = GuardSettings(threshold=point.threshold)
        commits = np.array([guard.acceptable(v) for v in p])  # what the guard would commit
        assert point.safe_recall == pytest.approx(recall_score(~y, commits, zero_division=0))
        assert point.safe_precision == pytest.approx(precision_score(~y, commits, zero_division=0))
        assert not guard.acceptable(point.threshold)


def test_sweep_hand_computed_and_configurable():
    # P(HARMFUL) = .1, .4, .6, .8 for SAFE, SAFE, HARMFUL, HARMFUL: SAFE iff P(HARMFUL) < threshold is
    # perfect for any threshold in (.4, .6], i.e. t = 1 - threshold in [.40, .59].
    p = [0.1, 0.4, 0.6, 0.8]
    y = [False, False, True, True]
    sweep = sweep_thresholds(p, y)
    assert sweep.best.t == 0.40 and sweep.best.threshold == 0.60 and sweep.best.safe_f1 == 1.0  # lowest t wins
    # constraint that nothing meets -> None with a note
    strict = sweep_thresholds(p, [True, False, True, False], constraint_min=0.99)
    assert strict.best is None and strict.notes
    free = sweep_thresholds(p, y, objective="safe_recall", constraint=None)
    assert free.best.t == 0.05 and free.best.safe_recall == 1.0 and free.constraint_min is None
    with pytest.raises(ValueError, match="unknown sweep metric"):
        sweep_thresholds(p, y, objective="nope")
