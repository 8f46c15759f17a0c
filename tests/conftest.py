"""Fixtures and markers shared by lossmap's tests.

Markers (registered in ``pyproject.toml``; ``--strict-markers`` is on):

- ``slow``: end-to-end tests of several seconds or more;
- ``browser``: needs Chromium and playwright;
- ``jax``: imports JAX/Flax (the ``jax`` extra);
- ``hf``: builds ``transformers``/``peft`` models (the ``hf`` extra);
- ``data``: needs the Fashion-MNIST files in ``/usr/share/datasets/fashion-mnist``;
- ``gpu``: needs CUDA (``tests/test_cuda_paths.py``). ``make test`` deselects
  them where no GPU exists (``-m "not gpu"``); ``benchmarks/gpu.sh`` runs them
  (``pytest -m gpu``). Run by hand without CUDA, they are skipped and say why.

``make test`` runs everything the machine can run (all but ``gpu`` without CUDA);
``make test-fast`` runs the unit tests, leaving out ``slow``, ``browser``, ``jax``,
``hf``, ``data`` and ``gpu``.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` runs one pytest-xdist worker per core: one torch thread each, rather
        # than two per worker competing for the same cores.
        torch.set_num_threads(1)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m "… not jax …"`` (``make test-fast``) the JAX-only modules ``test_jax_*.py``
    are not even imported: importing JAX and Flax alone takes seconds."""
    if collection_path.name.startswith("test_jax_") and re.search(
        r"\bnot jax\b", config.getoption("markexpr") or ""
    ):
        return True
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run on one torch thread, restoring the count afterwards.

    Tiny models run fastest on one thread (on a busy machine idle threads
    spin), and training is bit-identical only for a fixed thread count. A test
    file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def documented_parameters(fn: Callable) -> set[str]:
    """Parameter names of ``fn``'s numpydoc Parameters section (``**kw`` as ``kw``)."""
    doc = inspect.getdoc(fn) or ""
    assert "Parameters\n----------\n" in doc, f"{fn.__qualname__} has no Parameters section"
    section = doc.split("Parameters\n----------\n", 1)[1]
    section = re.split(r"\n\n(?:Returns|Yields|Raises|Notes|Examples|See Also)\n---", section)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line and not line.startswith(" "):
            names |= {n.lstrip("*") for n in re.split(r",\s*", line.split(" : ")[0].strip())}
    return names


def _assert_docstring_matches_signature(fn: Callable) -> None:
    documented = documented_parameters(fn)
    actual = set(inspect.signature(fn).parameters)
    assert documented == actual, (
        f"{fn.__qualname__}: documented but not parameters: {sorted(documented - actual)}; "
        f"parameters not documented: {sorted(actual - documented)}"
    )


@pytest.fixture
def assert_docstring_matches_signature() -> Callable[[Callable], None]:
    """``check(fn)``: the Parameters section of ``fn``'s docstring names exactly its parameters."""
    return _assert_docstring_matches_signature


@pytest.fixture
def close_figures() -> Iterator[None]:
    """Close every matplotlib figure after the test.

    A plotting test file opts in with
    ``pytestmark = pytest.mark.usefixtures("close_figures")``.
    """
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
