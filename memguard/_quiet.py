"""Quiet the model libraries while memguard builds or loads a model the user did not ask to watch.

transformers, huggingface_hub, peft and bitsandbytes print progress bars ("Writing model shards", "Loading
weights"), info and warnings (FutureWarnings about their own internals) that mean nothing to a
user of `memguard demo --offline`. Inside `quiet_model_libraries()` those are silenced; errors
are not: exceptions propagate, and ERROR log records still print. Everything is restored on exit.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["quiet_model_libraries"]

# Warnings attributed to these packages (by the module that issued them) are dropped.
# bitsandbytes (the [quant] extra) and kernels (a transformers dependency) are imported with them: on
# a CPU with AVX512-BF16 bitsandbytes tries to fetch an optional hub kernel at import and, offline,
# warns twice that it fell back to its own.
_NOISY = (
    "transformers",
    "peft",
    "huggingface_hub",
    "accelerate",
    "torch",
    "safetensors",
    "tokenizers",
    "bitsandbytes",
    "kernels",
)


@contextmanager
def quiet_model_libraries() -> Iterator[None]:
    """Silence the model libraries' progress bars, info and warnings for the block."""
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        for package in _NOISY:
            warnings.filterwarnings("ignore", module=rf"{package}(\.|$)")
        for package in _NOISY:
            stack.enter_context(_log_level(logging.getLogger(package), logging.ERROR))
        stack.enter_context(_no_progress_bars())
        yield


@contextmanager
def _log_level(logger: logging.Logger, level: int) -> Iterator[None]:
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' bars (and huggingface_hub's, which it switches along) off for the block."""
    try:
        from huggingface_hub.utils.tqdm import are_progress_bars_disabled, disable_progress_bars
        from transformers.utils import logging as hf_logging
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in ("transformers", "huggingface_hub"):
            raise
        yield  # not installed: no bars to silence
        return
    hub_was_off = are_progress_bars_disabled()
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()  # turns huggingface_hub's bars on as well
            if hub_was_off:
                disable_progress_bars()
