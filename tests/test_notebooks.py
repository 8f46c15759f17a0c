"""The example notebooks run top to bottom, and a Surface shows itself in Jupyter.

Each notebook in ``examples/`` is executed with ``nbclient`` on an IPython
kernel of this very interpreter (the ``notebooks`` extra installs ``ipykernel``
next to lossmap), so they never rot; each test also checks a value the
notebook prints. ``Surface._repr_html_`` is tested directly (fast).
"""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from lossmap.scan.spec import ScanSpec
from lossmap.surface import Surface

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = ("your_model", "original_example", "transformer", "comparing_minima",
             "language_model")


# -- the notebooks ---------------------------------------------------------------------


def _kernel(folder: Path) -> AsyncKernelManager:
    """A kernel manager for ipykernel on ``sys.executable``, whatever kernels are installed.

    An empty ``kernel_dirs`` hides every installed kernelspec (a user's own
    ``python3`` could point at another interpreter); what is left is
    ipykernel's native kernel, which jupyter_client launches with the running
    interpreter. Nothing is installed or registered; the connection file goes
    in ``folder``.
    """
    specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
    km = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=specs,
        connection_file=str(folder / "kernel.json"),
    )
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


def run_notebook(name: str, cwd: Path) -> str:
    """Execute ``examples/<name>.ipynb`` in ``cwd``; return the text of every output."""
    path = EXAMPLES / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs: strip them"
    )
    client = NotebookClient(
        nb, km=_kernel(cwd), timeout=300, resources={"metadata": {"path": str(cwd)}}
    )
    # One torch thread, as tests/conftest.py's `one_thread`: these models are tiny, and on
    # a busy 2-core machine a second thread made training 5x slower. IPython's profile
    # goes in cwd, not in the home folder.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "IPYTHONDIR": str(cwd / "ipython"),
    }
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: {out.ename}: {out.evalue}"
            if out.output_type == "stream":
                # a warning on import (tqdm without ipywidgets, a config check…) is a defect
                assert out.name == "stdout", f"{path.name} wrote to stderr: {out.text}"
                texts.append(out.text)
            elif "text/plain" in out.get("data", {}):
                texts.append(out.data["text/plain"])
            if "text/html" in out.get("data", {}):
                texts.append(out.data["text/html"])
    return "\n".join(texts)


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in the notebook's output:\n{text[:3000]}"
    return float(found.group(1))


@pytest.mark.slow
def test_your_model_notebook(tmp_path):
    text = run_notebook("your_model", tmp_path)
    assert "train_loss (11, 11)" in text
    centre = _number(r"train loss at the centre (\d+\.\d+)", text)
    minimum = _number(r"grid minimum (\d+\.\d+)", text)
    assert 0 < minimum <= centre < np.log(10)  # trained: below chance, and a grid minimum
    assert "lossmap Surface" in text and "121/121 points, complete" in text  # _repr_html_


@pytest.mark.slow
def test_original_example_notebook(tmp_path):
    text = run_notebook("original_example", tmp_path)
    assert "3658 parameters" in text
    assert "{'θ0': (9, 9), 'θ̂': (9, 9)}" in text
    assert _number(r"test accuracy (\d\.\d+)", text) > 0.5  # it learned something
    assert text.count('<img src="data:image/png;base64,') == 1  # the last cell's Surface


@pytest.mark.slow
def test_transformer_notebook(tmp_path):
    text = run_notebook("transformer", tmp_path)
    assert "input_ids (64, 16)" in text
    # an untrained GPT-2 on random tokens predicts about uniformly: ln 100 = 4.605
    assert abs(_number(r"loss at the centre (\d+\.\d+)", text) - np.log(100)) < 0.3
    assert "11/11 points, complete" in text


@pytest.mark.slow
def test_comparing_minima_notebook(tmp_path):
    text = run_notebook("comparing_minima", tmp_path)
    barrier = _number(r"barrier (\d+\.\d+) at α", text)
    verdict = re.search(r"^train_loss: .*$", text, re.MULTILINE)
    assert verdict, text[:3000]
    # the verdict agrees with the printed barrier
    assert ("no barrier" in verdict.group(0)) == (barrier == 0.0), verdict.group(0)
    assert "'b': (1.0, 0.0)" in text and "81/81 points, complete" in text


