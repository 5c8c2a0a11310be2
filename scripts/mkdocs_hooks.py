"""mkdocs hooks: refuse, as warnings (which `mkdocs build --strict` turns into failures), public names
whose docstrings do not say what they do and what they take.

A public name is one listed in a documented package's ``__all__``, and the public methods and
properties of a public class. Each needs a docstring; a function, method or class whose signature
takes parameters needs a Google-style ``Args:`` section naming every one of them (``self``,
``cls``, ``*args``/``**kwargs`` passed through, and parameters of overridden framework methods
documented by the framework are exempt when the docstring says so with "See <framework>").
Reading is static (griffe), so no framework has to be installed.
"""

from __future__ import annotations

import logging
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
_EXEMPT_PARAMS = {"self", "cls"}


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
            return []
    if obj.is_attribute or obj.is_module:
        return [] if obj.docstring or obj.is_module else [f"{path}: no docstring"]
    problems: list[str] = []
    documented = _documented_params(obj)
    if documented is None:
        return [f"{path}: no docstring"]
    text = obj.docstring.value if obj.docstring else ""
    if "See " not in text:  # "See pydantic_ai.AbstractCapability.x": the framework documents its hook
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


def on_post_build(config: Any, **kwargs: Any) -> None:
    """After the site is built, warn once per public name that is not documented."""
    import griffe

    total = 0
    for package, source in PACKAGES.items():
        search = [str(ROOT / source)]
        try:
            module = griffe.load(package, search_paths=search, docstring_parser="google",
                                 allow_inspection=False, resolve_aliases=True, resolve_external=False)
        except (ImportError, griffe.GriffeError) as exc:  # griffe names what it could not read
            log.warning("API check: cannot load %s from %s (%s)", package, source, exc)
            continue
        exported = module.members.get("__all__")
        names = [n for n in (module.exports or []) if isinstance(n, str)] if exported or module.exports else []
        for name in names:
            member = module.members.get(name)
            if member is None:
                continue
            for problem in _problems(member, f"{package}.{name}"):
                total += 1
                log.warning("API check: %s", problem)
    if total:
        log.info("API check: %d public names lack docstrings or argument descriptions", total)
