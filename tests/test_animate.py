"""lossmap.plot animations: one frame per step, fixed ranges, self-contained HTML, GIF, MP4."""

from __future__ import annotations

import base64
import gc
import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.animation as manim
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

import lossmap.plot as lp
from lossmap.errors import InputError, InputTypeError
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

# an animation made only to see it refused is never drawn, and matplotlib says so
pytestmark = [
    pytest.mark.filterwarnings("ignore:Animation was deleted without rendering"),
    pytest.mark.usefixtures("close_figures"),
]

NA, NB = 7, 5
# a path that leaves the grid (α = 1.5 > 1): the axes must still hold it
PATH = np.array([[1.5, 0.9], [0.9, 0.6], [0.5, 0.2], [0.2, -0.1], [0.0, 0.0]])


@pytest.fixture
def unrendered():
    """For a test whose animations are never drawn: they die inside it, where the filter holds."""
    yield
    plt.close("all")
    gc.collect()


def plane(shift: float = 0.0, scale: float = 1.0, grid=None, nan=None, meta=None) -> Surface:
    """An analytic plane: train_loss = scale·((α - shift)² + 2β²) + shift, test_loss its half."""
    spec = ScanSpec(grid=grid or (Axis(-1, 1, NA), Axis(-1, 1, NB)), splits=("train", "test"),
                    metrics=("loss",))
    A, B = np.meshgrid(*spec.coords(), indexing="ij")  # values[i, j] at (alpha_i, beta_j)
    train = scale * ((A - shift) ** 2 + 2 * B**2) + shift
    if nan is not None:
        train[nan] = np.nan
    return Surface(spec, {"train_loss": train, "test_loss": 0.5 * train},
                   np.ones(spec.shape, bool), meta=meta or {})


def line() -> Surface:
    spec = ScanSpec(grid=(Axis(-1, 1, 5),), splits=("train",), metrics=("loss",))
    return Surface(spec, {"train_loss": spec.coords()[0] ** 2}, np.ones(spec.shape, bool))


def planes() -> list[Surface]:
    """Three centres along a trajectory; the first has a missing point."""
    return [plane(0.0, 1.0, nan=(1, 1)), plane(0.3, 2.0), plane(0.6, 3.0)]


