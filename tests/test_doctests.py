"""Every example in the package's docstrings runs and prints what it says.

``WITH_EXAMPLES`` is written out, not computed: a module whose examples were
deleted fails ``test_docstring_examples`` (nothing attempted), and a module that
gains examples fails ``test_every_module_with_examples_is_listed`` until it is
listed (and so run). Every public function and class (the ``__all__`` of
``lossmap`` and of its subpackages) has a runnable example in its own
docstring, except those in ``NO_EXAMPLES_YET``, a list that may only shrink.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SRC = Path(__file__).resolve().parents[1] / "src" / "lossmap"

#: Modules whose docstrings hold at least one example that runs (not all ``+SKIP``).
WITH_EXAMPLES = [
    "lossmap",
    "lossmap.align.api",
    "lossmap.analysis.barriers",
    "lossmap.analysis.convexity",
    "lossmap.analysis.evidence",
    "lossmap.analysis.flat",
    "lossmap.analysis.geometry",
    "lossmap.analysis.minima",
    "lossmap.analysis.render",
    "lossmap.analysis.samples",
    "lossmap.analysis.sharpness",
    "lossmap.analysis.slope",
    "lossmap.analysis.summary",
    "lossmap.analysis.uncertainty",
    "lossmap.callbacks.index",
    "lossmap.callbacks.recorder",
    "lossmap.callbacks.sharpness",
    "lossmap.callbacks.topeig",
    "lossmap.curvature.api",
    "lossmap.curvature.blocks",
    "lossmap.curvature.estimators",
    "lossmap.curvature.operator",
    "lossmap.curvature.spectrum",
    "lossmap.cli.directions",
    "lossmap.cli.entry",
    "lossmap.cli.import_li",
    "lossmap.cli.options",
    "lossmap.cli.outputs",
    "lossmap.checks",
    "lossmap.scan.options",
    "lossmap.scan.axis",
    "lossmap.cli.plot",
    "lossmap.cli.compare",
    "lossmap.cli.report",
    "lossmap.cli.specfile",
    "lossmap.compare.api",
    "lossmap.compare.rule",
    "lossmap.compare.scale",
    "lossmap.compare.table",
    "lossmap.draws.compare",
    "lossmap.draws.figures",
    "lossmap.draws.spread",
    "lossmap.curves.curve",
    "lossmap.curves.fit",
    "lossmap.curves.neb",
    "lossmap.data.splits",
    "lossmap.data.batches",
    "lossmap.backends.torch.attention",
    "lossmap.backends.torch.inplace",
    "lossmap.backends.torch.metrics",
    "lossmap.demo",
    "lossmap.directions.between",
    "lossmap.directions.direction",
    "lossmap.directions.random",
    "lossmap.directions.recipe",
    "lossmap.directions.result",
    "lossmap.directions.subset",
    "lossmap.directions.units",
    "lossmap.files",
    "lossmap.backends.torch.persample",
    "lossmap.backends.torch.roundoff",
    "lossmap.backends.torch.sizing",
    "lossmap.backends.torch.slopes",
    "lossmap.hessian.eigen",
    "lossmap.hessian.spectral",
    "lossmap.interop.li2018",
    "lossmap.interop.li2018_layout",
    "lossmap.jax",
    "lossmap.jax.cnn",
    "lossmap.jax.convert",
    "lossmap.backends.jax.metrics",
    "lossmap.jax.model",
    "lossmap.backends.jax.slopes",
    "lossmap.jax.train",
    "lossmap.metrics",
    "lossmap.metrics.classification",
    "lossmap.metrics.model",
    "lossmap.metrics.outputs",
    "lossmap.metrics.perplexities",
    "lossmap.metrics.tokens",
    "lossmap.models.cnn",
    "lossmap.models.init",
    "lossmap.scan.draws",
    "lossmap.scan.path",
    "lossmap.scan.pathspec",
    "lossmap.scan.design",
    "lossmap.scan.estimate",
    "lossmap.scan.plan",
    "lossmap.store.database",
    "lossmap.store.files",
    "lossmap.surface",
    "lossmap.plot",
    "lossmap.plot.animate",
    "lossmap.plot.animate_mpl",
    "lossmap.plot.between",
    "lossmap.plot.eos",
    "lossmap.plot.extra",
    "lossmap.plot.lines",
    "lossmap.plot.paths",
    "lossmap.plot.thumbnail",
    "lossmap.plot.vtk",
    "lossmap.report.between",
    "lossmap.report.template",
    "lossmap.scan.api",
    "lossmap.seeding",
    "lossmap.sharpness.api",
    "lossmap.sharpness.ascent",
    "lossmap.sharpness.landscape",
    "lossmap.stats",
    "lossmap.backends.sharded",
    "lossmap.scan.spec",
    "lossmap.train.trainer",
    "lossmap.topology.api",
    "lossmap.topology.graph",
    "lossmap.topology.merge",
    "lossmap.topology.result",
    "lossmap.plot.topology",
    "lossmap.plot.topology3d",
]

#: Public functions and classes (by where they are defined) without a runnable example
#: yet. Add examples and remove names from here; never add a name.
NO_EXAMPLES_YET = frozenset({
    "lossmap.analysis.geometry.convexity_map",
    "lossmap.analysis.summary.analyse",
    "lossmap.cli.main.main",
    "lossmap.data.digits.digits",
    "lossmap.data.fetch.download",
    "lossmap.data.idx.read_idx",
    "lossmap.data.load",
    "lossmap.data.sources.cache_dir",
    "lossmap.data.sources.fashion_mnist",
    "lossmap.data.sources.find_files",
    "lossmap.data.sources.mnist",
    "lossmap.directions.direction.as_direction",
    "lossmap.directions.random.check_ignore",
    "lossmap.directions.random.check_norm",
    "lossmap.directions.trajectory.fitted_grid",
    "lossmap.directions.trajectory.pca_directions",
    "lossmap.directions.trajectory.project",
    "lossmap.jax.cnn.CNN",
    "lossmap.jax.cnn.digits_cnn",
    "lossmap.jax.cnn.fashion_cnn",
    "lossmap.jax.cnn.to_nhwc",
    "lossmap.jax.convert.direction_to_flax",
    "lossmap.jax.convert.direction_to_torch",
    "lossmap.jax.convert.flatten_variables",
    "lossmap.jax.convert.flax_to_torch",
    "lossmap.jax.convert.unflatten_variables",
    "lossmap.backends.jax.metrics.accuracy",
    "lossmap.backends.jax.metrics.cross_entropy",
    "lossmap.backends.jax.metrics.mse",
    "lossmap.jax.model.as_model",
    "lossmap.jax.model.is_jax_model",
    "lossmap.jax.train.load_variables",
    "lossmap.jax.train.save_variables",
    "lossmap.models.cnn.digits_cnn",
    "lossmap.models.cnn.mlp",
    "lossmap.models.count_parameters",
    "lossmap.models.resnet.resnet20",
    "lossmap.scan.plan.Plan",
    "lossmap.plot.extra.plot_convexity_map",
    "lossmap.plot.extra.plot_density",
    "lossmap.plot.extra.plot_gradient",
    "lossmap.plot.figures.figure_lines",
    "lossmap.plot.figures.figure_planes",
    "lossmap.plot.figures.save",
    "lossmap.plot.interactive.contour_figure",
    "lossmap.plot.interactive.line_figure",
    "lossmap.plot.interactive.surface_figure",
    "lossmap.plot.interactive.to_html",
    "lossmap.plot.lines.plot_history",
    "lossmap.plot.paths.plot_annotations",
    "lossmap.plot.paths.plot_barrier",
    "lossmap.plot.paths.plot_models",
    "lossmap.plot.planes.plot_contour",
    "lossmap.plot.planes.plot_contourf",
    "lossmap.plot.planes.plot_heatmap",
    "lossmap.plot.surface3d.plot_surface3d",
    "lossmap.report.page.write_report",
    "lossmap.scan.spec.ScanSpec",
    "lossmap.surface.Surface",
    "lossmap.surface.load",
    "lossmap.train.result.TrainResult",
    "lossmap.train.result.load_run",
})


def _path(module: str) -> Path:
    """The source file of a ``lossmap`` module, found without importing it."""
    base = SRC.joinpath(*module.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _all_modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = ["lossmap", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _runs(examples: list[doctest.Example]) -> bool:
    return any(not e.options.get(doctest.SKIP) for e in examples)


def _has_examples(module: str) -> bool:
    """Whether any docstring in the module's source holds an example that runs."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    parser = doctest.DocTestParser()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and _runs(parser.get_examples(doc)):
                return True
    return False


