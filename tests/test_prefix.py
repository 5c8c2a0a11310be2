"""Shared-prefix scoring equals whole-prompt scoring (tiny model, real Qwen tokenizer, real trajectories)."""

from __future__ import annotations

import pytest
import torch

from memguard import MemRM
from memguard.protocol import perturbation_tag, render_action, render_prompt
from memguard.scoring.batching import length_batches
from memguard.scoring.prefix import PrefixStore, common_prefix_len, plan_prefix_groups
from tests.trajdata import load, trajectory_paths

TOL = 1e-5
STRATEGIES = ("observation_masking", "recent_window", "keep_more")


def event_prompts(messages: list[dict], upto: int, proposals: list[str]) -> list[str]:
    """One compaction event: the view before assistant turn `upto`, k proposed actions."""
    recorded = render_action(messages[upto])
    return [
        render_prompt(messages[:upto], step=upto, recorded=recorded, proposed=p,
                      perturbation=perturbation_tag(s))
        for p, s in zip(proposals, STRATEGIES)
    ]


@pytest.fixture(scope="module")
def trajectory(qwen_tokenizer):
    """A real SWE-agent trajectory with 6 assistant turns in its first ~2K tokens (fast tests)."""
    from memguard.protocol import render_turns

    for path in trajectory_paths():
        messages = load(path)
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(turns) >= 6 and len(qwen_tokenizer.encode(render_turns(messages[: turns[5]]))) <= 2200:
            return messages, turns
    pytest.skip("no short trajectory with 6 assistant turns")


@pytest.fixture(scope="module")
def events(trajectory):
    """Two successive events of one conversation, the second view extending the first."""
    messages, turns = trajectory
    proposals = [render_action(messages[t]) for t in turns[:3]]
    # Byte-level BPE stress: proposals that extend one another ("ls" / "ls -la" / "lsof").
    tricky = ["ls", "ls -la", "lsof -i"]
    return [event_prompts(messages, turns[3], proposals), event_prompts(messages, turns[5], tricky)]


@pytest.fixture(scope="module")
def whole_rm(qwen_rm):
    """The same weights, scored one whole prompt per forward (no sharing, no store)."""
    return MemRM.from_model(qwen_rm.model, qwen_rm.tokenizer, prefix_cache_bytes=0,
                            min_shared_prefix=10**9)


def fresh_rm(qwen_rm, **options) -> MemRM:
    return MemRM.from_model(qwen_rm.model, qwen_rm.tokenizer, **options)


def embeddings(model):
    """The token embedding every path (whole forward, cached prefix, layer-streamed) reads ids through."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return lm.model.embed_tokens


class TokenCounter:
    """Counts the ids the model embeds, to prove the prefix is run once."""

    def __init__(self, model):
        self.tokens = 0
        self._handle = embeddings(model).register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.tokens += int(args[0].numel())

    def remove(self):
        self._handle.remove()


@pytest.mark.parametrize("mode", ["cache", "stream"])
def test_shared_prefix_equals_whole_prompts(qwen_rm, whole_rm, events, mode):
    rm = fresh_rm(qwen_rm, prefix_cache_bytes=0, prefix_mode=mode)
    for prompts in events:
        expected = whole_rm.score(prompts)
        counter = TokenCounter(rm.model)
        try:
            got = rm.score(prompts)
        finally:
            counter.remove()
        total = sum(s.n_tokens for s in got)
        assert [s.n_tokens for s in got] == [s.n_tokens for s in expected]
        delta = max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, expected))
        print(f"\n{mode}: max|dp| = {delta:.2e} over {len(got)} candidates of {got[0].n_tokens} tokens")
        assert delta < TOL
        # one run of the shared part + short passes: well under the sum of the prompts
        assert 0 < counter.tokens < 0.5 * total, (counter.tokens, total)
    assert len({s.p_harmful for s in got}) == len(got)  # the candidates really differ


def test_prefix_ids_equal_whole_prompt_ids(qwen_rm, events):
    """The split is taken on ids of whole prompts, so prefix + suffix ids are the prompt's ids."""
    for prompts in events:
        seqs = [ids for ids, _ in qwen_rm.fit_prompts(prompts)]
        (group,) = plan_prefix_groups(seqs, 64)
        prefix = seqs[0][: group.prefix_len]
        for seq in seqs:
            assert seq[: group.prefix_len] == prefix and len(seq) > group.prefix_len
        # and the shared text's own tokenization would have been wrong at the boundary for some
        text_cut = len(_common_text_prefix(prompts))
        own = qwen_rm.encode(prompts[0][:text_cut])
        assert own[: group.prefix_len] == prefix[: len(own)] or len(own) != group.prefix_len


