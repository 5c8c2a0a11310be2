"""The guard's TOML configuration: defaults, round trip, errors that name the key, scorers."""

from __future__ import annotations

import sys
import types

import pytest

from memguard.config import (
    ConfigError,
    GuardConfig,
    ScorerUnavailable,
    dump_config,
    load_config,
)


def write(tmp_path, text: str):
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.guard.mode == "enforce" and config.guard.threshold == 0.5
    assert config.guard.band == 0.88 and config.guard.band_gate is False and config.guard.fallbacks == ()
    assert config.scorer.kind == "local" and config.scorer.subfolder == "checkpoint-500"


@pytest.mark.cli  # writing TOML needs tomli-w
def test_round_trip(tmp_path):
    config = GuardConfig.model_validate({
        "guard": {"mode": "audit", "threshold": 0.38, "fallbacks": ["observation_masking", "recent_window"]},
        "scorer": {"kind": "remote", "url": "http://localhost:8000", "quantization": "nf4"},
    })  # fmt: skip
    text = dump_config(config, header="calibrated\non data.jsonl")
    assert text.startswith("# calibrated\n# on data.jsonl\n")
    assert load_config(write(tmp_path, text)) == config


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[guard]\nthresold = 0.3\n", "guard.thresold: unknown key"),
        ("[guard]\nthreshold = 1.5\n", "guard.threshold: Input should be less than or equal to 1 (got 1.5)"),
        ('[guard]\nmode = "enforc"\n', "guard.mode: Input should be 'enforce' or 'audit'"),
        ('[guard]\nfallbacks = ["summarise"]\n', "guard.fallbacks: unknown strategy 'summarise'; known: observation_masking,"),
        ("[guard]\nthreshold = 0\n", "guard.threshold: Input should be greater than 0"),
        ("[audit]\nredact = 2\n", "audit.redact: Input should be a valid boolean"),
        ('[scorer]\nkind = "remote"\n', 'scorer.url: required when kind = "remote"'),
        ('[scorer]\nurl = "http://x"\n', "scorer.url: only used when kind"),
        ("[scorers]\n", "scorers: unknown key"),
        ("[guard\n", "not valid TOML"),
        ('[scorer]\nquantization = "int8"\n', "scorer.quantization: Input should be 'auto', 'nf4' or 'none' (got 'int8')"),
        ('[scorer]\nmodel = "memrm"\n', 'scorer.model: only used when kind = "remote"'),
        ('[scorer]\napi_key_env = "MY KEY"\n', "scorer.api_key_env: String should match pattern"),
        ('[scorer]\ncut = "left"\n', "scorer.cut: Input should be 'exact' or 'shared'"),
        ("[scorer]\nmax_length = 1\n", "scorer.max_length: Input should be greater than or equal to 2"),
        ("guard = 3\n", "guard: Input should be a valid dictionary"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_build_scorer_passes_the_table(monkeypatch):
    calls = {}

    class FakeMemRM:
        @classmethod
        def from_pretrained(cls, **kwargs):
            calls["local"] = kwargs
            return cls()

    class FakeRemote:
        def __init__(self, url, **kwargs):
            calls["remote"] = (url, kwargs)

    monkeypatch.setitem(sys.modules, "memguard.scoring.local", types.SimpleNamespace(MemRM=FakeMemRM))
    monkeypatch.setitem(sys.modules, "memguard.scoring.remote", types.SimpleNamespace(RemoteMemRM=FakeRemote))
    GuardConfig.model_validate({"scorer": {"subfolder": "", "max_length": 4096}}).build_scorer()
    assert calls["local"] == {"base": "Qwen/Qwen3-1.7B-Base", "adapter": "MemGym/memgym-rm-1p7b", "max_length": 4096}
    GuardConfig.model_validate({"scorer": {"kind": "remote", "url": "http://h:1"}}).build_scorer()
    assert calls["remote"] == ("http://h:1", {})
    GuardConfig.model_validate({"scorer": {"kind": "remote", "url": "http://h:1", "max_length": 8192}}).build_scorer()
    assert calls["remote"] == ("http://h:1", {"max_length": 8192})
    # every key the Python API takes can be set from the table
    local = {"revision": "b0", "adapter_revision": "a1", "force": True, "quantization": "none", "cut": "shared",
             "cut_block": 256, "dtype": "bfloat16", "device": "cpu"}
    GuardConfig.model_validate({"scorer": local}).build_scorer()
    assert calls["local"] == {"base": "Qwen/Qwen3-1.7B-Base", "adapter": "MemGym/memgym-rm-1p7b",
                              "subfolder": "checkpoint-500", "revision": "b0", "adapter_revision": "a1", "force": True,
                              "quantization": None, "cut": "shared", "cut_block": 256, "dtype": "bfloat16",
                              "device": "cpu"}
    monkeypatch.setenv("MEMGUARD_TEST_RM_KEY", "sk-secret-123")
    remote = {"kind": "remote", "url": "http://h:1", "model": "memrm-v2", "api_key_env": "MEMGUARD_TEST_RM_KEY",
              "timeout": 7.5, "retries": 4, "merged_adapter": True}
    GuardConfig.model_validate({"scorer": remote}).build_scorer()
    assert calls["remote"] == ("http://h:1", {"model": "memrm-v2", "api_key": "sk-secret-123", "timeout": 7.5,
                                              "retries": 4, "merged_adapter": True})


def test_api_key_env_must_be_set(monkeypatch):
    monkeypatch.delenv("MEMGUARD_TEST_UNSET_KEY", raising=False)
    config = GuardConfig.model_validate({"scorer": {"kind": "remote", "url": "http://h:1",
                                                    "api_key_env": "MEMGUARD_TEST_UNSET_KEY"}})
    with pytest.raises(ConfigError, match="environment variable MEMGUARD_TEST_UNSET_KEY is not set"):
        config.build_scorer()


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    from memguard.config import build_guard

    from tests.doubles import ValueScorer

    folder = tmp_path / "conf"
    (folder / "models" / "base").mkdir(parents=True)
    path = folder / "guard.toml"
    path.write_text('[audit]\njsonl = "logs/audit.jsonl"\n\n[scorer]\nbase = "models/base"\nadapter = "./ad"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config("../conf/guard.toml")
    assert config.audit.jsonl == str(folder / "logs" / "audit.jsonl")
    assert config.scorer.base == str(folder / "models" / "base")  # a folder beside the file
    assert config.scorer.adapter == str(folder / "ad")  # explicitly relative
    assert load_config(write(tmp_path, "")).scorer.base == "Qwen/Qwen3-1.7B-Base"  # a hub id stays one
    guard = build_guard(config, scorer=ValueScorer(0.1))
    try:
        assert guard.sinks[0].path == folder / "logs" / "audit.jsonl"
        assert not (elsewhere / "logs").exists()
    finally:
        guard.close()


def test_unavailable_scorer_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "memguard.scoring.remote", None)  # import fails
    config = GuardConfig.model_validate({"scorer": {"kind": "remote", "url": "http://h:1"}})
    with pytest.raises(ScorerUnavailable, match="remote scorer is not available"):
        config.build_scorer()


def test_guard_from_config(tmp_path):
    from memguard import Guard
    from memguard.strategies import KeepMore, ObservationMasking, RecentWindow

    from tests.doubles import ValueScorer

    audit = tmp_path / "audit.jsonl"
    path = write(tmp_path, f"""
[guard]
mode = "audit"
threshold = 0.4
band = 0.5
band_gate = true
fallbacks = ["recent_window", "observation_masking+keep_more_x3"]
on_error = "closed"
hard_budget = 2000

[audit]
jsonl = "{audit}"
redact = true
""")
    scorer = ValueScorer(0.1)
    guard = Guard.from_config(path, scorer=scorer, cooldown=0)
    try:
        assert guard.scorer is scorer and guard.mode == "audit" and guard.threshold == 0.4
        assert (guard.band, guard.band_gate, guard.on_error, guard.hard_budget, guard.cooldown) == (0.5, True, "closed", 2000, 0)
        assert isinstance(guard.fallbacks[0], RecentWindow) and guard.fallbacks[0].keep_last == 40
        assert guard.fallbacks[1] == KeepMore(ObservationMasking(keep_last=10), 3.0)
        assert [s.name for s in guard.fallbacks] == ["recent_window", "observation_masking+keep_more_x3"]
        assert guard.sinks[0].path == audit and guard.sinks[0].redact
    finally:
        guard.close()


def test_default_chain_names_resolve_to_the_default_chain():
    from memguard.config import resolve_fallbacks
    from memguard.strategies import default_fallbacks

    chain = default_fallbacks()
    assert resolve_fallbacks([s.name for s in chain]) == list(chain)


def test_guard_table_is_the_guard_settings(tmp_path):
    """One object, one set of defaults: what `Guard()` runs on is what an empty [guard] parses to."""
    from memguard import Guard, GuardSettings

    from tests.doubles import ValueScorer

    assert load_config(write(tmp_path, "")).guard == GuardSettings() == Guard(ValueScorer(0.1)).settings
    assert load_config(write(tmp_path, "[guard]\nuncertain = 'harmful'\n")).guard.band_gate is True  # 0.1.0 name
