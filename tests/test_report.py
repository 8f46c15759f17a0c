"""lossmap.report: the page holds every section and number, fetches nothing, renders in Chromium."""

from __future__ import annotations

import argparse
import html
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.analysis import analyse, sentence
from lossmap.cli import report as report_cli
from lossmap.errors import InputError, InputTypeError, MissingFileError, StoreError
from lossmap.report import format_value, write_report
from lossmap.store import Store
from lossmap.surface import Surface

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
HISTORY = {
    "epoch": [0, 1, 2, 3],
    "train_loss": [1.10, 0.92, 0.81, 0.74],
    "test_loss": [1.11, 0.97, 0.90, 0.88],
    "train_accuracy": [0.33, 0.52, 0.61, 0.66],
    "test_accuracy": [0.31, 0.47, 0.55, 0.57],
}
# True once `n` plotly graphs exist and each has drawn (an SVG layer or a WebGL canvas).
RENDERED = """n => { const g = document.querySelectorAll('.js-plotly-plot');
  return g.length === n && [...g].every(e => e.querySelector('.main-svg, canvas')); }"""
PATH = [[-0.5, -0.5], [-0.2, 0.1], [0.0, 0.0]]  # a projected training path on the plane
NOTE = "evaluated on all 48 <train> samples & 16 test samples"


