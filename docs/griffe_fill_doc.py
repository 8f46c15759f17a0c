"""Griffe extensions that make lossmap's numpydoc docstrings read well on the site.

- :class:`FillDoc`: some plotting functions share numpydoc entries; their
  source docstring holds a line ``{plane_params}`` that the decorator
  ``@fill_doc(...)`` (``lossmap.plot.common``) replaces at import time. Griffe
  reads the source, so it would see the placeholder; this takes those
  functions' docstrings from the imported objects, exactly what ``help()`` shows.
- :class:`SphinxRoles`: the docstrings cross-reference in Sphinx's way,
  ``:func:`lossmap.scan.api``` or ``:mod:`.direction```. Markdown would show the
  role literally; this turns each into inline code that links to the object's
  API entry when the site has one (an *optional* autorefs link: a target the
  site does not document stays plain code, and is no error). A line ending in
  ``::`` (reST's literal block) ends in ``:``.

Both are loaded through ``mkdocs.yml`` (mkdocstrings ``extensions``). Nothing in
``src/`` changes.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(mod|func|class|meth|attr|data|exc|obj|const):`([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.M)


class FillDoc(griffe.Extension):
    """Replace the docstring of each ``@fill_doc``-decorated function by its runtime one."""

    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        if func.docstring is None or not any(
            "fill_doc" in str(d.value) for d in func.decorators
        ):
            return
        module = importlib.import_module(func.module.path)
        doc = getattr(getattr(module, func.name, None), "__doc__", None)
        if not doc:
            raise RuntimeError(f"{func.path}: no runtime docstring to replace the template")
        func.docstring.value = inspect.cleandoc(doc)


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path ``target`` names where ``obj``'s docstring uses it (best effort)."""
    if target.startswith(obj.package.path + "."):
        return target
    name = target.lstrip(".")
    first, _, rest = name.partition(".")
    try:
        path = obj.resolve(first)
    except (griffe.NameResolutionError, AttributeError):
        if not target.startswith("."):
            return target  # another library's name, or one no scope holds: as written
        module = obj if isinstance(obj, griffe.Module) else obj.module
        base = module.path if module.is_init_module else module.parent.path  # its package
        path = f"{base}.{first}"
    return f"{path}.{rest}" if rest else path


def _convert(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match) -> str:
        role, body = match.group(1), match.group(2).strip()
        title, _, explicit = body.partition("<")
        if explicit:  # "title <target>"
            target, shown = explicit.rstrip(">").strip(), title.strip()
        else:
            target = body.lstrip("~!")
            shown = target.rsplit(".", 1)[-1] if body.startswith("~") else target.lstrip(".")
            if role in ("func", "meth"):
                shown += "()"
        return (f'<autoref identifier="{_resolve(obj, target)}" optional>'
                f"<code>{shown}</code></autoref>")

    return _LITERAL_BLOCK.sub(":", _ROLE.sub(link, text))


class SphinxRoles(griffe.Extension):
    """Sphinx cross-reference roles as links to the API pages; ``::`` as ``:``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