def _common_text_prefix(texts: list[str]) -> str:
    first = texts[0]
    n = min(len(t) for t in texts)
    i = 0
    while i < n and all(t[i] == first[i] for t in texts):
        i += 1
    return first[:i]


@pytest.mark.parametrize("mode", ["cache", "stream"])
def test_left_truncation_matches_whole(qwen_rm, whole_rm, events, mode):
    prompts = events[0]
    limit = min(whole_rm.count_tokens(p) for p in prompts) - 40
    cut_whole = MemRM.from_model(qwen_rm.model, qwen_rm.tokenizer, max_length=limit,
                                 prefix_cache_bytes=0, min_shared_prefix=10**9)
    cut_fast = fresh_rm(qwen_rm, max_length=limit, prefix_mode=mode)
    # equal-length proposals keep the same cut, so they still share a prefix after cutting
    same_len = [prompts[0], prompts[0].replace("observation_masking", "observation_maskinG")]
    for batch in (prompts, same_len):
        expected, got = cut_whole.score(batch), cut_fast.score(batch)
        assert all(s.n_truncated > 0 for s in got)
        assert [(s.n_tokens, s.n_truncated) for s in got] == [(s.n_tokens, s.n_truncated) for s in expected]
        assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, expected)) < TOL


def test_store_reuses_prefix_across_events(qwen_rm, whole_rm, events):
    rm = fresh_rm(qwen_rm, prefix_cache_bytes=64 << 20)
    rm.score(events[0])
    assert len(rm.prefix_store) == 1
    counter = TokenCounter(rm.model)
    try:
        got = rm.score(events[1])
    finally:
        counter.remove()
    expected = whole_rm.score(events[1])
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, expected)) < TOL
    first_event_tokens = min(len(ids) for ids, _ in rm.fit_prompts(events[0]))
    assert rm.prefix_store.hits == 1 and rm.prefix_store.reused_tokens > 0.9 * first_event_tokens - 200
    # the new event prefilled only the turns added since the last one
    assert counter.tokens < max(s.n_tokens for s in got) - rm.prefix_store.reused_tokens + 200
    assert len(rm.prefix_store) == 1  # the older, covered entry was dropped


def test_single_prompt_reuses_store(qwen_rm, whole_rm, events):
    rm = fresh_rm(qwen_rm, prefix_cache_bytes=64 << 20)
    first = rm.score(events[0][:1])
    second = rm.score(events[1][:1])
    assert rm.prefix_store.hits == 1
    for got, prompts in ((first, events[0][:1]), (second, events[1][:1])):
        assert abs(got[0].p_harmful - whole_rm.score(prompts)[0].p_harmful) < TOL


@pytest.mark.parametrize("mode", ["cache", "stream"])
def test_unrelated_prompts_in_one_call(qwen_rm, whole_rm, events, mode):
    """Two events' candidates mixed (as a worker batches them) are grouped back apart."""
    mixed = [events[1][0], events[0][0], events[1][2], events[0][1], "[User]\nhi\n\nAnswer:"]
    rm = fresh_rm(qwen_rm, prefix_cache_bytes=0, prefix_mode=mode)
    got, expected = rm.score(mixed, batch_size=4), whole_rm.score(mixed)
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, expected)) < TOL
    assert [s.n_tokens for s in got] == [s.n_tokens for s in expected]


@pytest.fixture(scope="module")
def unmerged_rm(qwen_rm_dir):
    from tests.conftest import rm_paths

    rm = MemRM.from_pretrained(**rm_paths(qwen_rm_dir), merge=False)
    assert type(rm.model).__name__ == "PeftModelForCausalLM"
    return rm


