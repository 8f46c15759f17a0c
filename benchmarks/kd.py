"""Points per second of a 4-D scan: against a plane of as many points, and against landscaper.

Same model (the demo's digits CNN, 3,658 parameters), same data (the 1,348
training digits, one full batch per point), same loss (cross-entropy mean),
one torch thread for everything, and the same grid: landscaper 1.3.1's
``compute_loss_landscape`` walks from the centre by repeated additions of its
directions after normalising and scaling them; lossmap is given those very
steps as its directions, with the grid ``-(S//2) … S-1-S//2`` per axis, so
both evaluate the same S⁴ weight vectors. The plane has S² x S² points: as
many as the 4-D grid. Each repeat runs the three back to back (A B C, A B C,
…); the figures are medians, and the ratios are taken within each repeat.

Run::

    .venv/bin/python benchmarks/kd.py            # S = 7: 2,401 points, 3 repeats
    .venv/bin/python benchmarks/kd.py --steps 5 --repeats 1   # a smoke test

Results go to ``benchmarks/results/kd.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lossmap as lm
from lossmap.data.digits import digits
from lossmap.models.cnn import digits_cnn

HERE = Path(__file__).resolve().parent
DISTANCE = 0.5  # landscaper's total distance (relative to the model's norm)


def landscaper_steps(model: nn.Module, dirs: list[lm.Direction], steps: int) -> list[dict]:
    """The step landscaper takes along each direction, as lossmap Directions (same tensors).

    landscaper scales each tensor of a direction to norm √numel of the matching
    parameter, then the whole direction to ``‖θ‖ · distance / (steps / 2)``.
    """
    params = dict(model.named_parameters())
    theta = torch.sqrt(sum((p.detach() ** 2).sum() for p in params.values()))
    out = []
    for d in dirs:
        unit = {k: d[k] * (params[k].numel() ** 0.5 / (d[k].norm() + 1e-10)) for k in params}
        norm = torch.sqrt(sum((v**2).sum() for v in unit.values()))
        scale = (theta * DISTANCE / (steps / 2)) / norm
        out.append({k: (v * scale).detach() for k, v in unit.items()})
    return out


def run_landscaper(model, X, y, raw: list[lm.Direction], steps: int) -> np.ndarray:
    """landscaper's own loop, given the raw directions (it normalises and scales them itself)."""
    from landscaper.compute import compute_loss_landscape

    names = [k for k, _ in model.named_parameters()]
    dirs = [[d[k].clone() for k in names] for d in raw]

    def scalar_fn(m: nn.Module, data) -> float:
        return float(nn.functional.cross_entropy(m(data[0]), data[1]))

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        loss, _ = compute_loss_landscape(
            model,
            (X, y),
            dirs,
            scalar_fn,
            steps=steps,
            distance=DISTANCE,
            dim=len(dirs),
            device="cpu",
        )
    return loss


def run_lossmap(model, X, y, dirs, grid) -> lm.Surface:
    return lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=dirs,
        grid=grid,
        metrics=("loss",),
        progress=False,
        batch_size=len(X),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7, help="points per axis of the 4-D grid (odd)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "kd.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    S = args.steps
    X, y = digits("train")
    model = digits_cnn(seed=0).eval()
    raw = lm.random_directions(model, 4, seed=0, norm="none", ignore=None)
    steps_dirs = landscaper_steps(model, list(raw), S)
    dirs = [lm.Direction(d) for d in steps_dirs]
    axis = (-(S // 2), S - 1 - S // 2, S)
    plane_axis = (-1.0, 1.0, S * S)
    runs: dict[str, list[float]] = {"4-D": [], "plane": [], "landscaper 4-D": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}  # CPU seconds: a shared machine's
    agree = None  # wall clock counts the neighbours' load too

    def timed(name: str, fn, *a):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(*a)
        runs[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - c0)
        return out

    loop: dict[str, list[float]] = {"4-D": [], "plane": []}  # lossmap's points alone (wall)
    for _ in range(args.repeats):
        cube = timed("4-D", run_lossmap, model, X, y, dirs, [axis] * 4)
        plane = timed("plane", run_lossmap, model, X, y, dirs[:2], [plane_axis] * 2)
        loop["4-D"].append(cube.profile["seconds"])
        loop["plane"].append(plane.profile["seconds"])
        ref = timed("landscaper 4-D", run_landscaper, model, X, y, list(raw), S)
        ours = cube["train_loss"]
        keep = ref != ref.max()  # landscaper adds noise to its maximum values
        agree = float(np.max(np.abs(ours[keep] - ref[keep]) / np.abs(ref[keep])))
    points = S**4
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def ratio(times: dict, a: str, b: str) -> float:
        return statistics.median(y / x for x, y in zip(times[a], times[b], strict=True))

    ratios = {
        "4-D / plane (points/s, wall)": ratio(runs, "4-D", "plane"),
        "4-D / plane (points/s, CPU)": ratio(cpu, "4-D", "plane"),
        "4-D / landscaper (points/s, wall)": ratio(runs, "4-D", "landscaper 4-D"),
        "4-D / landscaper (points/s, CPU)": ratio(cpu, "4-D", "landscaper 4-D"),
        "4-D / plane (points/s, points alone, wall)": ratio(loop, "4-D", "plane"),
        "4-D points alone / landscaper (points/s, wall)": ratio(
            {"a": loop["4-D"], "b": runs["landscaper 4-D"]}, "a", "b"
        ),
    }
    from hardware import machine_info

    result = {
        "machine": machine_info(torch.device("cpu")),
        "model": "digits_cnn (3,658 parameters), 1,348 training digits, one batch per point",
        "points": points,
        "grid_4d": f"{S}^4",
        "plane": f"{S * S}x{S * S}",
        "seconds": runs,
        "cpu_seconds": cpu,
        "lossmap_points_alone_seconds": loop,
        "median_seconds": med,
        "median_cpu_seconds": med_cpu,
        "points_per_second": {k: points / v for k, v in med.items()},
        "points_per_cpu_second": {k: points / v for k, v in med_cpu.items()},
        "ratios": ratios,
        "largest_relative_difference_vs_landscaper": agree,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{points:,} points, {args.repeats} repeats, 1 thread, {result['machine']['cpu_model']}")
    for k, v in med.items():
        walls = ", ".join(f"{x:.2f}" for x in runs[k])
        print(
            f"  {k:<16} {v:8.2f} s wall ({walls})  {points / v:9.1f} points/s;"
            f"  {med_cpu[k]:8.2f} s CPU  {points / med_cpu[k]:9.1f} points/CPU-s"
        )
    for k, v in loop.items():
        m = statistics.median(v)
        print(
            f"  {k} points alone (set-up passes excluded): {m:.2f} s wall, "
            f"{points / m:.1f} points/s"
        )
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    print(f"  largest relative difference of a loss vs landscaper: {agree:.2e}")


if __name__ == "__main__":
    main()