@pytest.mark.slow
def test_language_model_notebook(tmp_path):
    import shutil

    shutil.copy(EXAMPLES / "language_model.py", tmp_path)  # the notebook imports it
    text = run_notebook("language_model", tmp_path)
    rows = dict(re.findall(r"^(\w+)\s+apache [\d.]+  zen ([\d.]+)", text, re.MULTILINE))
    assert float(rows["zen"]) < float(rows["base"])  # the Zen fine-tune learned the Zen
    centre = _number(r"Zen text: L\(0\) = (\d+\.\d+)", text)
    assert abs(centre - float(rows["zen"])) <= 5e-4  # the model's own loss (printed to 3 places)
    assert _number(r"± (\d+\.\d+) \(s\.e\.", text) > 0
    assert "'pattern': '*lora_*'" in text or "*lora_*" in text
    assert "zen_loss ->" in text and "report.html True" in text


# -- Surface._repr_html_ -----------------------------------------------------------------


def _surface(grid, done=None, **spec_kw) -> Surface:
    spec = ScanSpec(grid=grid, splits=("train", "test"), metrics=("loss", "accuracy"), **spec_kw)
    mesh = np.meshgrid(*spec.coords(), indexing="ij")
    loss = 1.0 + sum((m - 0.2) ** 2 for m in mesh)  # minimum at 0.2 along each axis
    values = {v: loss + i for i, v in enumerate(spec.variables)}
    done = np.ones(spec.shape, bool) if done is None else done
    values = {k: np.where(done, v, np.nan) for k, v in values.items()}
    return Surface(spec, values, done)


def _png(html: str) -> bytes:
    found = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert found, html[:2000]
    return base64.b64decode(found.group(1))


def test_repr_html_of_a_line_shows_spec_progress_values_and_a_picture():
    surf = _surface(((-1, 1, 11),), directions=({"kind": "random", "norm": "filter"},), samples=512)
    html = surf._repr_html_()
    assert "-1:1:11" in html and "11/11 points, complete" in html
    assert "train, test" in html and "loss, accuracy" in html and "512 per split" in html
    assert "random (filter)" in html
    # the centre value (α = 0: 1 + 0.2²) and the grid minimum (α = 0.2: exactly 1)
    assert 'train_loss at the centre</th><td style="text-align:left">1.04<' in html
    assert "1 at α=0.2" in html
    png = _png(html)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (288, 216)  # 4 x 3 inches at 72 dpi
    assert "Surface(line -1:1:11, complete" in repr(surf)  # the plain repr is kept


def test_repr_html_of_a_partial_plane_says_so():
    done = np.zeros((9, 5), bool)
    done[::2, ::2] = True  # 15 of 45 points, the centre (4, 2) among them
    html = _surface(((-1, 1, 9), (-1, 1, 5)), done)._repr_html_()
    assert "-1:1:9 x -1:1:5" in html and "15/45 points, partial" in html
    assert "interpolated from 15/45 points" in html
    assert _png(html).startswith(b"\x89PNG")
    nothing = _surface(((-1, 1, 9), (-1, 1, 5)), np.zeros((9, 5), bool))._repr_html_()
    assert "0/45 points, partial" in nothing and "no finished point yet" in nothing
    assert "<img" not in nothing and "not finished yet" in nothing


def test_repr_html_escapes_everything_the_user_gave():
    hostile = "<script>alert(1)</script>"
    surf = _surface(
        ((-1, 1, 5),), directions=({"kind": hostile, "norm": "<b>n</b>"},), loss="<i>ce</i>"
    )
    # split names are identifiers in a spec; a Surface built around that check still escapes
    object.__setattr__(surf.spec, "splits", ('x"><img src=q onerror=alert(2)>',))
    surf = Surface(
        surf.spec,
        surf.values,
        surf.done,
        path="<u>store</u>",
        meta={"note": hostile, "<key>": "&amp;"},
    )
    html = surf._repr_html_()
    for raw in ("<script", "<b>n", "<i>ce", "<img src=q", "<u>store", "<key>"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x&quot;&gt;&lt;img src=q onerror=alert(2)&gt;" in html
    assert "&amp;amp;" in html  # an entity in a value is shown, not interpreted


def test_repr_html_leaves_pyplot_alone():
    """The picture is drawn on a bare Figure: no pyplot figure is opened (a notebook's
    inline backend would show it a second time)."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    _surface(((-1, 1, 5), (-1, 1, 5)))._repr_html_()
    assert plt.get_fignums() == before