@pytest.mark.parametrize("mode", ["cache", "stream"])
def test_unmerged_peft_model_shares_prefix(unmerged_rm, events, whole_rm, mode):
    """Walking the layers of an unmerged PeftModel applies its LoRA (in-place wrapped linears)."""
    rm = MemRM.from_model(unmerged_rm.model, unmerged_rm.tokenizer, prefix_mode=mode)
    unmerged_whole = MemRM.from_model(unmerged_rm.model, unmerged_rm.tokenizer, prefix_cache_bytes=0,
                                      min_shared_prefix=10**9)
    got, expected = rm.score(events[1]), whole_rm.score(events[1])
    delta = max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, expected))
    print(f"\nunmerged {mode}: max|dp| vs merged whole prompts = {delta:.2e}")
    assert delta < TOL
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, unmerged_whole.score(events[1]))) < TOL
    with unmerged_rm.model.disable_adapter():  # the LoRA matters, so matching above means it ran
        bare = rm.score(events[1])
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(bare, expected)) > 1e-3


def test_stream_drops_each_layers_kv_before_the_next(qwen_rm, events):
    """Layer i runs for the prefix and every candidate, and its keys/values are gone before layer i+1."""
    import weakref

    rm = fresh_rm(qwen_rm, prefix_cache_bytes=0, prefix_mode="stream")
    layers = rm.model.model.layers
    calls: list[int] = []
    held: list[weakref.ref] = []
    alive_at_next_layer: list[int] = []

    def before(index):
        def hook(module, args, kwargs):
            alive_at_next_layer.append(sum(ref() is not None for ref in held))
            calls.append(index)
        return hook

    def after(module, args, kwargs, output):
        cache = kwargs["cache"]
        assert len({id(layer) for layer in cache.layers}) == 1  # one layer's keys/values, whatever the index
        held.append(weakref.ref(cache.layers[0].keys))

    handles = [layer.register_forward_pre_hook(before(i), with_kwargs=True) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after, with_kwargs=True) for layer in layers]
    try:
        rm.score(events[0])
    finally:
        for handle in handles:
            handle.remove()
    k = len(events[0])
    assert calls == [i for i in range(len(layers)) for _ in range(1 + k)]  # layer by layer
    # at each layer's first call (its prefix), no earlier layer's prefix keys/values survive
    firsts = [alive_at_next_layer[i * (1 + k)] for i in range(len(layers))]
    assert firsts == [0] * len(layers), firsts


def test_auto_caches_what_the_store_keeps_and_streams_the_rest(qwen_rm, whole_rm, events):
    """A budget that holds event 0's prefix but not event 1's: cache then store, then stream from it."""
    seqs = [[ids for ids, _ in qwen_rm.fit_prompts(prompts)] for prompts in events]
    prefix_lens = [plan_prefix_groups(s, 64)[0].prefix_len for s in seqs]
    per_token = qwen_rm._kv_per_token
    rm = fresh_rm(qwen_rm, prefix_cache_bytes=per_token * (prefix_lens[0] + prefix_lens[1]) // 2)
    assert not rm.streams(prefix_lens[0]) and rm.streams(prefix_lens[1])
    rm.score(events[0])
    assert len(rm.prefix_store) == 1
    counter = TokenCounter(rm.model)
    try:
        got = rm.score(events[1])
    finally:
        counter.remove()
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(got, whole_rm.score(events[1]))) < TOL
    assert rm.prefix_store.hits == 1 and len(rm.prefix_store) == 1  # read as a head start, nothing new kept
    new_prefix = prefix_lens[1] - rm.prefix_store.reused_tokens
    suffixes = sum(len(s) - prefix_lens[1] for s in seqs[1])
    assert counter.tokens == new_prefix + suffixes
    assert fresh_rm(qwen_rm, prefix_cache_bytes=0).streams(1)  # no store: always stream
    assert not fresh_rm(qwen_rm, prefix_mode="cache", prefix_cache_bytes=0).streams(10**6)


def test_prefix_mode_is_checked(qwen_rm):
    with pytest.raises(ValueError, match="prefix_mode"):
        fresh_rm(qwen_rm, prefix_mode="layers")
    from memguard.scoring.stream import streamed_label_logits

    with pytest.raises(ValueError, match="after the shared prefix"):
        streamed_label_logits(qwen_rm.model, [[1, 2, 3], [1, 2]], 2, qwen_rm.label_ids)
    with pytest.raises(ValueError, match="at least one id"):
        streamed_label_logits(qwen_rm.model, [[1, 2, 3], [4, 5]], 0, qwen_rm.label_ids)


# ------------------------------------------------------------------------------ planning units


