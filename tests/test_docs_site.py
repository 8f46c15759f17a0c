"""The documentation site: built strictly, its API and CLI pages generated, its code run.

- The site builds with ``mkdocs build --strict`` (a broken link, a missing anchor,
  an unresolved cross-reference or a docstring mkdocstrings cannot parse fails it).
- The API pages document every public function and class of the packages they
  cover (compared with each package's ``__all__``, read from the source).
- The CLI page lists every command of the real parser, with its usage and every
  option that is not hidden (compared with the parser itself, so a new command or
  option that the page lacked would fail here).
- The getting-started page's code runs as written, Python and command line.
- The generator (``docs/gen_cli.py``) and the Griffe extension
  (``docs/griffe_fill_doc.py``) are checked on small inputs of their own.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "lossmap"

# Packages with an API page; each public function and class of their __all__ must be on it.
API_PACKAGES = ("align", "analysis", "callbacks", "data", "directions", "hessian", "interop",
                "jax", "metrics", "models", "plot", "report", "store", "train")


def _load(name: str):
    """A module of docs/ by file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _all_of(path: Path) -> list[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return []


# --------------------------------------------------------------------------- the built site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert not re.search(r"^WARNING\b", log, re.M), log[-6000:]
    return out


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


@pytest.mark.slow
def test_site_has_every_page_and_the_demo_figures(site):
    for page in ("index.html", "getting-started/index.html", "cli/index.html",
                 "api/index.html", "demo/index.html", "demo/report.html",
                 "scaling/index.html", "performance/index.html", "batchnorm/index.html"):
        assert (site / page).is_file(), page
    demo = (site / "demo" / "index.html").read_text()
    for img in re.findall(r'src="\.\./(img/demo/[^"]+\.png)"', demo):
        assert (site / img).stat().st_size > 10_000, img  # a real figure, made at build time
    assert len(re.findall(r'src="\.\./img/demo/', demo)) >= 5
    assert "<!-- demo-summary -->" not in demo and "test accuracy" in demo
    # Offline: no page asks for Google Fonts or any other remote stylesheet or script.
    for page in site.rglob("*.html"):
        text = page.read_text(errors="replace")
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert not re.search(r'<(?:link|script)[^>]+(?:href|src)="https?://', text), page


@pytest.mark.slow
def test_api_pages_document_the_public_names(site):
    ids: set[str] = set()
    for page in (site / "api").rglob("index.html"):
        ids |= _ids(page)
    assert "lossmap.directions.random_directions" in ids
    assert "lossmap.scan.plan.plan_scan" in ids
    assert "lossmap.scan.api.scan" in ids and "lossmap.surface.Surface" in ids
    missing = []
    for pkg in API_PACKAGES:
        for name in _all_of(SRC / pkg / "__init__.py"):
            if name.isupper():  # constants are documented where they are used
                continue
            prefix = f"lossmap.{pkg}."
            if not any(i.startswith(prefix) and i.endswith(f".{name}") for i in ids):
                missing.append(prefix + name)
    for name in _all_of(SRC / "__init__.py"):  # lm.*: each on the page of its package
        if not name.startswith("_") and not any(i.endswith(f".{name}") for i in ids):
            missing.append(f"lossmap.{name}")
    assert not missing, f"public names without an API entry: {missing}"
    # the docstrings completed at import time (plot's @fill_doc) are shown completed
    plot = (site / "api" / "plot" / "index.html").read_text()
    assert "{plane_params}" not in plot and "{contour_params}" not in plot
    assert ":func:`" not in plot and ":class:`" not in plot  # Sphinx roles became links


def _commands(parser: argparse.ArgumentParser, prefix: str = "lossmap"):
    """(path, parser) of every command below ``parser``, walked independently of docs/."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # one per add_parser: no aliases
                path = f"{prefix} {choice.dest}"
                yield path, action.choices[choice.dest]
                yield from _commands(action.choices[choice.dest], path)


@pytest.mark.slow
def test_cli_page_lists_every_command_and_option_of_the_parser(site):
    from lossmap.cli.main import _build_parser

    page = site / "cli" / "index.html"
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    ids = _ids(page)
    commands = list(_commands(_build_parser()))
    assert {"lossmap scan", "lossmap info", "lossmap export", "lossmap hessian"} <= {
        p for p, _ in commands}
    for path, parser in commands:
        assert path.replace(" ", "-") in ids, f"{path} has no section on the CLI page"
        assert f"usage: {path}" in text, f"{path}: no usage line"
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                assert flag in text, f"{path}: option {flag} missing"


# --------------------------------------------------------------------------- getting started


@pytest.mark.slow
def test_getting_started_code_runs_as_written(tmp_path):
    page = (DOCS / "getting-started.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", page, re.S)
    python = [code for lang, code in blocks if lang == "python"]
    modules = {code.splitlines()[0][2:].strip(): code for code in python
               if re.match(r"# \w+\.py\n", code)}
    assert "mynets.py" in modules
    for name, code in modules.items():
        (tmp_path / name).write_text(code)
    script = "\n".join(code for code in python if code not in modules.values())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Surface(plane -1:1:21 x -1:1:21, complete" in r.stdout
    assert (tmp_path / "runs" / "plane.png").stat().st_size > 0
    assert (tmp_path / "runs" / "report.html").stat().st_size > 0
    commands = []
    for lang, code in blocks:
        if lang == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                if line.startswith("lossmap "):
                    commands.append(shlex.split(line.split(" #")[0])[1:])
    assert [c[0] for c in commands] == ["scan", "info", "plot", "report"]
    # the commands one after the other in one fresh process (lossmap's entry point, main),
    # stopping at the first that fails (a process per command cost a torch start-up each)
    driver = ("import sys\nfrom lossmap.cli import main\n"
              f"for argv in {commands!r}:\n"
              "    code = main(argv)\n"
              "    if code:\n"
              "        sys.exit(f\"lossmap {' '.join(argv)}: exit status {code}\")\n")
    r = subprocess.run([sys.executable, "-c", driver], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for out in ("cli.lossmap", "cli.png", "cli.html"):
        assert (tmp_path / "runs" / out).stat().st_size > 0, out


# --------------------------------------------------------------------------- the generators


def test_cli_markdown_walks_nested_commands_and_keeps_text_literal():
    gen = _load("gen_cli")
    p = argparse.ArgumentParser(prog="tool", description="A tool.")
    p.add_argument("--debug", action="store_true", help="show *tracebacks*")
    sub = p.add_subparsers(dest="cmd")
    a = sub.add_parser("alpha", help="first | one", aliases=["al"])
    a.add_argument("path", help="a <file>")
    a.add_argument("--kind", choices=("x", "y"), default="x", help="which `kind`")
    a.add_argument("--n", type=int, default=0, help="how many")
    a.add_argument("--grid", action="append", help="LO:HI:N")
    a.add_argument("--secret", help=argparse.SUPPRESS)
    b = sub.add_parser("beta", help="second")
    inner = b.add_subparsers(dest="inner")
    inner.add_parser("gamma", help="nested").add_argument("--deep", required=True, help="d")

    md = gen.cli_markdown(p)
    assert gen.command_paths(p) == ["tool alpha", "tool beta", "tool beta gamma"]
    assert "## `tool alpha` {#tool-alpha}" in md
    assert "### `tool beta gamma` {#tool-beta-gamma}" in md  # one level deeper
    assert md.count("{#tool-alpha}") == 1  # the alias is not a second command
    assert "usage: tool beta gamma [-h] --deep DEEP" in md
    assert "- `--deep DEEP`: d (required)" in md
    assert "- `--kind {x,y}`: which `kind` (default `x`)" in md  # choices shown by the flag
    assert "- `--n N`: how many (default `0`)" in md  # a default of 0 is still a default
    assert "(may be repeated)" in md
    assert "--secret" not in md
    assert r"show \*tracebacks\*" in md and r"a \<file\>" in md and r"first \| one" in md


def test_sphinx_roles_become_optional_links(tmp_path):
    import griffe

    ext = _load("griffe_fill_doc")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""Top.\n\n:mod:`.sub` and :func:`~pkg.sub.f`, :class:`Thing`, '
        ':meth:`numpy.ndarray.sum`. Layout::\n\n    a/\n"""\n'
        "from .sub import Thing, f\n"
    )
    (pkg / "sub.py").write_text('"""Sub."""\nclass Thing:\n    """T."""\ndef f():\n    """F."""\n')
    mod = griffe.load("pkg", search_paths=[str(tmp_path)],
                      extensions=griffe.load_extensions(ext.SphinxRoles))
    doc = mod.docstring.value
    assert '<autoref identifier="pkg.sub" optional><code>sub</code></autoref>' in doc
    assert '<autoref identifier="pkg.sub.f" optional><code>f()</code></autoref>' in doc
    assert '<autoref identifier="pkg.sub.Thing" optional><code>Thing</code></autoref>' in doc
    assert ('<autoref identifier="numpy.ndarray.sum" optional>'
            "<code>numpy.ndarray.sum()</code></autoref>") in doc
    assert "Layout:\n" in doc and "::" not in doc
