"""The package's shape: light imports, no import cycles, a pluggable JAX backend.

Everything but the first test reads the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lossmap"
HEAVY = ("matplotlib", "plotly", "jax", "jaxlib", "flax", "optax")

# A model, data and a line of 3 points: what a first scan looks like, without a store.
LIGHT_SCAN = textwrap.dedent("""
    import json, sys

    HEAVY = set(sys.argv[1].split(","))

    def heavy():
        return sorted(n for n in sys.modules if n.split(".")[0] in HEAVY)

    import torch
    from torch import nn

    import lossmap as lm

    after_import = heavy()
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    X, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    surf = lm.scan(model, nn.CrossEntropyLoss(), data={"train": (X, y)},
                   directions=lm.random_direction(model, seed=0), grid=(-1, 1, 3),
                   progress=False)
    print(json.dumps({"after_import": after_import, "after_scan": heavy(),
                      "done": int(surf.done.sum()), "loss": surf["train_loss"].tolist()}))
""")


@pytest.mark.slow  # a fresh interpreter (an end-to-end process)
def test_import_and_a_small_scan_load_no_plotting_library_and_no_jax(tmp_path):
    script = tmp_path / "light.py"
    script.write_text(LIGHT_SCAN)
    proc = subprocess.run(
        [sys.executable, str(script), ",".join(HEAVY)], capture_output=True, text=True,
        timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["done"] == 3 and len(seen["loss"]) == 3  # the scan really ran
    assert seen["after_import"] == [], f"`import lossmap` loads {seen['after_import']}"
    assert seen["after_scan"] == [], f"a small lm.scan loads {seen['after_scan']}"


# -- the import graph, from the source ---------------------------------------------------


def _module_name(path: Path) -> str:
    parts = ["lossmap", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the lossmap module it imports
    line: int

    def __str__(self) -> str:
        path = MODULES[self.source].relative_to(SRC.parent)
        return f"{self.source} -> {self.target} ({path}:{self.line})"


def _resolve(name: str) -> str:
    """The longest prefix of a dotted name that is a lossmap module."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _from(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module of ``from <module> import …`` in ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = ".".join(base[: len(base) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def imports(module: str, source: str | None = None) -> list[Import]:
    """Every import of a lossmap module by ``module``: absolute or relative, at the top,
    inside functions or under ``if TYPE_CHECKING:``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from(node, package)
            # `from x import y`: y may be a submodule of x or a name defined in x
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "lossmap" or name.startswith("lossmap."):
                target = _resolve(name)
                if target != module:
                    found.append(Import(module, target, node.lineno))
    return found


GRAPH = {m: imports(m) for m in MODULES}


def strongly_connected(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components of the import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for edge in graph[v]:
            w = edge.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def a_cycle(graph: dict[str, list[Import]], component: list[str]) -> list[Import]:
    """One import cycle through the first module of a strongly connected component."""
    members, start = set(component), component[0]
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for edge in graph[v]:
            if edge.target == start:
                return [*paths[v], edge]
            if edge.target in members and edge.target not in paths:
                paths[edge.target] = [*paths[v], edge]
                queue.append(edge.target)
    raise AssertionError(f"no cycle through {start}")


def test_the_import_graph_is_read_correctly():
    """What the next tests rely on: every kind of import is seen and resolved to a module."""
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        import numpy
        import lossmap.surface as s
        from .scan import spec
        from . import errors
        from .analysis import slope
        from ..lossmap import nothing  # outside the package: ignored
        from .directions.direction import Direction
        from .scan.api import scan  # a name defined in a module: the module
        if TYPE_CHECKING:
            from .store import Store
        def later():
            from .plot import lines
            from lossmap.jax import model
        """)
    found = {e.target: e.line for e in imports("lossmap.demo", source)}
    assert found == {
        "lossmap.surface": 4, "lossmap.scan.spec": 5, "lossmap.errors": 6,
        "lossmap.analysis.slope": 7, "lossmap.directions.direction": 9, "lossmap.scan.api": 10,
        "lossmap.store": 12, "lossmap.plot.lines": 14, "lossmap.jax.model": 15,
    }
    # relative to a package's __init__, and two levels up
    assert {e.target for e in imports("lossmap.analysis", "from .slope import x")} == {
        "lossmap.analysis.slope"}
    assert {e.target for e in imports("lossmap.analysis.slope", "from ..version import v")} == {
        "lossmap.version"}
    assert {e.target for e in imports("lossmap.analysis.slope", "from .. import errors")} == {
        "lossmap.errors"}
    assert {e.target for e in imports("lossmap.surface", "from . import __version__")} == {
        "lossmap"}
    targets = {m: {e.target for e in edges} for m, edges in GRAPH.items()}
    assert "lossmap.scan.api" in targets["lossmap"]  # `from .scan import scan` in __init__


