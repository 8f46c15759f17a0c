"""Every example in the package's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import matplotlib
import pytest

import lossmap

matplotlib.use("Agg")

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(lossmap.__path__, prefix="lossmap.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
