"""Optional dependencies: which extra brings which module, and the error that names the extra.

The core needs pydantic and httpx only. A piece that needs more (the in-process scorer, the
command line, the OpenTelemetry sink) imports it inside `needs_extra`, so a missing dependency
reads "install memguard[local]" instead of a bare "No module named 'torch'".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["EXTRA_MODULES", "MissingExtra", "needs_extra"]

# Top-level import names each extra provides (pyproject's [project.optional-dependencies]);
# tests/test_packaging.py checks them against the installed metadata.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "local": ("torch", "transformers", "peft", "safetensors", "huggingface_hub", "tokenizers"),
    "quant": ("bitsandbytes", "accelerate"),
    "otel": ("opentelemetry",),
    "report": ("matplotlib", "numpy"),
    "cli": ("typer", "rich", "tomli_w", "sklearn", "matplotlib", "numpy"),
    "langchain": ("langchain_core",),
    "docs": ("mkdocs", "material", "mkdocstrings", "pytest_examples"),
}


class MissingExtra(ImportError):
    """A piece of memguard whose optional dependencies are not installed; names the extra."""

    def __init__(self, what: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{what} needs memguard[{extra}] ({missing} is not installed): pip install 'memguard[{extra}]'",
            name=missing,
        )
        self.what = what
        self.extra = extra
        self.missing = missing


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Turn a missing module of `extra` imported in this block into `MissingExtra`.

    Other import errors (a missing core module, a broken install) pass through unchanged, so a
    real bug is never reported as a missing extra.
    """
    try:
        yield
    except ModuleNotFoundError as err:
        top = (err.name or "").partition(".")[0]
        if top not in EXTRA_MODULES[extra]:
            raise
        raise MissingExtra(what, extra, top) from err
