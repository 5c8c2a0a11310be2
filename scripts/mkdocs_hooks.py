"""mkdocs hooks: refuse, as warnings (which `mkdocs build --strict` turns into failures), public names
whose docstrings do not say what they do and what they take.

A public name is one listed in a documented package's ``__all__`` (or in `EXTRA_NAMES`), and the
public methods and properties of a public class. Each needs a docstring; a function, method or class whose signature
takes parameters needs a Google-style ``Args:`` section naming every one of them (``self``,
``cls``, ``*args``/``**kwargs`` passed through, and parameters of overridden framework methods
documented by the framework are exempt when the docstring says so with "See <framework>.<name>").
A record class (a dataclass, a pydantic model, a NamedTuple, a TypedDict) is built from its
fields, so each field is documented instead, in the class's ``Attributes:`` section or by a
docstring of its own; so is each member of an enum. pytest test methods and fixtures need a
docstring but no ``Args:`` (pytest, not a caller, passes their parameters). Reading is static
(griffe), so no framework has to be installed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.memguard_api")

ROOT = Path(__file__).resolve().parents[1]

# The packages whose public names the API reference documents, and where their sources live.
PACKAGES: dict[str, str] = {
    "memguard": ".",
    "memguard.scoring": ".",
    "memguard.testing": ".",
    "memguard.testing.contract": ".",
    "langchain_memguard": "integrations/langchain",
    "pydantic_ai_memguard": "integrations/pydantic_ai",
    "openai_agents_memguard": "integrations/openai_agents",
    "openhands_memguard": "integrations/openhands",
    "google_adk_memguard": "integrations/google_adk",
    "agent_framework_memguard": "integrations/agent_framework",
    "strands_memguard": "integrations/strands",
}
# Public names left out of `__all__` on purpose, checked (and rendered) all the same: MemRM needs
# memguard[local], so `from memguard.scoring import *` must not reach it on the core install.
EXTRA_NAMES: dict[str, tuple[str, ...]] = {"memguard.scoring": ("MemRM",)}
_EXEMPT_PARAMS = {"self", "cls"}
_OWN_ROOTS = {package.split(".")[0] for package in PACKAGES}
# "See pydantic_ai.AbstractCapability.x": the framework documents the hook this method overrides.
# A reference to one of our own packages ("See `memguard.decorator`") exempts nothing.
_SEE_FRAMEWORK = re.compile(r"\bSee `?([A-Za-z_]\w*)\.\w")
# Classes whose constructor takes their fields: the fields are documented, not an __init__.
_RECORD_BASES = {"pydantic.BaseModel", "typing.NamedTuple", "typing_extensions.NamedTuple",
                 "typing.TypedDict", "typing_extensions.TypedDict"}
_ENUM_BASES = {"enum.Enum", "enum.StrEnum", "enum.IntEnum", "enum.Flag", "enum.IntFlag"}


def _documented_params(obj: Any) -> set[str] | None:
    """Names in the docstring's Args/Parameters/Other parameters sections (None: no docstring)."""
    docstring = obj.docstring
    if docstring is None:
        return None
    names: set[str] = set()
    for section in docstring.parse("google"):
        if section.kind.value in ("parameters", "other parameters"):
            names.update(param.name.lstrip("*") for param in section.value)
    return names


def _section_names(obj: Any, kinds: tuple[str, ...]) -> set[str]:
    """Names listed in the docstring's sections of these kinds (empty: no docstring)."""
    if obj.docstring is None:
        return set()
    return {item.name.lstrip("*") for section in obj.docstring.parse("google")
            if section.kind.value in kinds for item in section.value}


def _base_paths(cls: Any) -> set[str]:
    """Canonical paths of a class's bases, and of theirs where griffe can follow them."""
    paths = {getattr(base, "canonical_path", str(base)) for base in cls.bases}
    try:
        resolved = list(cls.resolved_bases)
    except Exception:  # noqa: BLE001 - a base griffe cannot resolve: its own path is all we know
        resolved = []
    for base in resolved:
        paths |= _base_paths(base)
    return paths