def z_of(values: np.ndarray) -> list:
    """What plotly should hold for a plane's values: rows along β, None for NaN."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in values.T]


def rows(z) -> list:
    """A plotly z (tuples or lists of rows) as a list of lists."""
    return [list(r) for r in z]


# -- plotly: the path ---------------------------------------------------------------
def test_path_animation_has_one_frame_per_step_and_ends_with_the_whole_path():
    surf = plane()
    fig = lp.path_animation(surf, PATH)
    assert len(fig.frames) == len(PATH)
    assert [f.name for f in fig.frames] == [f"step {t}" for t in range(len(PATH))]
    names = [t.name for t in fig.data]
    i_path, i_step = names.index("training path"), names.index("step")
    assert fig.data[0].type == "contour"
    assert rows(fig.data[0].z) == z_of(surf.values["train_loss"])
    for t, frame in enumerate(fig.frames):
        assert list(frame.traces) == [i_path, i_step]  # the contour is sent once, not per frame
        np.testing.assert_array_equal(np.c_[frame.data[0].x, frame.data[0].y], PATH[: t + 1])
        np.testing.assert_array_equal(np.c_[frame.data[1].x, frame.data[1].y], PATH[t : t + 1])
        assert frame.layout.title.text == f"train loss: step {t}"
    np.testing.assert_array_equal(np.c_[fig.frames[-1].data[0].x, fig.frames[-1].data[0].y], PATH)
    # the figure as first shown is frame 0
    np.testing.assert_array_equal(np.c_[fig.data[i_path].x, fig.data[i_path].y], PATH[:1])
    # fixed axes hold the grid and the whole path
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert x0 <= -1 and x1 >= 1.5 and y0 <= -1 and y1 >= 1
    assert fig.layout.xaxis.autorange is False
    # a slider step and a frame per step, play and pause buttons
    assert [s.label for s in fig.layout.sliders[0].steps] == [f.name for f in fig.frames]
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶ play", "❚❚ pause"]
    # every frame redrawn: plotly.js drops the contour otherwise (see the browser test)
    play = fig.layout.updatemenus[0].buttons[0].args[1]["frame"]
    assert play == {"duration": 200, "redraw": True}
    assert all(s.args[1]["frame"]["redraw"] for s in fig.layout.sliders[0].steps)


def test_path_animation_reads_the_stored_path_and_checkpoint_names():
    files = [f"run/checkpoints/epoch_{e:03d}.safetensors" for e in range(len(PATH))]
    surf = plane(meta={"path": PATH.tolist(), "trajectory": files})
    fig = lp.path_animation(surf, variable="test_loss", style="heatmap")
    assert [f.name for f in fig.frames] == [f"epoch_{e:03d}" for e in range(len(PATH))]
    np.testing.assert_array_equal(np.c_[fig.frames[-1].data[0].x, fig.frames[-1].data[0].y], PATH)
    assert fig.data[0].type == "heatmap"
    assert rows(fig.data[0].z) == z_of(surf.values["test_loss"])
    fig = lp.path_animation(surf, PATH[:2], labels=["a", "b"])  # an explicit path wins
    assert [f.name for f in fig.frames] == ["a", "b"]


# -- plotly: the moving centre --------------------------------------------------------
@pytest.mark.parametrize("style", ["surface", "heatmap"])
def test_centre_animation_keeps_one_range_across_frames(style):
    surfs = planes()
    fig = lp.centre_animation(surfs, style=style, labels=["e1", "e2", "e3"])
    assert [f.name for f in fig.frames] == ["e1", "e2", "e3"]
    stacked = np.stack([s.values["train_loss"] for s in surfs])
    lo, hi = np.nanmin(stacked), np.nanmax(stacked)  # over every frame, the NaN left out
    assert lo < np.nanmin(stacked[2]) and hi > np.nanmax(stacked[0])  # the frames differ
    lim = ("cmin", "cmax") if style == "surface" else ("zmin", "zmax")
    for s, frame in zip(surfs, fig.frames, strict=True):
        trace = frame.data[0]
        assert (trace[lim[0]], trace[lim[1]]) == (lo, hi)
        assert rows(trace.z) == z_of(s.values["train_loss"])
    assert (fig.data[0][lim[0]], fig.data[0][lim[1]]) == (lo, hi)
    if style == "surface":
        z0, z1 = fig.layout.scene.zaxis.range
        assert z0 < lo and z1 > hi and fig.layout.scene.zaxis.autorange is False
        lift = 0.03 * (hi - lo)
        centres = [f.data[1].z[0] - lift for f in fig.frames]
        expect = [s.values["train_loss"][NA // 2, NB // 2] for s in surfs]
        np.testing.assert_allclose(centres, expect, rtol=1e-12)
        assert [list(f.traces) for f in fig.frames] == [[0, 1]] * 3
    else:
        assert [list(f.traces) for f in fig.frames] == [[0]] * 3


def decode(array) -> np.ndarray:
    """An array as plotly writes it into HTML: a list, or base64 bytes ``{"dtype", "bdata"}``."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array, dtype=np.float64)


# -- files --------------------------------------------------------------------------
def test_html_is_self_contained_and_holds_the_frames(tmp_path):
    fig = lp.path_animation(plane(), PATH, labels=[f"epoch-{t}" for t in range(len(PATH))])
    out = lp.save_animation(fig, tmp_path / "sub" / "path.html")
    text = out.read_text(encoding="utf-8")
    assert get_plotlyjs()[:2000] in text  # plotly.js itself is inside
    assert "<script src=" not in text and "cdn.plot.ly" not in text and "<link" not in text
    assert "Plotly.addFrames" in text
    frames = json.loads(re.search(r"Plotly\.addFrames\('[^']+', (\[.*?\])\);", text).group(1))
    assert [f["name"] for f in frames] == [f"epoch-{t}" for t in range(len(PATH))]
    last = frames[-1]["data"][0]
    np.testing.assert_array_equal(np.c_[decode(last["x"]), decode(last["y"])], PATH)


