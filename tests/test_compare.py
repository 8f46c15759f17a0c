"""lm.compare and `lossmap compare`: one colour scale, shared levels and ranges, refusals, table.

The colours are read back from the rendered pixels (the Agg canvas that
writes the PNG) at points where each panel's analytic value is known, and
compared across panels and with the colour the scale says a value gets.
"""

from __future__ import annotations

import dataclasses
import json
import re

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

import lossmap as lm
from cli_run import run_cli
from helpers import surface
from lossmap.analysis.finding import Finding
from lossmap.compare import check_same_rule, compare
from lossmap.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread
AXES = [(-1.0, 1.0, 41), (-1.0, 1.0, 41)]

# Three bowls: their values at (r, 0) are known, so each panel has a point of any value.
MODELS = {
    "flat": (0.1, 1.0),  # L = c + k (α² + β²)
    "sharp": (0.1, 3.0),
    "high": (0.6, 1.5),
}


def _bowl(c: float, k: float, dirs: list[dict] | None = None) -> lm.Surface:
    s = surface(
        AXES,
        {
            "train_loss": lambda a, b: c + k * (a**2 + b**2),
            "test_loss": lambda a, b: c + 0.05 + k * (a**2 + b**2),
        },
    )
    if dirs is not None:
        s = dataclasses.replace(s, spec=dataclasses.replace(s.spec, directions=tuple(dirs)))
    return s


def _where(
    c: float, k: float, v: float, levels: np.ndarray | None = None, drawn=None
) -> tuple[float, float] | None:
    """A point (α, 0) where c + k α² = v, inside the grid (None if there is none).

    With ``levels``: None also where the values within half a grid step of the
    point cross a level (the grid's piecewise-linear contours may put the edge
    there), or where the point is under the centre's star.
    """
    if v < c or (v - c) / k > 0.9**2:
        return None
    a = float(np.sqrt((v - c) / k))
    if levels is not None:
        near = drawn(c + k * np.array([a - 0.025, a + 0.025]) ** 2)
        if a < 0.15 or len(set(np.searchsorted(levels, near))) > 1:
            return None
    return a, 0.0


def _pixels(fig) -> np.ndarray:
    """The figure's rendered RGBA (0..1), rows from the top, as the PNG holds them."""
    fig.set_dpi(100)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.float64) / 255.0


def _colour_at(fig, rgba: np.ndarray, ax, x: float, y: float) -> np.ndarray:
    px, py = ax.transData.transform((x, y))
    return rgba[round(float(rgba.shape[0] - py)), round(float(px))]