def _undocumented_fields(cls: Any) -> tuple[str, list[str]] | None:
    """For a record or an enum: what its items are called and those left undocumented (else None)."""
    bases = _base_paths(cls)
    if "dataclass" in cls.labels or bases & _RECORD_BASES:
        kind = "fields"
    elif bases & _ENUM_BASES:
        kind = "members"
    else:
        return None
    documented = _section_names(cls, ("attributes", "parameters"))
    missing = []
    for name, member in cls.members.items():
        if (name.startswith("_") or member.is_alias or getattr(member, "inherited", False)
                or not member.is_attribute or "property" in member.labels):
            continue
        if kind == "fields" and (member.annotation is None or "instance-attribute" not in member.labels):
            continue  # model_config, a ClassVar (griffe labels it a class attribute only): not a field
        if not member.docstring and name not in documented:
            missing.append(name)
    return kind, missing


def _injected_by_pytest(function: Any) -> bool:
    """A test method or a fixture: pytest, not a caller, passes its parameters."""
    return function.name.startswith("test_") or any("fixture" in str(d.value) for d in function.decorators)


def _signature_params(obj: Any) -> list[str]:
    function = obj
    if obj.is_class:
        init = obj.members.get("__init__")
        if init is None or not init.is_function:
            return []
        function = init
    return [p.name for p in function.parameters if p.name not in _EXEMPT_PARAMS]


def _problems(obj: Any, path: str) -> list[str]:
    if obj.is_alias:
        try:
            obj = obj.final_target
        except Exception:  # noqa: BLE001 - an alias to another package (a re-exported framework name)
            target = str(getattr(obj, "target_path", ""))
            if target.split(".")[0] in _OWN_ROOTS:  # ours, yet unreadable: it would be missing from the page
                return [f"{path}: griffe cannot find {target} (define it by a plain assignment)"]
            return []
    if obj.is_attribute or obj.is_module:
        return [] if obj.docstring or obj.is_module else [f"{path}: no docstring"]
    problems: list[str] = []
    documented = _documented_params(obj)
    if documented is None:
        return [f"{path}: no docstring"]
    text = obj.docstring.value if obj.docstring else ""
    fields = _undocumented_fields(obj) if obj.is_class else None
    if fields is not None:
        kind, missing = fields
        if missing:
            problems.append(f"{path}: {kind} not documented (Attributes section, or a docstring of their "
                            f"own): {', '.join(missing)}")
    elif obj.is_function and _injected_by_pytest(obj):
        pass
    elif not any(m.group(1) not in _OWN_ROOTS for m in _SEE_FRAMEWORK.finditer(text)):
        missing = [p for p in _signature_params(obj) if p.lstrip("*") not in documented]
        if missing:
            problems.append(f"{path}: Args section does not document {', '.join(missing)}")
    if obj.is_class:
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias or getattr(member, "inherited", False):
                continue
            if member.is_function or member.is_attribute and "property" in member.labels:
                if not member.docstring:
                    problems.append(f"{path}.{name}: no docstring")
                elif member.is_function and "property" not in member.labels:
                    problems.extend(_problems(member, f"{path}.{name}"))
    return problems


def check_package(package: str, search_path: Path) -> list[str]:
    """The problems of every public name of `package`, read statically from `search_path`.

    Raises:
        ImportError: griffe cannot find the package there.
        griffe.GriffeError: griffe cannot read it.
    """
    import griffe

    module = griffe.load(package, search_paths=[str(search_path)], docstring_parser="google",
                         allow_inspection=False, resolve_aliases=True, resolve_external=False)
    exported = module.members.get("__all__")
    names = [n for n in (module.exports or []) if isinstance(n, str)] if exported or module.exports else []
    names += [n for n in EXTRA_NAMES.get(package, ()) if n not in names]
    problems: list[str] = []
    for name in names:
        member = module.members.get(name)
        if member is not None:
            problems.extend(_problems(member, f"{package}.{name}"))
    return problems


def on_post_build(config: Any, **kwargs: Any) -> None:
    """After the site is built, warn once per public name that is not documented."""
    import griffe

    total = 0
    for package, source in PACKAGES.items():
        try:
            problems = check_package(package, ROOT / source)
        except (ImportError, griffe.GriffeError) as exc:  # griffe names what it could not read
            log.warning("API check: cannot load %s from %s (%s)", package, source, exc)
            continue
        for problem in problems:
            total += 1
            log.warning("API check: %s", problem)
    if total:
        log.info("API check: %d public names lack docstrings or argument descriptions", total)
