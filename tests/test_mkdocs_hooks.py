"""The API check of the docs build (scripts/mkdocs_hooks.py) judges what a docstring must say.

Each case is a tiny package written to disk and read statically by griffe, as the hook reads
memguard: records and enums are documented by their fields, pytest test methods need no Args,
"See <framework>" exempts a framework's hook but not a reference to our own code, and a public
name griffe cannot find is reported instead of vanishing from the reference.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("griffe", reason="the docs extra (memguard[docs]) is not installed")

HOOKS = Path(__file__).resolve().parents[1] / "scripts" / "mkdocs_hooks.py"


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memguard_mkdocs_hooks", HOOKS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems(hooks: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
             **modules: str) -> list[str]:
    """The hook's findings for package `hookcase` whose __init__ is `source` (other modules beside it)."""
    package = tmp_path / "hookcase"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
    for name, text in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.setattr(hooks, "_OWN_ROOTS", {"hookcase"})
    found: list[str] = hooks.check_package("hookcase", tmp_path)
    return found


def test_a_dataclass_is_documented_by_its_fields(hooks, tmp_path, monkeypatch):
    found = problems(hooks, tmp_path, monkeypatch, '''
        """Case."""
        from dataclasses import dataclass

        __all__ = ["Point", "Half"]


        @dataclass
        class Point:
            """A point; no Args section: its fields say what the constructor takes."""

            x: int
            """Across."""
            y: int = 0
            """Down."""


        @dataclass
        class Half:
            """Only one field documented.

            Attributes:
                a: Documented in the class's Attributes section.
            """

            a: int
            b: int
    ''')
    assert found == ["hookcase.Half: fields not documented (Attributes section, or a docstring of their own): b"]


def test_pydantic_fields_namedtuple_fields_and_enum_members_need_documenting(hooks, tmp_path, monkeypatch):
    found = problems(hooks, tmp_path, monkeypatch, '''
        """Case."""
        from enum import Enum
        from typing import ClassVar, NamedTuple

        from pydantic import BaseModel, ConfigDict

        __all__ = ["Model", "Pair", "Colour"]


        class Model(BaseModel):
            """A model."""

            model_config = ConfigDict(frozen=True)
            registry: ClassVar[dict[str, int]] = {}
            known: int = 0
            """Documented."""
            unknown: str = ""


        class Pair(NamedTuple):
            """A pair."""

            left: int
            right: int


        class Colour(Enum):
            """A colour."""

            RED = "red"
            """Documented."""
            BLUE = "blue"
    ''')
    assert found == [
        "hookcase.Model: fields not documented (Attributes section, or a docstring of their own): unknown",
        "hookcase.Pair: fields not documented (Attributes section, or a docstring of their own): left, right",
        "hookcase.Colour: members not documented (Attributes section, or a docstring of their own): BLUE",
    ]


def test_pytest_methods_need_a_docstring_but_no_args(hooks, tmp_path, monkeypatch):
    found = problems(hooks, tmp_path, monkeypatch, '''
        """Case."""
        import pytest

        __all__ = ["Contract"]


        class Contract:
            """Tests a subclass inherits."""

            @pytest.fixture(params=["a", "b"])
            def mode(self, request):
                """The mode each test runs in."""
                return request.param

            def test_documented(self, mode):
                """Checks one thing."""

            def test_bare(self, mode):
                pass

            def helper(self, value):
                """A public method: its parameters still need an Args section."""
    ''')
    assert found == ["hookcase.Contract.test_bare: no docstring",
                     "hookcase.Contract.helper: Args section does not document value"]


def test_see_exempts_a_framework_hook_but_not_a_reference_to_our_own_code(hooks, tmp_path, monkeypatch):
    found = problems(hooks, tmp_path, monkeypatch, '''
        """Case."""

        __all__ = ["hook", "ours"]


        def hook(ctx, request):
            """Guard the request. See framework.Capability.before_request."""


        def ours(value):
            """Like the other one. See `hookcase.other` for the details."""
    ''')
    assert found == ["hookcase.ours: Args section does not document value"]


def test_a_public_name_griffe_cannot_find_is_reported(hooks, tmp_path, monkeypatch):
    found = problems(hooks, tmp_path, monkeypatch, '''
        """Case."""
        from hookcase.ids import FIRST, SECOND

        __all__ = ["FIRST", "SECOND"]
    ''', ids='''
        """Ids."""

        FIRST, SECOND = 1, 2
    ''')
    assert found == [
        "hookcase.FIRST: griffe cannot find hookcase.ids.FIRST (define it by a plain assignment)",
        "hookcase.SECOND: griffe cannot find hookcase.ids.SECOND (define it by a plain assignment)",
    ]
