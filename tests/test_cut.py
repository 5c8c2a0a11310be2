"""The left-cut rule (memguard.scoring.cut): positions, the exact cut and the shared cut, on id lists."""

from __future__ import annotations

import random

import pytest

from memguard.scoring.cut import SHARED_CUT_SLACK, check_cut, common_prefix, cut_starts, prompt_budget
from memguard.settings import DEFAULT_MAX_LENGTH


def event(view: int, actions: list[int], seed: int = 0) -> list[list[int]]:
    """Candidates of one event: a shared view of `view` ids, then a tail of each length."""
    rng = random.Random(seed)
    shared = [rng.randrange(1000) for _ in range(view)]
    return [shared + [5000 + rng.randrange(1000) for _ in range(n)] for n in actions]


def test_the_label_has_a_position_of_its_own():
    # 32,768 positions (Qwen3-1.7B-Base's context, training's cut): 32,767 prompt tokens + the label
    assert prompt_budget(DEFAULT_MAX_LENGTH) == 32_767
    seqs = [[1] * 32_767, [1] * 32_768, [1] * 40_000]
    assert cut_starts(seqs, DEFAULT_MAX_LENGTH) == [0, 1, 40_000 - 32_767]


def test_exact_cuts_each_prompt_on_its_own():
    seqs = event(1000, [3, 10, 7])
    assert cut_starts(seqs, 901) == [103, 110, 107]
    assert cut_starts(seqs, 901, "exact", 64) == [103, 110, 107]  # the block is the shared cut's


def test_shared_cut_starts_every_candidate_where_the_longest_needs():
    seqs = event(1000, [3, 10, 7])
    starts = cut_starts(seqs, 901, "shared")
    assert starts == [110, 110, 110]
    kept = [ids[s:] for ids, s in zip(seqs, starts)]
    assert all(len(k) <= prompt_budget(901) for k in kept)
    assert common_prefix(kept[0], kept[1]) == 1000 - 110  # they share everything up to their actions
    assert cut_starts(seqs, 901, "shared", 64) == [128, 128, 128]  # rounded up to the block


def test_shared_cut_leaves_other_conversations_and_short_prompts_alone():
    seqs = event(1000, [3, 10, 7]) + event(950, [5], seed=1) + [[7] * 50]
    assert cut_starts(seqs, 901, "shared") == [110, 110, 110, 55, 0]
    # nothing to cut: nothing cut
    assert cut_starts(event(100, [3, 9]), 901, "shared") == [0, 0]


def test_a_candidate_that_fits_is_still_cut_with_its_event():
    seqs = event(895, [3, 10])  # 898 ids fit in 900, 905 do not
    assert cut_starts(seqs, 901, "exact") == [0, 5]
    assert cut_starts(seqs, 901, "shared") == [5, 5]


def test_shared_cut_never_costs_a_prompt_more_than_the_slack():
    seqs = event(2000, [1, SHARED_CUT_SLACK + 1])
    assert cut_starts(seqs, 1001, "shared") == cut_starts(seqs, 1001, "exact")  # too far apart to share
    seqs = event(2000, [1, SHARED_CUT_SLACK])
    assert len(set(cut_starts(seqs, 1001, "shared"))) == 1


def test_unrelated_prompts_that_fit_do_not_pull_an_event_apart():
    # short prompts of other conversations sort among the event's candidates; the event's own
    # candidate that fits is still cut with its siblings
    shared = list(range(995))
    view = [shared + [5000] * 3, shared + [5001] * 10, shared + [5002] * 12]  # 998 ids fit in 1000
    others = [[0, -1 - j] + [3000] * 40 for j in range(4)]  # they sort just before the event
    starts = cut_starts([*others, *view], 1001, "shared")
    assert starts[:4] == [0, 0, 0, 0] and starts[4:] == [7, 7, 7]


def test_shared_cut_stays_inside_what_prompts_share():
    # two prompts of one conversation at different steps: the later one needs a cut past
    # where they part, so each is cut exactly
    a = list(range(600))
    b = a[:300] + list(range(10_000, 11_000))
    assert cut_starts([a, b], 901, "shared") == cut_starts([a, b], 901, "exact") == [0, 400]


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_random_events_share_one_start_and_keep_their_ends(n):
    rng = random.Random(n)
    for trial in range(50):
        view = rng.randrange(50, 400)
        actions = [rng.randrange(1, 40) for _ in range(n)]
        max_length = rng.randrange(20, view + 40)
        seqs = event(view, actions, seed=trial)
        exact = cut_starts(seqs, max_length)
        shared = cut_starts(seqs, max_length, "shared")
        for ids, e, s in zip(seqs, exact, shared):
            assert len(ids) - s <= prompt_budget(max_length) and s >= e
            assert ids[s:] == ids[len(ids) - (len(ids) - s):]  # a suffix: the judgment turn stays
        if max(exact) and max(exact) <= view:
            assert len(set(shared)) == 1 and shared[0] == max(exact)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="cut must be one of"):
        check_cut("left", 1, 100)
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        check_cut("exact", 1, 1)
    with pytest.raises(ValueError, match="cut_block"):
        check_cut("shared", 60, 100)
    check_cut("shared", 1, 2)
    check_cut("shared", 49, 100)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    a = list(range(40_000))
    assert common_prefix(a, a[:31_337] + [-1]) == 31_337
