"""Report parts from what scans and ``lossmap hessian`` record: PCA, eigenvalues, density.

* :func:`meta_findings` — statements from a scan's annotations: the explained
  variance of PCA directions, the Hessian eigenvalues of eigen-directions, the
  models' coordinates of an interpolation or a plane through three models.
* :func:`curvature_section` — a section from the JSON that
  ``lossmap hessian -o FILE.json`` writes: top eigenvalues, the trace, the
  spectral density's summary and a figure of both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingFileError
from ..surface import Surface
from . import template as T


def meta_findings(surface: Surface) -> list[tuple[str, str, str]]:
    """(css class, label, sentence) for each analysis recorded in ``surface.meta``."""
    meta, out = surface.meta, []
    ratio = meta.get("explained_variance_ratio")
    if ratio:
        path = meta.get("path") or []
        out.append(("", "PCA directions", (
            "explained variance ratio " + " + ".join(f"{r:.3f}" for r in ratio)
            + f" = {sum(ratio):.3f} of the trajectory's spread around its final point"
            + (f"; the {len(path)} checkpoints are drawn as a path on the plane" if path else "")
        )))
    hess = meta.get("hessian")
    if isinstance(hess, dict) and hess.get("eigenvalues"):
        vals = ", ".join(f"{v:.4g}" for v in hess["eigenvalues"])
        out.append(("", "Hessian directions", (
            f"top-{len(hess['eigenvalues'])} eigenvalues of the {hess.get('split', '?')} "
            f"loss at the centre: {vals}; the scanned directions are the first "
            f"{len(surface.dims)} unit eigenvectors (α, β in parameter units)"
        )))
    models = meta.get("models")
    if isinstance(models, dict) and models:
        where = "; ".join(f"{k} at {tuple(round(float(x), 4) for x in v)}"
                          for k, v in models.items())
        out.append(("", "models", f"exact coordinates on the slice: {where}"))
    return out


def load_hessian(path: str | os.PathLike) -> dict:
    """The JSON written by ``lossmap hessian -o``, checked enough to report on."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"--hessian {str(path)!r} does not exist: write it with "
                               "`lossmap hessian ... -o FILE.json`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--hessian {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("eigenvalues"), list):
        raise InputError(f"--hessian {str(path)!r} has no 'eigenvalues' list: it is not the "
                         "output of `lossmap hessian -o`")
    return data


def curvature_section(result: dict, png: Any) -> str:
    """The report's curvature section for one ``lossmap hessian`` result.

    Parameters
    ----------
    result : dict
        As :func:`load_hessian` returns.
    png : callable
        ``png(fig) -> str``: the base64 PNG of a matplotlib figure (the report's own).

    Returns
    -------
    str
        HTML.
    """
    import matplotlib.pyplot as plt

    from ..plot.extra import plot_density, plot_eigenvalues

    vals = result["eigenvalues"]
    secs = result.get("seconds", {})
    where = result.get("checkpoint") or "the model's weights"
    items = [f"top-{len(vals)} eigenvalues of the {result.get('split', '?')} loss: "
             + ", ".join(f"{v:.4g}" for v in vals) + _took(secs, "eigenvalues")]
    trace = result.get("trace")
    if isinstance(trace, dict):
        items.append(f"trace {trace['estimate']:.4g} ± {trace['standard_error']:.3g} "
                     f"(Hutchinson, {trace.get('probes', '?')} probes)" + _took(secs, "trace"))
    dens = result.get("density")
    if isinstance(dens, dict):
        items.append(
            f"spectral density (stochastic Lanczos quadrature, {dens.get('probes', '?')} probes "
            f"× {dens.get('lanczos', '?')} steps): support [{dens['min']:.4g}, {dens['max']:.4g}]"
            f", mass below 0 {100 * dens['negative_mass']:.1f} %" + _took(secs, "density"))
    panels = 2 if isinstance(dens, dict) and dens.get("grid") else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False,
                             layout="constrained")
    plot_eigenvalues(vals, ax=axes[0, 0]).set_title("top eigenvalues")
    if panels == 2:
        plot_density(dens["grid"], dens["density"], ax=axes[0, 1]).set_title("spectral density")
    caption = "Top Hessian eigenvalues" + (" and the spectral density" if panels == 2 else "")
    figure = T.figure(png(fig), "Hessian eigenvalues", caption + ".")
    lis = "".join(f"<li>{T.esc(t)}</li>" for t in items)
    return (f'<section class="card" id="curvature"><h2>Curvature at {T.esc(str(where))}</h2>'
            f'<ul class="findings">{lis}</ul>{figure}</section>')


def _took(seconds: dict, key: str) -> str:
    return f" ({seconds[key]:.1f} s)" if isinstance(seconds.get(key), (int, float)) else ""