def test_the_cycle_finder_finds_cycles():
    graph = {
        "a": [Import("a", "b", 1)],
        "b": [Import("b", "c", 2), Import("b", "d", 3)],
        "c": [Import("c", "a", 4)],
        "d": [],
    }
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d"]]
    assert [(e.source, e.target) for e in a_cycle(graph, ["a", "b", "c"])] == [
        ("a", "b"), ("b", "c"), ("c", "a")]


def test_no_import_cycles():
    cycles = [a_cycle(GRAPH, c) for c in strongly_connected(GRAPH) if len(c) > 1]
    report = "\n\n".join("\n".join(str(e) for e in cycle) for cycle in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s):\n{report}"


def test_the_core_never_imports_the_jax_backend_by_module():
    """Only ``lossmap/jax/`` and ``lossmap/backends/jax/`` import JAX code; the registry
    finds the backend by name at run time (importlib), which is no import statement. The one
    application on top of both backends, ``lossmap demo``, imports the Flax CNN and its trainer for
    ``--backend jax`` (inside that branch): it is a user of the backends, not the core."""
    allowed = {"lossmap.backends.registry", "lossmap.demo"}

    def jax_side(name: str) -> bool:
        sides = ("lossmap.jax", "lossmap.backends.jax")
        return any(name == p or name.startswith(p + ".") for p in sides)

    offenders = [
        str(e) for m, edges in GRAPH.items() for e in edges
        if not jax_side(m) and m not in allowed and jax_side(e.target)
    ]
    assert not offenders, "modules outside lossmap/jax/ import it:\n" + "\n".join(offenders)


# -- private names stay inside their package ---------------------------------------------


def _package_of(module: str) -> str:
    """The package a module belongs to: itself for a package's ``__init__``."""
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(module: str, source: str | None = None) -> list[str]:
    """``from M import _name`` (or ``M._name`` of an imported module M) in ``module``, where M
    is a lossmap module in another package.

    Dunder names (``__version__``) are public; a public name bound to a private
    alias (``import x as _x``) is fine; so is anything from the same package.
    """
    source = MODULES[module].read_text(encoding="utf-8") if source is None else source
    here = _package_of(module)
    where = MODULES[module].relative_to(SRC.parent)
    tree = ast.parse(source)
    found = []
    foreign: dict[str, str] = {}  # local name -> a lossmap module of another package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in MODULES and _package_of(alias.name) != here:
                    foreign[alias.asname] = alias.name
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        base = _from(node, here)
        if not (base == "lossmap" or base.startswith("lossmap.")):
            continue
        for alias in node.names:
            target = _resolve(f"{base}.{alias.name}")  # a submodule, or a name in `base`
            if target == f"{base}.{alias.name}" and _package_of(target) != here:
                foreign[alias.asname or alias.name] = target
            if _private(alias.name) and _package_of(target) != here:
                found.append(f"{module} imports {alias.name} from {base} ({where}:{node.lineno})")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in foreign and _private(node.attr)):
            found.append(f"{module} uses {foreign[node.value.id]}.{node.attr} "
                         f"({where}:{node.lineno})")
    return found


def test_the_private_import_finder_finds_them():
    source = textwrap.dedent("""
        from __future__ import annotations
        from ..train.files import _write_atomic, RUN_FILES
        from .common import _check_surface
        from .. import __version__
        from ..scan.pathspec import plain as _plain
        from lossmap.plot.interactive import _TOPOJSON_CDN
        from numpy import _private_of_numpy
        import numpy as np
        from . import common
        def later():
            from ..plot import interactive as web
            from ..plot import between as _b
            return web._TOPOJSON_LOCAL, web.to_html, common._values, np._NoValue, __name__
        """)
    found = private_imports("lossmap.analysis.slope", source)
    assert found == [
        "lossmap.analysis.slope imports _write_atomic from lossmap.train.files "
        "(lossmap/analysis/slope.py:3)",
        "lossmap.analysis.slope imports _TOPOJSON_CDN from lossmap.plot.interactive "
        "(lossmap/analysis/slope.py:7)",
        "lossmap.analysis.slope uses lossmap.plot.interactive._TOPOJSON_LOCAL "
        "(lossmap/analysis/slope.py:14)",
    ]
    # a package's __init__ belongs to that package: its modules' private names are its own
    assert private_imports("lossmap.analysis", "from .common import _values") == []
    assert private_imports("lossmap.analysis", "from ..surface import _x") == [
        "lossmap.analysis imports _x from lossmap.surface (lossmap/analysis/__init__.py:1)"]


def test_no_private_name_is_imported_from_another_package():
    """A ``_name`` is its package's own business; what another package needs gets a public
    name (and a home where both can import it)."""
    offenders = [line for m in MODULES for line in private_imports(m)]
    assert not offenders, (
        f"{len(offenders)} private name(s) imported across packages:\n" + "\n".join(offenders)
    )