def test_plan_groups_share_prefix_and_leave_a_suffix():
    seqs = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 4], [9, 9, 9], [1, 7, 7], [9, 9, 9, 1]]
    groups = plan_prefix_groups(seqs, 2)
    assert sorted(i for g in groups for i in g.indices) == list(range(len(seqs)))
    for g in groups:
        members = [seqs[i] for i in g.indices]
        for m in members:
            assert g.prefix_len < len(m) and m[: g.prefix_len] == members[0][: g.prefix_len]
    by_first = {g.indices[0]: g for g in groups}
    assert by_first[0].indices == (0, 1, 2) and by_first[0].prefix_len == 3  # [1,2,3,4] keeps one id
    assert by_first[3].indices == (3, 5) and by_first[3].prefix_len == 2
    assert by_first[4].indices == (4,) and by_first[4].prefix_len == 0  # shares too little -> alone


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len(torch.tensor([5, 6]), [5, 7]) == 1


def _kv(tokens: int) -> tuple:
    t = torch.zeros(1, 1, tokens, 4)
    return ((t, t.clone()),)


def test_store_is_bounded_lru():
    per_token = 2 * 4 * 4  # keys + values, 4 floats each
    store = PrefixStore(max_bytes=250 * per_token, min_match=2)
    store.put([1] * 100, _kv(100))
    store.put([2] * 100, _kv(100))
    assert store.lookup([1] * 100 + [3])[0] == 100  # touches the [1]* entry
    store.put([3] * 100, _kv(100))  # over budget: evicts the least recently used ([2]*)
    assert store.nbytes <= store.max_bytes and len(store) == 2
    assert store.lookup([2] * 50)[0] == 0 and store.lookup([1] * 50)[0] == 50
    assert not store.put([4] * 300, _kv(300))  # larger than the whole budget: refused
    with pytest.raises(ValueError):
        PrefixStore(-1)


def test_length_batches_group_similar_lengths():
    lengths = [100, 9000, 105, 120, 400, 101]
    batches = length_batches(lengths, 4, max_batch_tokens=8192)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [1] in batches and [4] in batches  # the long one alone; 400 is too far from ~100
    assert sorted(next(b for b in batches if 0 in b)) == [0, 2, 3, 5]
    assert length_batches(lengths, 1) == [[i] for i in sorted(range(6), key=lambda i: lengths[i])]


# ------------------------------------------------------------------------------ piecewise tokenizing


def test_segment_encoding_equals_whole_encoding(qwen_rm, events):
    from memguard.scoring.segments import SegmentEncoder, segment_safe, split_at_headers

    tok = qwen_rm.tokenizer
    assert segment_safe(tok)
    whole = lambda t: tok(t, add_special_tokens=False)["input_ids"]
    encoder = SegmentEncoder(whole)
    tricky = ["a.\n\n[User]\nx", "x\n[", "\n[[", "é\n[\u0301", " \n [x", "\r\n[Tool]\r\n[", "[x]\n[y]\n\n"]
    for text in [*events[0], *events[1], *tricky]:
        assert "".join(split_at_headers(text)) == text
        assert encoder(text) == whole(text), text
    assert qwen_rm.encode(events[0][0]) == whole(events[0][0])


def test_segment_safety_refuses_other_tokenizers(tmp_path):
    from memguard.scoring.segments import segment_safe
    from memguard.testing import build_byte_tokenizer, load_tokenizer

    assert segment_safe(load_tokenizer(build_byte_tokenizer(tmp_path / "byte")))  # GPT-2 byte-level regex
    assert not segment_safe(object())


