"""Provenance by content: what the fingerprint covers, and which adapter/base mismatches are refused.

The fingerprint in every Decision must change whenever the scores can change (adapter weights,
adapter config such as lora_alpha, the base's config and weight shapes) and only then (not when
a folder is renamed). `force=True` skips only the base-name check; the shape and target-module
checks always run, and name what differs.
"""

from __future__ import annotations

import json
import shutil

import pytest

from memguard import MemRM
from memguard.testing import build_tiny_rm
from tests.conftest import rm_paths

PROMPT = "[User]\nhello there\n\nAnswer:"


@pytest.fixture
def rm_copy(byte_rm_dir, tmp_path):
    dst = tmp_path / "rm"
    shutil.copytree(byte_rm_dir, dst)
    return dst


def edit(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def adapter_config(root):
    return root / "adapter" / "checkpoint-500" / "adapter_config.json"


def load(root, **options):
    return MemRM.from_pretrained(**rm_paths(root), **options)


def test_lora_alpha_changes_the_fingerprint_as_it_changes_the_scores(rm_copy):
    before = load(rm_copy)
    edit(adapter_config(rm_copy), lora_alpha=64)
    after = load(rm_copy)
    assert before.score([PROMPT])[0].p_harmful != after.score([PROMPT])[0].p_harmful
    assert before.identity.fingerprint != after.identity.fingerprint
    assert before.identity.base_fingerprint == after.identity.base_fingerprint


def test_provenance_fields_do_not_change_it(rm_copy):
    before = load(rm_copy).identity
    edit(adapter_config(rm_copy), peft_version="9.9.9", inference_mode=False)
    edit(rm_copy / "base" / "config.json", transformers_version="9.9.9")
    assert load(rm_copy).identity.fingerprint == before.fingerprint


def test_a_base_copied_to_another_folder_keeps_its_fingerprint_and_loads(rm_copy, tmp_path):
    """Before: the base check compared folder names, so a copied base could not load without force."""
    original = load(rm_copy).identity
    moved = tmp_path / "elsewhere" / "my-renamed-model"
    shutil.copytree(rm_copy / "base", moved)
    copy = MemRM.from_pretrained(base=str(moved), adapter=str(rm_copy / "adapter"), subfolder="checkpoint-500")
    assert copy.identity.fingerprint == original.fingerprint
    assert copy.identity.base_fingerprint == original.base_fingerprint
    assert copy.identity.base == str(moved)  # the name is still recorded as given


def test_a_changed_base_changes_the_fingerprint_and_the_refusal_names_it(rm_copy, tmp_path):
    original = load(rm_copy).identity
    changed = tmp_path / "other-name"
    shutil.copytree(rm_copy / "base", changed)
    edit(changed / "config.json", rms_norm_eps=1e-3)
    with pytest.raises(ValueError, match=r"rms_norm_eps: 1e-06 != 0.001") as info:
        MemRM.from_pretrained(base=str(changed), adapter=str(rm_copy / "adapter"), subfolder="checkpoint-500")
    assert "force=True (command line: --force; TOML [scorer]: force = true)" in str(info.value)
    forced = MemRM.from_pretrained(base=str(changed), adapter=str(rm_copy / "adapter"), subfolder="checkpoint-500",
                                   force=True)
    assert forced.identity.base_fingerprint != original.base_fingerprint
    assert forced.identity.fingerprint != original.fingerprint


@pytest.fixture(scope="module")
def deep_rm(tmp_path_factory):
    """The byte RM's shape with 2 layers, and a 1-layer base of the same width."""
    root = tmp_path_factory.mktemp("layers")
    build_tiny_rm(root / "two", seed=3, tokenizer="byte", num_layers=2)
    build_tiny_rm(root / "one", seed=4, tokenizer="byte", num_layers=1)
    return root


@pytest.mark.parametrize("force", [False, True])
def test_an_adapter_for_a_deeper_base_is_refused_even_forced(deep_rm, force):
    """Before: PEFT dropped the LoRA weights of layer 1 without a word (and force skipped every check)."""
    with pytest.raises(ValueError, match=r"LoRA weights for 4 module\(s\) the base does not have, "
                                         r"e\.g\. model\.layers\.1\.self_attn\.\w+_proj \(adapter: 2 layers, "
                                         r"base Qwen3ForCausalLM: 1 layers\)"):
        MemRM.from_pretrained(base=str(deep_rm / "one" / "base"), adapter=str(deep_rm / "two" / "adapter"),
                              subfolder="checkpoint-500", force=force)


@pytest.mark.parametrize("force", [False, True])
def test_an_adapter_for_a_shallower_base_is_refused_even_forced(deep_rm, force):
    with pytest.raises(ValueError, match=r"the base has 4 targeted module\(s\) the adapter has no weights for"):
        MemRM.from_pretrained(base=str(deep_rm / "two" / "base"), adapter=str(deep_rm / "one" / "adapter"),
                              subfolder="checkpoint-500", force=force)


def test_force_skips_only_the_name_check(rm_copy):
    edit(adapter_config(rm_copy), base_model_name_or_path="Qwen/Qwen3-1.7B", target_modules=["q_proj", "c_attn"])
    with pytest.raises(ValueError, match="trained on 'Qwen/Qwen3-1.7B'"):
        load(rm_copy)
    with pytest.raises(ValueError, match=r"target modules \['c_attn'\] are not in the base") as info:
        load(rm_copy, force=True)
    assert "force" not in str(info.value)  # no advice to pass what would not help
    edit(adapter_config(rm_copy), target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert load(rm_copy, force=True).score([PROMPT])