class StopAfter:
    """Cross-entropy that raises KeyboardInterrupt (a Ctrl-C) after ``n`` calls."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, t)


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    return model, {"train": (X[:48], y[:48]), "test": (X[48:], y[48:])}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stores")
    model, data = _setup()
    line_dir = lm.random_direction(model, seed=0)
    kw = {"data": data, "progress": False}
    out = {name: folder / f"{name}.lossmap" for name in ("line", "plane", "partial")}
    lm.scan(
        model, nn.CrossEntropyLoss(), directions=line_dir, grid=(-1, 1, 21), store=out["line"], **kw
    )
    lm.scan(
        model,
        nn.CrossEntropyLoss(),
        directions=lm.random_directions(model, 2, seed=0),
        grid=[(-1, 1, 11), (-1, 1, 9)],
        store=out["plane"],
        meta={"path": PATH, "models": {"A": [0.5, 0.0]}},
        **kw,
    )
    setup = StopAfter(10**9)  # loss calls besides the 2 x 21 of the points: checks, probe,
    lm.scan(model, setup, directions=line_dir, grid=(-0.5, 0.5, 21), **kw)  # round-off
    with pytest.raises(KeyboardInterrupt):
        lm.scan(
            model,
            StopAfter(setup.calls - 2 * 21 + 8),
            directions=line_dir,
            grid=(-0.5, 0.5, 21),
            store=out["partial"],
            **kw,
        )
    done = lm.load(out["partial"]).done.sum()
    assert 0 < done < 21, done
    return out


@pytest.fixture(scope="module")
def page(stores, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("report") / "report.html"
    runs = [stores["line"], stores["plane"], str(stores["partial"])]
    assert write_report(runs, path, history=HISTORY, notes=[NOTE], title="Tiny <MLP>") == path
    return path, path.read_text(encoding="utf-8")


def _sections(text: str) -> list[str]:
    return re.split(r'<section class="card run" id="run-\d">', text)[1:]


def _cell(section: str, variable: str, column: int) -> str:
    row = re.search(rf"<tr><td>{variable}</td>((?:<td[^>]*>[^<]*</td>)+)</tr>", section)
    assert row, f"no row {variable!r}"
    return re.findall(r"<td[^>]*>([^<]*)</td>", row.group(0))[column]


class _Attrs(HTMLParser):
    """Every attribute of every tag (script and style bodies are text to this parser)."""

    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]


# -- content -------------------------------------------------------------------
def test_sections_toc_notes_and_history(page, stores):
    _, text = page
    assert text.count('<section class="card run"') == 3
    for i in (1, 2, 3):
        assert f'id="run-{i}"' in text and f'href="#run-{i}"' in text
    assert 'id="history"' in text and 'href="#history"' in text
    assert "<title>Tiny &lt;MLP&gt;</title>" in text
    assert html.escape(NOTE) in text and NOTE not in text
    for heading in (
        "Findings",
        "Numbers",
        "Figures",
        "Interactive view",
        "Scan specification",
        "Directions",
        "Provenance",
        "Fingerprints",
        "Training history",
    ):
        assert f"<h3>{heading}</h3>" in text or f"<h2>{heading}</h2>" in text, heading
    for name in ("line", "plane", "partial"):
        assert f"<h2>{name} " in text
    # line, plane (+ its topology), partial, history
    assert text.count("<figure><img ") == 1 + 2 + 1 + 1 + 1
    assert '<td class="num">0.7400</td>' in text and '<td class="num">3</td>' in text  # history


def test_numbers_match_the_surface(page, stores):
    _, text = page
    for section, name in zip(_sections(text), ("line", "plane", "partial"), strict=True):
        surface = lm.load(stores[name])
        summary = surface.summary()
        for v in surface.values:
            label = v.replace("_", " ")
            shown = _cell(section, label, 1)
            centre = summary[v]["centre"]
            assert shown == format_value(centre)
            if not math.isnan(centre):
                digits = math.floor(math.log10(abs(centre))) - 4  # 5 significant digits
                assert abs(float(shown) - centre) <= 0.5 * 10.0**digits
            assert _cell(section, label, 2) == format_value(summary[v]["min"])
        assert f"{summary['done']}/{summary['points']}" in section
        spec = surface.spec
        for a in spec.grid:
            assert f"[{a.lo:g}, {a.hi:g}], {a.n} points" in section
        for fp in surface.fingerprints.values():
            assert f"<code>{fp}</code>" in section
        assert f"<td>{surface.meta['lossmap_version']}</td>" in section
        assert f"<td>{surface.meta['torch_version']}</td>" in section


def test_analysis_statements(page, stores):
    _, text = page
    line, plane, partial = _sections(text)
    for section, name in ((line, "line"), (partial, "partial")):
        surface = lm.load(stores[name])
        for r in analyse(surface).values():
            assert html.escape(sentence(r["slope"])) in section
            assert html.escape(sentence(r["convexity"])) in section
    assert "this slice is not convex, so the surface is not convex" in text
    surface = lm.load(stores["plane"])
    with Store.open(stores["plane"]) as store:
        d1, d2 = store.directions()
    cosine = d1.cosine(d2)
    assert f"cosine {cosine:.4f}" in plane
    for v, r in analyse(surface).items():
        cv = r["convexity"]
        assert html.escape(sentence(cv)) in plane
        row = [_cell(plane, v.replace("_", " "), k) for k in (4, 5)]
        assert row == [
            f"{cv.axes[d].lines_not_convex} of {cv.axes[d].lines}" for d in ("alpha", "beta")
        ]
    assert "the projected training path" in plane and "diamonds: A" in plane
    assert "3 projected points" in plane and "A at [0.5, 0.0]" in plane
    done = lm.load(stores["partial"]).summary()["done"]
    assert f"partial {done}/21" in partial and f"{done} of 21 points done" in partial
    assert "partial" not in line.split("</h2>")[0]


def test_self_contained(page):
    _, text = page
    assert "cdn.plot.ly" not in text
    parser = _Attrs()
    parser.feed(text)
    urls = [(t, k, v) for t, k, v in parser.attrs if k in ("src", "href")]
    assert urls, "the page has images and links"
    assert not [u for u in urls if re.match(r"\s*(https?:)?//", u[2], re.I)], urls
    assert not [a for a in parser.attrs if a[0] in ("link", "iframe")]
    assert "@import" not in text and "@font-face" not in text
    assert text.count("<script") - text.count('<div class="plotly-box">') == 1  # plotly.js once
    assert text.count("Plotly.newPlot(") == 4  # line 1, plane 2, partial 1


def test_a_surface_pair_escaped_label_and_diverged_points(stores, tmp_path):
    surface = lm.load(stores["line"])
    values = {k: v.copy() for k, v in surface.values.items()}
    values["train_loss"][[2, 3]] = [math.inf, math.nan]  # finished but not finite: diverged
    surface = Surface(surface.spec, values, surface.done, surface.fingerprints, None, surface.meta)
    out = write_report([("<img src=x onerror=alert(1)>", surface)], tmp_path / "r.htm")
    text = out.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert '<span class="tag bad">2 diverged</span>' in text and "points done, 2 diverged" in text
    assert "2 points have a value that is not finite" in text
    assert "not read from a store" in text and "cosine" not in text.split("<main>")[1]


def test_a_store_with_no_point_yet(stores, tmp_path):
    line = lm.load(stores["line"])
    nothing = {k: v * math.nan for k, v in line.values.items()}
    empty = Surface(line.spec, nothing, line.done & False, line.fingerprints, None, line.meta)
    text = write_report([("empty", empty)], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No finished point yet" in text and "partial 0/21" in text
    assert "undetermined" in text and "has no finite point" in text
    assert "<figure>" not in text and "Plotly.newPlot(" not in text


def test_bad_input(stores, tmp_path):
    with pytest.raises(InputError, match=r"\.html"):
        write_report([stores["line"]], tmp_path / "r.png")
    with pytest.raises(InputError, match="empty"):
        write_report([], tmp_path / "r.html")
    with pytest.raises(InputTypeError, match=r"runs\[0\]"):
        write_report([42], tmp_path / "r.html")
    with pytest.raises(MissingFileError):
        write_report([tmp_path / "nope.lossmap"], tmp_path / "r.html")


# -- the browser ---------------------------------------------------------------
@pytest.mark.browser
def test_renders_in_chromium_without_errors_or_requests(page, tmp_path):
    path, _ = page
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.fail("Chromium is missing: `apt-get install chromium` (the report's browser test)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: `pip install -e .[dev]` (or `pip install playwright`)")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ]
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=args)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(path.as_uri(), wait_until="load")
            tab.wait_for_function(RENDERED, arg=4, timeout=60_000)
            graphs = tab.evaluate("document.querySelectorAll('.js-plotly-plot').length")
            gl = tab.evaluate("document.querySelectorAll('.js-plotly-plot canvas').length")
            images = tab.evaluate(
                "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
            )
            linked = tab.evaluate(
                "[...document.querySelectorAll('[src],[href]')]"
                ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
            )
            tab.wait_for_timeout(300)
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    shutil.copy(ARTIFACTS / "report.png", tmp_path / "report.png")
    assert not errors, errors
    foreign = [u for u in requests if u.split(":", 1)[0] not in ("file", "data", "about", "blob")]
    assert not foreign, foreign
    assert graphs == 4
    assert gl > 0  # the plane's 3D view drew with WebGL
    assert images == 6  # line, plane x 2, the plane's topology, partial, history
    assert not [u for u in linked if re.match(r"\s*(https?:)?//", u or "", re.I)], linked
    assert (tmp_path / "report.png").stat().st_size > 10_000


# -- the command line ------------------------------------------------------------
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lossmap")
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


def test_cli_writes_the_report(stores, tmp_path, capsys):
    hist = tmp_path / "history.json"
    hist.write_text('{"epoch": [0, 1], "train_loss": [1.1, 0.9], "test_loss": [1.2, 1.0]}')
    out = tmp_path / "sub" / "r.html"
    args = _args(
        str(stores["line"]),
        str(stores["partial"]),
        "-o",
        str(out),
        "--title",
        "T & co",
        "--history",
        str(hist),
        "--note",
        "a <note>",
    )
    assert report_cli.run(args) == 0
    text = out.read_text(encoding="utf-8")
    assert "<title>T &amp; co</title>" in text and "a &lt;note&gt;" in text
    assert text.count('<section class="card run"') == 2 and 'id="history"' in text
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_bad_input(stores, tmp_path):
    with pytest.raises(InputError, match=r"\.html"):
        report_cli.run(_args(str(stores["line"]), "-o", str(tmp_path / "r.pdf")))
    not_a_store = tmp_path / "x.lossmap"
    not_a_store.write_text("hello")
    with pytest.raises(StoreError, match="not a lossmap store"):
        report_cli.run(_args(str(not_a_store), "-o", str(tmp_path / "r.html")))
    with pytest.raises(MissingFileError):
        report_cli.run(_args(str(tmp_path / "missing.lossmap"), "-o", str(tmp_path / "r.html")))
    bad = tmp_path / "h.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="per-epoch lists"):
        report_cli.run(
            _args(str(stores["line"]), "-o", str(tmp_path / "r.html"), "--history", str(bad))
        )
    assert not (tmp_path / "r.html").exists()


def test_report_states_barrier_and_convexity_map(tmp_path):
    import lossmap as lm
    from lossmap.report import write_report

    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    line = lm.scan(a, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
                   directions=lm.interpolation(a, b), centre=a, grid=(-0.5, 1.5, 9),
                   progress=False, store=tmp_path / "interp.lossmap")
    plane = lm.scan(a, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
                    directions=lm.random_directions(a, 2), grid=[(-1, 1, 5), (-1, 1, 5)],
                    progress=False, store=tmp_path / "plane.lossmap")
    page = write_report([tmp_path / "interp.lossmap", tmp_path / "plane.lossmap"],
                        tmp_path / "r.html").read_text()
    expect = sentence(lm.barrier(line, "train_loss"))
    assert html.escape(expect) in page
    assert "of 9 interior points" in page and plane.complete


def test_basin_width_and_grid_sharpness_on_analytic_surfaces(page, stores, tmp_path):
    import numpy as np

    from lossmap.analysis import geometry
    from lossmap.analysis.sharpness import grid_sharpness
    from lossmap.scan.spec import ScanSpec

    # The default page: δ = 0.1 on every line, ε = 0.1 on the plane, each stated.
    line, plane, partial = _sections(page[1])
    for section, name in ((line, "line"), (partial, "partial")):
        for v in ("train_loss", "test_loss"):
            r = geometry.basin_width(lm.load(stores[name]), v, 0.1)
            assert html.escape(sentence(r)) in section
        assert "basin width (δ = 0.1: distance along α" in section
    r = grid_sharpness(lm.load(stores["plane"]), "train_loss", 0.1)
    assert html.escape(sentence(r)) in plane
    assert "ε-sharpness from the scanned grid (ε = 0.1 in (α, β) units" in plane
    assert "basin width" not in plane and "ε-sharpness" not in line
    # A line with known crossings: train 2 + α² (left), 2 + 4α² (right); test 2 − 0.75α (left),
    # 2 + 0.1α² (right, never above 2 + δ). δ = 0.25: train ±0.5 / 0.25, test 1/3 / beyond.
    spec = ScanSpec(grid=((-1, 1, 41),), splits=("train", "test"), metrics=("loss",))
    a = spec.coords()[0]
    vals = {"train_loss": 2 + np.where(a < 0, a**2, 4 * a**2),
            "test_loss": 2 + np.where(a < 0, -0.75 * a, 0.1 * a**2)}
    quad = Surface(spec, vals, np.ones(41, bool))
    # A plane 1 + α² + 3β²: within radius ε = 0.3 of 0 the worst rise is 3·0.3² = 0.27 at β = ±0.3.
    pspec = ScanSpec(grid=((-1, 1, 41), (-1, 1, 41)), splits=("train",), metrics=("loss",))
    A, B = np.meshgrid(*pspec.coords(), indexing="ij")
    bowl = Surface(pspec, {"train_loss": 1 + A**2 + 3 * B**2}, np.ones((41, 41), bool))
    out = write_report([("quad", quad), ("bowl", bowl)], tmp_path / "r.html", delta=0.25,
                       epsilon=0.3)
    quad_s, bowl_s = _sections(out.read_text(encoding="utf-8"))
    assert ("basin width (δ = 0.25: distance along α from the centre until the loss exceeds "
            "L(c) + δ = 2.25): 0.5 to the left (α = -0.5), 0.25 to the right (α = 0.25); "
            "width 0.75") in quad_s
    assert ("L(c) + δ = 2.25): 0.3333 to the left (α = -0.3333), beyond the scanned range "
            "to the right") in quad_s
    i, j = np.mgrid[-6:7, -6:7]
    disc = int((i**2 + j**2 <= 36).sum()) - 1  # grid step 0.05: radius 6 steps, centre excluded
    assert "(ε = 0.3 in (α, β) units" in bowl_s
    assert (f"rises by at most 0.27 (13.50% of 1 + L(c)) over the {disc} grid points within "
            "0.3 of the centre, worst at α = 0, β = ") in bowl_s
    coarse = write_report([("bowl", bowl)], tmp_path / "c.html", epsilon=0.01).read_text()
    assert "undetermined, no finished grid point other than the centre lies within 0.01" in coarse
    for bad in ({"delta": 0}, {"epsilon": -1.0}, {"delta": math.nan}, {"epsilon": True}):
        with pytest.raises(InputError, match="must be a positive number"):
            write_report([("quad", quad)], tmp_path / "b.html", **bad)