def _jax(name: str):
    """``name`` as a parameter, marked ``jax`` where importing it imports JAX."""
    return pytest.param(name, marks=pytest.mark.jax) if name.startswith("lossmap.jax") else name


def test_every_module_with_examples_is_listed():
    found = {m for m in _all_modules() if _has_examples(m)}
    assert found == set(WITH_EXAMPLES), (
        f"modules with examples not in WITH_EXAMPLES (so never run): "
        f"{sorted(found - set(WITH_EXAMPLES))}; listed modules without examples that run: "
        f"{sorted(set(WITH_EXAMPLES) - found)}"
    )


@pytest.mark.parametrize("name", [_jax(n) for n in WITH_EXAMPLES])
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples that run: were they deleted?"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def _declares_all(module: str) -> bool:
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                 for t in n.targets) for n in tree.body)


PACKAGES = [m for m in _all_modules() if _path(m).name == "__init__.py" and _declares_all(m)]


@pytest.mark.parametrize("package", [_jax(p) for p in PACKAGES])
def test_public_names_have_examples_that_run(package):
    """Each function and class in ``__all__`` (exceptions aside) has an Examples section with an
    example that runs, in its own docstring, and ``test_docstring_examples`` runs it."""
    module = importlib.import_module(package)
    finder = doctest.DocTestFinder()
    missing, stale, checked = [], [], 0
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue
        checked += 1
        where = obj.__module__
        assert where.split(".")[0] == "lossmap", f"{package}.{name} is defined in {where}"
        qualname = f"{where}.{obj.__qualname__}"
        tests = {t.name: t for t in finder.find(importlib.import_module(where))}
        has = (
            "Examples\n--------" in (inspect.getdoc(obj) or "")
            and qualname in tests
            and _runs(tests[qualname].examples)
            and where in WITH_EXAMPLES
        )
        if not has and qualname not in NO_EXAMPLES_YET:
            missing.append(f"{package}.{name} ({qualname})")
        if has and qualname in NO_EXAMPLES_YET:
            stale.append(qualname)
    assert checked > 0, f"{package}.__all__ exports no function or class"
    assert not missing, f"public names without an Examples section that runs: {missing}"
    assert not stale, f"these have examples now: remove them from NO_EXAMPLES_YET: {stale}"


def test_names_waiting_for_examples_still_exist():
    """``NO_EXAMPLES_YET`` names only real top-level definitions (read from the source)."""
    gone = []
    for qualname in sorted(NO_EXAMPLES_YET):
        module, name = qualname.rsplit(".", 1)
        path = _path(module)
        tree = ast.parse(path.read_text(encoding="utf-8")) if path.exists() else ast.Module([], [])
        if name not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}:
            gone.append(qualname)
    assert not gone, f"no such definitions: remove or rename them in NO_EXAMPLES_YET: {gone}"