def test_segment_encoding_property(qwen_tokenizer):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from memguard.scoring.segments import SegmentEncoder

    whole = lambda t: qwen_tokenizer(t, add_special_tokens=False)["input_ids"]
    encoder = SegmentEncoder(whole)
    alphabet = st.sampled_from(["\n", "[", "]", " ", "a", "Tool", ".", "é", "\u0301", "7", "\r", "\t", "'s", "<|endoftext|>"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(alphabet, max_size=30).map("".join))
    def check(text):
        assert encoder(text) == whole(text)

    check()


def test_chunked_prefill_equals_one_pass(qwen_rm, events):
    from memguard.scoring.prefix import prefill

    ids = qwen_rm.fit_prompts(events[0][:1])[0][0][:700]
    with torch.inference_mode():
        whole = prefill(qwen_rm.model, ids, chunk=10_000)
        chunked = prefill(qwen_rm.model, ids, chunk=256)
    assert len(whole) == len(chunked) and whole[0][0].shape[-2] == 700
    for (k1, v1), (k2, v2) in zip(whole, chunked):
        assert torch.allclose(k1, k2, atol=1e-4) and torch.allclose(v1, v2, atol=1e-4)


# ------------------------------------------------------------------------------ the shared cut


def _forward_tokens(rm, prompts):
    counter = TokenCounter(rm.model)
    try:
        scores = rm.score(prompts)
    finally:
        counter.remove()
    return scores, counter.tokens


def test_shared_cut_prefills_the_event_once_and_stays_close_to_the_exact_cut(qwen_rm, whole_rm, events):
    """Candidates whose actions differ in length: the exact cut shares nothing, the shared cut
    runs the view once; its scores are exact for the ids it keeps, and |dP| vs the exact cut is
    reported (a few tokens more are cut at the far left)."""
    from tests import figures

    prompts = events[0]
    lengths = [whole_rm.count_tokens(p) for p in prompts]
    assert len(set(lengths)) == len(prompts)  # the actions differ in length
    limit = min(lengths) - 40
    exact = fresh_rm(qwen_rm, max_length=limit, prefix_cache_bytes=0)
    shared = fresh_rm(qwen_rm, max_length=limit, prefix_cache_bytes=0, cut="shared")

    exact_scores, exact_tokens = _forward_tokens(exact, prompts)
    shared_scores, shared_tokens = _forward_tokens(shared, prompts)
    assert len({s.n_truncated for s in exact_scores}) == len(prompts)  # each cut elsewhere...
    assert exact_tokens == sum(s.n_tokens for s in exact_scores)  # ...so each is prefilled whole
    assert len({s.n_truncated for s in shared_scores}) == 1  # one start for all
    longest = max(s.n_tokens for s in shared_scores)
    assert shared_tokens < longest + 100 * len(prompts)  # about one prefill of the cut view

    for (ids, _), score in zip(shared.fit_prompts(prompts), shared_scores):
        assert abs(score.p_harmful - whole_rm.score_ids(ids)) < TOL  # exact for what it reads
    extra = [s.n_truncated - e.n_truncated for s, e in zip(shared_scores, exact_scores)]
    delta = max(abs(s.p_harmful - e.p_harmful) for s, e in zip(shared_scores, exact_scores))
    figures.note("shared cut vs exact cut, tiny Qwen3 (k=3, ~2K tokens)",
                 f"max |dP| = {delta:.2e}, extra tokens cut {extra}, prefill tokens {shared_tokens} vs {exact_tokens}")
    print(f"\nshared vs exact cut: max|dP| = {delta:.2e}; extra tokens cut {extra}; "
          f"forward tokens {shared_tokens} vs {exact_tokens}")
    assert 0 <= min(extra) and max(extra) <= 512
    # No bound on delta: a random tiny model reacts strongly to which token comes first (0.08 seen
    # here for 34-87 tokens less out of ~1.6K); it is reported, as in benchmarks/RESULTS.md.


def test_shared_cut_block_lets_the_store_hit_as_the_conversation_grows(qwen_rm, whole_rm, events):
    """Successive events start at the same rounded offset, so the stored prefix is reused; the
    latest-start shared cut (block 1) moves with every turn and never hits."""
    first, second = events
    limit = min(whole_rm.count_tokens(p) for p in first) - 40
    need = max(whole_rm.count_tokens(p) for p in second) - (limit - 1)
    block = -(-(need + 1) // 64) * 64
    if block > (limit - 1) // 2:
        pytest.skip("the conversation grows too fast between these events for a block this size")
    hits = {}
    for size in (1, block):
        rm = fresh_rm(qwen_rm, max_length=limit, cut="shared", cut_block=size, prefix_cache_bytes=256 << 20)
        rm.score(first)
        got = rm.score(second)
        hits[size] = (rm.prefix_store.hits, rm.prefix_store.reused_tokens)
        for (ids, _), score in zip(rm.fit_prompts(second), got):
            assert abs(score.p_harmful - whole_rm.score_ids(ids)) < TOL
    assert hits[1] == (0, 0)
    assert hits[block][0] >= 1 and hits[block][1] > limit // 2
