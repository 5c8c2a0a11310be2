"""Supply chain: only safetensors, never remote code, pinnable revisions, vetted adapters, traceable scores.

Loading goes through the public `MemRM.from_pretrained` on tiny models built at run time; hub
calls are replaced by spies that record their arguments and serve the local copies.
"""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

from memguard import CompactionEvent, Guard, JSONLSink, MemRM, Verdict
from memguard.protocol import summary_message
from tests import figures
from tests.conftest import rm_paths
from tests.doubles import FactPolicy, swe_conversation


@pytest.fixture
def rm_copy(byte_rm_dir, tmp_path):
    """A private copy of the tiny byte-vocabulary RM that a test may tamper with."""
    shutil.copytree(byte_rm_dir, tmp_path / "rm")
    return tmp_path / "rm"


@pytest.fixture
def spies(monkeypatch):
    """Record every from_pretrained call (transformers and PEFT), still doing the real load."""
    import peft
    import transformers

    calls: list[tuple[str, tuple, dict]] = []

    def spy(owner, name):
        real = getattr(owner, "from_pretrained")

        def recorder(*args, **kwargs):
            calls.append((name, args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", recorder)

    spy(transformers.AutoTokenizer, "AutoTokenizer")
    spy(transformers.AutoModelForCausalLM, "AutoModelForCausalLM")
    spy(peft.PeftModel, "PeftModel")
    return calls


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything unpickles (torch.load or pickle) while loading."""
    used: list[str] = []

    def trap(name, real):
        def called(*args, **kwargs):
            used.append(name)
            return real(*args, **kwargs)

        return called

    monkeypatch.setattr(torch, "load", trap("torch.load", torch.load))
    monkeypatch.setattr(pickle, "load", trap("pickle.load", pickle.load))
    monkeypatch.setattr(pickle, "loads", trap("pickle.loads", pickle.loads))
    return used


# ------------------------------------------------------------------------------ safetensors only


def test_pickle_files_beside_safetensors_are_never_read(rm_copy, no_unpickling):
    (rm_copy / "base" / "pytorch_model.bin").write_bytes(b"not a pickle: reading this file fails")
    (rm_copy / "adapter" / "checkpoint-500" / "adapter_model.bin").write_bytes(b"\x80\x04 garbage")
    rm = MemRM.from_pretrained(**rm_paths(rm_copy))
    assert rm.score(["[User]\nhi\n\nAnswer:"])
    assert no_unpickling == []
    figures.count("supply chain: loads checked")


@pytest.mark.parametrize("where", ["adapter", "base"])
def test_pickle_only_weights_are_refused(rm_copy, where, no_unpickling):
    from safetensors.torch import load_file

    folder = rm_copy / "adapter" / "checkpoint-500" if where == "adapter" else rm_copy / "base"
    for weights in folder.glob("*.safetensors"):
        torch.save(load_file(weights), weights.with_suffix(".bin"))
        weights.unlink()
    with pytest.raises(ValueError, match="pickle") as info:
        MemRM.from_pretrained(**rm_paths(rm_copy), force=where == "base")
    assert ".bin" in str(info.value)
    assert no_unpickling == []
    figures.count("supply chain: loads checked")


# ------------------------------------------------------------------------------ no remote code


def test_trust_remote_code_is_never_on(rm_copy, spies, tmp_path):
    """Every loader gets trust_remote_code=False (or none), and a config's auto_map runs nothing."""
    marker = tmp_path / "remote-code-ran"
    base = rm_copy / "base"
    (base / "evil_modeling.py").write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\nfrom transformers import Qwen3ForCausalLM as EvilModel\n")
    for name in ("config.json", "tokenizer_config.json"):
        cfg = json.loads((base / name).read_text())
        cfg["auto_map"] = {"AutoModelForCausalLM": "evil_modeling.EvilModel",
                           "AutoTokenizer": ["evil_modeling.EvilModel", None]}
        (base / name).write_text(json.dumps(cfg))
    try:
        MemRM.from_pretrained(**rm_paths(rm_copy))
    except ValueError as exc:  # refusing is fine too; running the code is not
        assert "trust_remote_code" in str(exc)
    assert not marker.exists()
    assert {name for name, _, _ in spies} >= {"AutoTokenizer", "AutoModelForCausalLM"}
    for name, _, kwargs in spies:
        assert kwargs.get("trust_remote_code", False) is False, (name, kwargs)
    figures.count("supply chain: loads checked")


# ------------------------------------------------------------------------------ pinned revisions


def test_revisions_are_passed_through_and_recorded(rm_copy, spies, monkeypatch, tmp_path):
    """Hub ids: the base's `revision` reaches transformers, `adapter_revision` reaches the hub client."""
    import huggingface_hub
    import transformers

    downloads: list[dict] = []

    def fake_snapshot_download(repo_id, **kwargs):
        downloads.append({"repo_id": repo_id, **kwargs})
        return str(rm_copy / "adapter")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    # the base "hub id" is served from the local copy: wrap the spies once more to redirect
    for owner in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        spied = owner.from_pretrained
        monkeypatch.setattr(owner, "from_pretrained",
                            lambda ref, *a, _spied=spied, **kw: _spied(str(rm_copy / "base") if ref == "Org/base" else ref, *a, **kw))
    config = rm_copy / "adapter" / "checkpoint-500" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": "Org/base"}))

    rm = MemRM.from_pretrained(base="Org/base", adapter="MemGym/memgym-rm-1p7b", subfolder="checkpoint-500",
                               revision="base-commit-0123", adapter_revision="adapter-commit-4567")

    (download,) = downloads
    assert download["repo_id"] == "MemGym/memgym-rm-1p7b" and download["revision"] == "adapter-commit-4567"
    assert sorted(download["allow_patterns"]) == ["checkpoint-500/adapter_config.json",
                                                  "checkpoint-500/adapter_model.safetensors"]
    base_calls = [kw for name, _, kw in spies if name in ("AutoTokenizer", "AutoModelForCausalLM")]
    assert len(base_calls) == 2 and all(kw["revision"] == "base-commit-0123" for kw in base_calls)
    model_kwargs = next(kw for name, _, kw in spies if name == "AutoModelForCausalLM")
    assert model_kwargs["use_safetensors"] is True
    ident = rm.identity
    assert (ident.revision, ident.adapter_revision) == ("base-commit-0123", "adapter-commit-4567")
    figures.count("supply chain: loads checked")


def test_adapter_revision_with_a_local_path_is_refused(byte_rm_dir):
    with pytest.raises(ValueError, match="adapter_revision only applies to hub ids"):
        MemRM.from_pretrained(**rm_paths(byte_rm_dir), adapter_revision="abc")


# ------------------------------------------------------------------------------ adapter vs base


def _edit_adapter_config(root, **changes):
    path = root / "adapter" / "checkpoint-500" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(("changes", "message", "force_loads"), [
    ({"base_model_name_or_path": "Qwen/Qwen3-1.7B"}, r"trained on 'Qwen/Qwen3-1.7B'", True),
    ({"r": 8}, r"says r=8 but the adapter weights have rank 16", False),
    ({"target_modules": ["q_proj", "c_attn"]}, r"target modules \['c_attn'\] are not in the base", False),
], ids=["base name", "rank", "target modules"])
def test_adapter_config_checked_against_the_base(rm_copy, changes, message, force_loads):
    _edit_adapter_config(rm_copy, **changes)
    with pytest.raises(ValueError, match=message):
        MemRM.from_pretrained(**rm_paths(rm_copy))
    if force_loads:
        assert MemRM.from_pretrained(**rm_paths(rm_copy), force=True).score(["x\n\nAnswer:"])
    figures.count("supply chain: tampered adapter configs refused")


def test_adapter_for_another_base_size_is_refused(rm_copy, tmp_path):
    from memguard.testing import build_tiny_rm

    other = build_tiny_rm(tmp_path / "other", seed=2, tokenizer="byte", hidden_size=64, head_dim=32)
    _edit_adapter_config(other, base_model_name_or_path=str(rm_copy / "base"))
    with pytest.raises(ValueError, match="in_features=64 but the base layer has 128"):
        MemRM.from_pretrained(base=str(rm_copy / "base"), adapter=str(other / "adapter"), subfolder="checkpoint-500")
    figures.count("supply chain: tampered adapter configs refused")


# ------------------------------------------------------------------------------ identity in every record


def test_every_decision_and_record_names_the_weights(byte_rm, byte_rm_dir, tmp_path):
    fingerprint = byte_rm.identity.fingerprint  # what it covers: tests/test_fingerprint.py
    assert fingerprint and len(fingerprint) == 16
    before = swe_conversation(6, fact="FACT-42")
    candidate = [*before[:2], summary_message("did things"), *before[-4:]]
    log = tmp_path / "audit.jsonl"
    decisions = []
    for options in ({}, {"threshold": 1.0, "band": None}, {"mode": "audit"}):
        guard = Guard(byte_rm, sinks=[JSONLSink(log)], identical_is_safe=False, cooldown=2,
                      on_decision=decisions.append, **options)
        decisions.append(guard.review(CompactionEvent(before=before, candidate=candidate, step=5), FactPolicy("FACT-42")))
        decisions.append(guard.review(CompactionEvent(before=before, candidate=candidate, step=6), FactPolicy("FACT-42")))
        guard.flush(10)
        guard.close()

    def broken(messages):
        raise RuntimeError("summariser down")

    wrapped = Guard(byte_rm).compaction(policy=FactPolicy("FACT-42"))(broken)
    wrapped(before)
    decisions.append(wrapped.last_decision)

    kinds = {d.verdict for d in decisions} | {"pending" for d in decisions if d.pending}
    assert {Verdict.VETO, Verdict.COMMIT, Verdict.AUDIT, "pending"} <= kinds
    assert all(d.scorer is not None and d.scorer.fingerprint == fingerprint for d in decisions)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) >= 5
    assert all(r["scorer"]["fingerprint"] == fingerprint and r["scorer"]["base"] == str(byte_rm_dir / "base")
               for r in records)
    figures.note("supply chain: decisions checked for the weights' fingerprint", len(decisions) + len(records))