def _panels(fig, n: int) -> list:
    """The first row's n model panels (colour bars left out), in order."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:n]


@pytest.mark.parametrize("log", [False, True])
def test_equal_values_equal_colours_in_every_panel(log):
    names = list(MODELS)
    r = compare([_bowl(*MODELS[n]) for n in names], names=names, levels=20, log=log)
    scale, fig = r.scale, r.figure
    rgba = _pixels(fig)
    axes = _panels(fig, 3)
    assert [ax.get_title() for ax in axes] == names
    checked = 0
    for lo, hi in zip(scale.levels[:-1], scale.levels[1:], strict=True):
        mid_drawn = np.sqrt(lo * hi) if log else 0.5 * (lo + hi)  # mid of the band as drawn
        v = mid_drawn + scale.vmin - scale.floor if log else mid_drawn
        seen = []
        for ax, n in zip(axes, names, strict=True):
            at = _where(*MODELS[n], v, scale.levels, scale.drawn)
            if at is not None:
                seen.append(_colour_at(fig, rgba, ax, *at))
        if len(seen) < 2:
            continue
        want = np.asarray(scale.band_colour(v))
        for got in seen:  # every panel shows the value in one colour: the scale's
            np.testing.assert_allclose(got, want, atol=2.5 / 255)
        checked += 1
    assert checked >= 4  # several values, each seen in two or three panels


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_independent_scales_would_fail_the_colour_check():
    """The check above can fail: each panel on its own scale gives one value two colours."""
    v = 0.8
    colours = []
    for n in ("flat", "sharp"):
        r = compare(
            [_bowl(*MODELS[n]), _bowl(*MODELS["high"])],
            names=[n, "high"],
            levels=12,
            difference=False,
        )
        ax = _panels(r.figure, 1)[0]
        colours.append(_colour_at(r.figure, _pixels(r.figure), ax, *_where(*MODELS[n], v)))
    assert np.abs(colours[0] - colours[1]).max() > 10 / 255


def test_panels_share_levels_norm_and_ranges_from_the_artists():
    names = list(MODELS)
    r = compare({n: _bowl(*MODELS[n]) for n in names}, levels=9)
    axes = _panels(r.figure, 3)
    sets = [next(c for c in ax.get_children() if hasattr(c, "levels")) for ax in axes]
    for cs, ax in zip(sets, axes, strict=True):
        np.testing.assert_array_equal(cs.levels, r.scale.levels)
        assert (cs.norm.vmin, cs.norm.vmax) == (r.scale.levels[0], r.scale.levels[-1])
        assert cs.cmap.name == "viridis"
        assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-1.0, 1.0)
    # the scale spans every model: the lowest value of all and the highest of all (analytic)
    assert r.scale.vmin == pytest.approx(0.1) and r.scale.vmax == pytest.approx(0.1 + 3.0 * 2)
    np.testing.assert_allclose(r.scale.levels, np.linspace(0.1, 6.1, 9))


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_difference_maps_share_one_symmetric_scale():
    names = list(MODELS)
    r = compare([_bowl(*MODELS[n]) for n in names], names=names)
    # sharp − flat = 2 (α² + β²) reaches 4 at the corners; high − flat = 0.5 + 0.5 (α² + β²) ≤ 1.5
    assert r.scale.diff_limit == pytest.approx(4.0)
    diffs = [ax for ax in r.figure.axes if " − flat" in ax.get_title()]
    assert [ax.get_title() for ax in diffs] == ["sharp − flat", "high − flat"]
    for ax in diffs:
        cs = next(c for c in ax.get_children() if hasattr(c, "levels"))
        assert (cs.norm.vmin, cs.norm.vmax) == pytest.approx((-4.0, 4.0))
        np.testing.assert_allclose(cs.levels, r.scale.diff_levels)
    rgba = _pixels(r.figure)
    # sharp − flat = 2 α² on β = 0: at the middle of the band holding 1, the map's colour there
    lv = r.scale.diff_levels
    i = int(np.searchsorted(lv, 1.0, side="right")) - 1
    mid = 0.5 * (lv[i] + lv[i + 1])
    got = _colour_at(r.figure, rgba, diffs[0], float(np.sqrt(mid / 2)), 0.0)
    want = matplotlib.colormaps["RdBu_r"](r.scale.diff_norm()(mid))
    np.testing.assert_allclose(got, want, atol=2.5 / 255)


def test_lines_share_one_y_range_and_log_draws_loss_above_the_minimum():
    a = surface([(-1, 1, 21)], {"train_loss": lambda x: 0.2 + x**2})
    b = surface([(-1, 1, 21)], {"train_loss": lambda x: 0.5 + 4 * x**2})
    r = compare([a, b], names=["a", "b"])
    panels = [ax for ax in r.figure.axes if ax.get_title() in ("a", "b")]
    assert len(panels) == 2 and panels[0].get_ylim() == panels[1].get_ylim()
    lo, hi = panels[0].get_ylim()
    assert lo < 0.2 and hi > 4.5  # the range holds both models
    r = compare([a, b], names=["a", "b"], log=True)
    drawn = r.scale.drawn(b["train_loss"])
    np.testing.assert_allclose(drawn, b["train_loss"] - 0.2 + r.scale.floor)
    assert r.scale.floor == pytest.approx(1e-3 * (4.5 - 0.2))
    ax = next(ax for ax in r.figure.axes if ax.get_title() == "b")
    assert ax.get_yscale() == "log"


def _with(s: lm.Surface, **spec) -> lm.Surface:
    return dataclasses.replace(s, spec=dataclasses.replace(s.spec, **spec))


RANDOM = {"kind": "random", "norm": "filter", "ignore": "biasbn", "orthogonal": False, "seed": 0}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"grid": ((-1.0, 1.0, 41), (-2.0, 2.0, 41))}, "the grids differ"),
        ({"directions": (RANDOM | {"norm": "layer"}, RANDOM)}, "direction 1 normalizations differ"),
        ({"directions": (RANDOM, RANDOM | {"seed": 1})}, "direction 2 direction seeds differ"),
        ({"samples": 100}, "samples per split differ"),
        ({"loss": "MSELoss"}, "loss functions differ"),
        ({"bn": "recompute"}, "BatchNorm modes differ"),
    ],
)
def test_refuses_surfaces_not_scanned_by_the_same_rule(change, words):
    ref = _bowl(0.1, 1.0, [RANDOM, RANDOM])
    other = _with(_bowl(0.1, 2.0, [RANDOM, RANDOM]), **change)
    with pytest.raises(InputError) as err:
        compare([ref, other], names=["sgd", "sam"])
    msg = str(err.value)
    assert "sgd and sam were not scanned by the same rule" in msg and words in msg
    assert "\n" not in msg and ("scan every model" in msg or "draw every model" in msg)


def test_refuses_other_data_a_line_beside_a_plane_and_a_subset_seed():
    ref = dataclasses.replace(_bowl(0.1, 1.0), fingerprints={"data_train": "aaa"})
    other = dataclasses.replace(_bowl(0.1, 2.0), fingerprints={"data_train": "bbb"})
    with pytest.raises(InputError, match=r"the train data differ .*same data"):
        check_same_rule([ref, other], ["a", "b"])
    line = surface([(-1, 1, 41)], {"train_loss": lambda x: x**2, "test_loss": 0.0})
    with pytest.raises(InputError, match=r"kinds of scan differ \(a plane against a line\)"):
        compare([_bowl(0.1, 1.0), line])
    sub = _with(_bowl(0.1, 1.0), samples=64)
    with pytest.raises(InputError, match="subset seeds differ"):
        compare([sub, _with(sub, seed=1)])
    compare([_bowl(0.1, 1.0), _with(_bowl(0.1, 1.0), seed=1)])  # all samples: seed unused


def test_refuses_bad_arguments_with_one_line():
    s = _bowl(0.1, 1.0)
    for call, pattern in [
        (lambda: compare([s]), "two or more surfaces, got 1"),
        (lambda: compare([s, s], names=["a"]), "1 names for 2 surfaces"),
        (lambda: compare([s, s], names=["a", "a"]), "'a' is given twice"),
        (lambda: compare([s, s], "val_loss"), "unknown variable 'val_loss'"),
        (lambda: compare([s, s], levels=2), "levels=2 must be an int >= 3"),
        (lambda: compare([s, s], findings={"zzz": 1.0}, names=["a", "b"]), "'zzz'"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            call()
    with pytest.raises(TypeError, match="two or more Surfaces or store paths"):
        compare(s)


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_table_holds_the_analysis_numbers_and_the_given_findings(tmp_path):
    # V-shaped: linear interpolation is exact, so the basin width (δ = 0.1) is 0.2 along each axis
    v = surface(
        AXES,
        {
            "train_loss": lambda a, b: 0.1 + np.abs(a) + np.abs(b),
            "test_loss": lambda a, b: 0.3 + np.abs(a) + np.abs(b),
        },
    )
    w = surface(
        AXES,
        {
            "train_loss": lambda a, b: 0.2 + 2 * np.abs(a) + 0.5 * np.abs(b),
            "test_loss": lambda a, b: 0.25 + 2 * np.abs(a) + 0.5 * np.abs(b),
        },
    )
    given = {
        "wide": {"worst ρ=0.05": {"value": 0.25, "se": 0.01}},
        "narrow": [Finding(variable="train_loss", value=0.5, se=0.02)],
    }
    r = compare([v, w], names=["wide", "narrow"], findings=given, out=tmp_path / "cmp")
    t = r.table
    assert t.cell("wide", "grid minimum")["value"] == pytest.approx(0.1)
    assert t.cell("narrow", "at the centre")["value"] == pytest.approx(0.2)
    assert t.cell("wide", "basin width along α")["value"] == pytest.approx(0.2)
    assert t.cell("wide", "basin width along β")["value"] == pytest.approx(0.2)
    assert t.cell("narrow", "basin width along α")["value"] == pytest.approx(0.1)
    assert t.cell("narrow", "basin width along β")["value"] == pytest.approx(0.4)
    assert t.cell("wide", "test − train gap")["value"] == pytest.approx(0.2)
    assert t.cell("narrow", "test − train gap")["value"] == pytest.approx(0.05)
    # grid ε-sharpness (ε = 0.1): the worst rise within the disc is at distance 0.1 on an axis
    assert t.cell("narrow", "grid ε-sharpness (ε = 0.1)")["value"] == pytest.approx(0.2)
    assert t.cell("wide", "worst ρ=0.05") == {"value": 0.25, "se": 0.01}
    assert t.cell("narrow", "finding") == {"value": 0.5, "se": 0.02}
    md = t.to_markdown()
    assert "| wide |" in md and "0.25 ± 0.01" in md and "0.5 ± 0.02" in md
    said = dict(t.sentences["narrow"])
    assert "distance along β" in said["basin width along β"]
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["table"] == t.to_dict()
    assert (tmp_path / "cmp" / "comparison.md").read_text().strip() == md


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_html_page_is_self_contained_and_holds_the_table(tmp_path):
    names = ["<flat>", "sharp"]
    r = compare([_bowl(0.1, 1.0), _bowl(0.1, 3.0)], names=names, out=tmp_path)
    page = r.paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # fetches nothing
    assert "&lt;flat&gt;" in page and "<flat>" not in page  # names are escaped
    for m in r.table.models:
        for c in r.table.columns:
            assert r.table.text(m, c) in page
    assert r.paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _store(path, seed: int, direction_seed: int) -> str:
    g = torch.Generator().manual_seed(0)  # the same data for every model
    X, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    dirs = lm.random_directions(net, 2, seed=direction_seed, norm="filter")
    lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data={"train": (X, y), "test": (X[:20], y[:20])},
        directions=dirs,
        grid=[(-1, 1, 5)] * 2,
        progress=False,
        store=str(path),
    )
    return str(path)


def test_cli_refuses_bad_input_with_exit_2_and_one_line(tmp_path, capsys):
    a, b = tmp_path / "a.lossmap", tmp_path / "b.lossmap"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    for argv, words in [
        ((a, "-o", tmp_path / "o"), "two or more stores, got 1"),
        ((a, b, "-o", tmp_path / "o", "--names", "x"), "1 names for 2 stores"),
        ((a, b, "-o", tmp_path / "o"), "a.lossmap"),  # no such store
        ((a, b, "-o", tmp_path / "o", "--findings", tmp_path / "f.json"), "does not exist"),
        ((a, b, "-o", tmp_path / "o", "--findings", bad), "must hold one JSON object"),
    ]:
        code, out, err = run_cli(capsys, "compare", *argv)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.startswith("lossmap compare: error: ") and words in err


@pytest.mark.slow  # three scans (about 2 s each on a busy 2-core machine)
def test_cli_writes_the_comparison_and_refuses_other_rules(tmp_path, capsys):
    a, b = _store(tmp_path / "a.lossmap", 0, 3), _store(tmp_path / "b.lossmap", 1, 3)
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"SAM": {"worst-case sharpness": {"value": 0.25, "se": 0.01}}}))
    code, out, err = run_cli(
        capsys,
        "compare",
        a,
        b,
        "-o",
        tmp_path / "out",
        "--log",
        "--names",
        "SGD",
        "SAM",
        "--findings",
        given,
    )
    assert code == 0, err
    assert "| SGD |" in out and "| SAM |" in out and "| 0.25 ± 0.01 |" in out
    for f in ("comparison.png", "comparison.html", "comparison.json", "comparison.md"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert saved["scale"]["log"] and saved["names"] == ["SGD", "SAM"]
    lowest = min(float(lm.load(p)["train_loss"].min()) for p in (a, b))
    assert saved["scale"]["vmin"] == pytest.approx(lowest)
    c = _store(tmp_path / "c.lossmap", 2, 4)
    code, out, err = run_cli(capsys, "compare", a, c, "-o", tmp_path / "out2")
    assert code == 2 and err.count("\n") == 1
    assert "direction 1 direction seeds differ (3 against 4)" in err
