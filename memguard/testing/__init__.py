"""Test helpers for memguard users and its own tests: tiny MemRM look-alikes, offline tokenizers,
an offline hub cache, stand-in scorers and sinks; the integration contract is `memguard.testing.contract`.

Heavy imports (torch, transformers, peft) happen inside the functions, so importing this package
is cheap.
"""

from memguard.testing.doubles import ConstantScorer, FailingScorer, HashScorer, LookupScorer, RecordingSink
from memguard.testing.hub import install_offline_hub, offline_hub
from memguard.testing.loops import longest_loop_stall
from memguard.testing.offline import MarkerScorer, load_tiny_rm
from memguard.testing.tiny import LORA_SETTINGS, SUBFOLDER, build_tiny_rm
from memguard.testing.tokenizers import (
    QWEN3_VOCAB_SIZE,
    QWEN_N_ID,
    QWEN_Y_ID,
    build_byte_tokenizer,
    build_qwen_tokenizer,
    load_tokenizer,
    qwen_tiktoken_file,
)

__all__ = [
    "LORA_SETTINGS",
    "QWEN3_VOCAB_SIZE",
    "QWEN_N_ID",
    "QWEN_Y_ID",
    "SUBFOLDER",
    "ConstantScorer",
    "FailingScorer",
    "HashScorer",
    "LookupScorer",
    "MarkerScorer",
    "RecordingSink",
    "build_byte_tokenizer",
    "build_qwen_tokenizer",
    "build_tiny_rm",
    "install_offline_hub",
    "load_tiny_rm",
    "load_tokenizer",
    "longest_loop_stall",
    "offline_hub",
    "qwen_tiktoken_file",
]