def test_gif_has_one_frame_per_step_and_the_asked_size(tmp_path):
    anim = lp.path_animation_mpl(plane(), PATH, figsize=(2.0, 1.5))
    out = lp.save_animation(anim, tmp_path / "path.gif", dpi=40)
    with Image.open(out) as im:
        assert im.n_frames == len(PATH) and im.size == (80, 60)
        im.seek(0)
        first = np.asarray(im.convert("RGB"))
        im.seek(im.n_frames - 1)
        assert (np.asarray(im.convert("RGB")) != first).any()
    ax = anim._fig.axes[0]
    lines = {ln.get_label(): ln.get_xydata() for ln in ax.lines}
    np.testing.assert_array_equal(lines["training path"], PATH)  # the last frame drawn: all
    np.testing.assert_array_equal(lines["step"], PATH[-1:])
    assert ax.get_title() == "train loss: step 4"
    assert ax.get_xlim()[1] >= 1.5


@pytest.mark.parametrize("style", ["heatmap", "surface"])
def test_centre_gif_keeps_one_colour_range(tmp_path, style):
    surfs = planes()
    anim = lp.centre_animation_mpl(surfs, style=style, figsize=(2.0, 2.0))
    out = lp.save_animation(anim, tmp_path / "centre.gif", dpi=30, fps=4)
    with Image.open(out) as im:
        assert im.n_frames == len(surfs) and im.size == (60, 60)
        assert im.info["duration"] == 250
    stacked = np.stack([s.values["train_loss"] for s in surfs])
    lo, hi = np.nanmin(stacked), np.nanmax(stacked)
    ax = anim._fig.axes[0]
    if style == "heatmap":
        assert ax.images[0].get_clim() == (lo, hi)
        np.testing.assert_array_equal(ax.images[0].get_array(), surfs[-1].values["train_loss"].T)
    else:
        assert (ax.collections[0].norm.vmin, ax.collections[0].norm.vmax) == (lo, hi)
        assert ax.get_zlim() == (lo, hi)
    assert ax.get_title() == "train loss: centre 2"


def test_mp4_is_written_or_names_the_missing_writer(tmp_path, unrendered):
    anim = lp.path_animation_mpl(plane(), PATH[:3], figsize=(2.0, 2.0))
    if manim.writers.is_available("ffmpeg"):
        out = lp.save_animation(anim, tmp_path / "path.mp4", dpi=40)
        head = out.read_bytes()[:12]
        assert head[4:8] == b"ftyp"  # an ISO media (MP4) file
    else:
        with pytest.raises(InputError, match=r"'ffmpeg' writer.*\.gif"):
            lp.save_animation(anim, tmp_path / "path.mp4")
        assert not (tmp_path / "path.mp4").exists()


def test_mp4_without_ffmpeg_names_the_writer_and_the_gif_alternative(
    tmp_path, monkeypatch, unrendered
):
    monkeypatch.setattr(manim.writers, "is_available", lambda name: False)
    anim = lp.path_animation_mpl(plane(), PATH[:2], figsize=(2.0, 2.0))
    with pytest.raises(InputError, match=r"needs matplotlib's 'ffmpeg' writer.*save a \.gif"):
        lp.save_animation(anim, tmp_path / "path.mp4")


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [lp.path_animation, lp.path_animation_mpl])
def test_path_animation_bad_input(fn):
    with pytest.raises(InputError, match="needs a plane"):
        fn(line(), PATH)
    with pytest.raises(InputError, match=r"shape \(0,\).*\(T, 2\) with T >= 1"):
        fn(plane(), [])
    with pytest.raises(InputError, match=r"shape \(5, 3\)"):
        fn(plane(), np.zeros((5, 3)))  # lm.project with three directions
    with pytest.raises(InputError, match=r"step 2 of the path is not finite"):
        fn(plane(), [[0, 0], [1, 1], [np.nan, 0]])
    with pytest.raises(InputError, match=r"no meta\['path'\]"):
        fn(plane())
    with pytest.raises(InputError, match="5 distinct names"):
        fn(plane(), PATH, labels=["a", "b"])
    with pytest.raises(InputError, match="unknown variable 'val_loss'"):
        fn(plane(), PATH, variable="val_loss")
    if fn is lp.path_animation:
        with pytest.raises(InputError, match="path_animation: style='surface'"):
            fn(plane(), PATH, style="surface")


@pytest.mark.parametrize("fn", [lp.centre_animation, lp.centre_animation_mpl])
def test_centre_animation_bad_input(fn):
    other = plane(grid=(Axis(-1, 1, NA), Axis(-2, 2, NB)))
    with pytest.raises(InputError, match=r"surface 1 has the grid -1:1:7, -2:2:5.*same grid"):
        fn([plane(), other])
    with pytest.raises(InputError, match=r"\(surface 1\) needs a plane"):
        fn([plane(), line()])
    with pytest.raises(InputTypeError, match="non-empty list of plane Surfaces"):
        fn([])
    with pytest.raises(InputTypeError, match="non-empty list of plane Surfaces"):
        fn(plane())
    with pytest.raises(InputError, match="style='contour'"):
        fn(planes(), style="contour")
    nothing = plane()
    nothing.values["train_loss"][:] = np.nan
    with pytest.raises(InputError, match="no finite value"):
        fn([nothing])


def test_save_animation_refuses_what_it_cannot_write(tmp_path, unrendered):
    fig = lp.path_animation(plane(), PATH)
    with pytest.raises(InputError, match=r"plotly figure is written as \.html.*path_animation_mpl"):
        lp.save_animation(fig, tmp_path / "a.gif")
    anim = lp.path_animation_mpl(plane(), PATH)
    with pytest.raises(InputError, match=r"written as \.gif or \.mp4.*path_animation"):
        lp.save_animation(anim, tmp_path / "a.html")
    with pytest.raises(InputError, match=r"must end in \.html"):
        lp.save_animation(fig, tmp_path / "a.png")
    with pytest.raises(InputError, match="no frames"):
        lp.save_animation(go.Figure(), tmp_path / "a.html")
    with pytest.raises(InputTypeError, match="got list"):
        lp.save_animation([], tmp_path / "a.gif")
    with pytest.raises(InputError, match="fps=0"):
        lp.save_animation(anim, tmp_path / "a.gif", fps=0)
    with pytest.raises(InputError, match="duration=-1"):
        lp.path_animation(plane(), PATH, duration=-1)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["path_animation", "centre_animation", "save_animation",
                                  "path_animation_mpl", "centre_animation_mpl"])
def test_docstrings_match_signatures(name, assert_docstring_matches_signature):
    assert_docstring_matches_signature(getattr(lp, name))


# -- the browser ----------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
# what the page shows: the title, each trace's number of x values, the contour levels drawn
SHOWN = """() => { const gd = document.querySelector('.js-plotly-plot');
    return [gd.layout.title.text, gd._fullData.map(t => t.x ? t.x.length : null),
            document.querySelectorAll('g.contourlevel').length]; }"""


@pytest.mark.browser
def test_html_animation_plays_in_chromium_offline(tmp_path):
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is missing: `apt-get install chromium` (this browser test)")
    out = lp.save_animation(lp.path_animation(plane(), PATH, duration=50), tmp_path / "a.html")
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable,
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 900})
            tab.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(out.as_uri(), wait_until="load")
            tab.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullData",
                                  timeout=60_000)
            title0, lengths0, levels0 = tab.evaluate(SHOWN)
            tab.get_by_text("▶ play").click()
            tab.wait_for_function(
                "() => document.querySelector('.js-plotly-plot').layout.title.text"
                ".endsWith('step 4')", timeout=30_000)
            tab.wait_for_timeout(300)
            title1, lengths1, levels1 = tab.evaluate(SHOWN)
        finally:
            browser.close()
    assert not errors, errors
    assert all(u.split(":", 1)[0] in ("file", "data", "about", "blob") for u in requests), requests
    assert (title0, title1) == ("train loss: step 0", "train loss: step 4")  # no autoplay
    assert lengths0[-2:] == [1, 1] and lengths1[-2:] == [len(PATH), 1]
    assert levels0 > 0 and levels1 == levels0  # the contour is still drawn after playing
