"""Subprocess side of the benchmark: one measurement per process, one JSON line on stdout.

Runs under the project's Python (lossmap) or under the loss-landscapes
virtual environment, so it imports nothing but the standard library and
torch at the top; each library is imported inside the command that uses it.

Commands
--------
``ll-plane MODEL DATA --steps N --distance D``
    Time ``loss_landscapes.random_plane`` on a pickled model and an (X, y) batch.
``memory --method {lossmap,loss-landscapes} --sizes 784,512,10``
    Peak RSS of a line of points through a freshly built MLP, in this fresh
    process: the high-water mark (VmHWM) is reset after the model and data
    are built, so the peak is the method's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

MB = 1024**2


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _rss_now() -> int:
    """Current resident set size in bytes."""
    return _status_kib("VmRSS") * 1024


def _rss_peak() -> int:
    """Peak resident set size of this process's memory since the last reset, in bytes.

    Not ``getrusage().ru_maxrss``: after fork/exec Linux carries the parent's
    high-water mark into it, so a child of the (larger) benchmark process
    would report the parent's peak.
    """
    return _status_kib("VmHWM") * 1024


def _reset_peak() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Flatten then Linear/ReLU layers: the same layout as ``lossmap.models.mlp``."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# -- loss-landscapes plane --------------------------------------------------------


def ll_plane(args: argparse.Namespace) -> dict:
    import loss_landscapes as ll
    from loss_landscapes.metrics import Loss

    model = torch.load(args.model, weights_only=False)
    data = torch.load(args.data)
    metric = Loss(nn.CrossEntropyLoss(), data["X"], data["y"])
    t0 = time.perf_counter()
    values = ll.random_plane(
        model, metric, distance=args.distance, steps=args.steps, normalization="filter"
    )
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "points": int(values.size), "shape": list(values.shape)}


# -- memory -------------------------------------------------------------------------


def _lossmap_line(model: nn.Module, X: torch.Tensor, y: torch.Tensor, points: int) -> None:
    import lossmap as lm

    lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=lm.random_direction(model, seed=0),
        grid=(-1.0, 1.0, points),
        metrics=("loss",),
        progress=False,
    )


def _ll_line(model: nn.Module, X: torch.Tensor, y: torch.Tensor, points: int) -> None:
    import loss_landscapes as ll
    from loss_landscapes.metrics import Loss

    metric = Loss(nn.CrossEntropyLoss(), X, y)
    ll.random_line(model, metric, distance=1.0, steps=points, normalization="filter")


LINES = {"lossmap": _lossmap_line, "loss-landscapes": _ll_line}


def _import_lossmap() -> None:
    try:
        import lossmap
    except ImportError:  # a checkout without an installed package: use its src/
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        import lossmap  # noqa: F401


def memory(args: argparse.Namespace) -> dict:
    line = LINES[args.method]
    if args.method == "lossmap":
        _import_lossmap()
    else:
        import loss_landscapes  # noqa: F401
    # Warm up on a tiny model so lazily imported modules are not counted as the method's.
    tiny = _mlp([4, 3, 2]).eval()
    line(tiny, torch.randn(8, 4), torch.randint(0, 2, (8,)), 3)
    rss_import = _rss_now()

    sizes = [int(s) for s in args.sizes.split(",")]
    torch.manual_seed(0)
    model = _mlp(sizes).eval()
    X = torch.randn(args.samples, sizes[0])
    y = torch.randint(0, sizes[-1], (args.samples,))
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    data_bytes = X.nbytes + y.nbytes
    rss_ready = _rss_now()
    if not _reset_peak():  # the peak so far then bounds the method's from below
        rss_ready = _rss_peak()

    t0 = time.perf_counter()
    line(model, X, y, args.points)
    seconds = time.perf_counter() - t0
    rss_peak = _rss_peak()
    return {
        "method": args.method,
        "params": sum(p.numel() for p in model.parameters()),
        "model_mb": model_bytes / MB,
        "data_mb": data_bytes / MB,
        "rss_import_mb": rss_import / MB,
        "rss_ready_mb": rss_ready / MB,
        "rss_peak_mb": rss_peak / MB,
        "extra_mb": (rss_peak - rss_ready) / MB,
        "extra_over_model": (rss_peak - rss_ready) / model_bytes,
        "footprint_over_model_data": (rss_peak - rss_import) / (model_bytes + data_bytes),
        "seconds": seconds,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ll-plane")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--distance", type=float, required=True)
    p.set_defaults(fn=ll_plane)
    p = sub.add_parser("memory")
    p.add_argument("--method", choices=sorted(LINES), required=True)
    p.add_argument("--sizes", required=True, help="MLP layer sizes, comma-separated")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--points", type=int, default=5)
    p.set_defaults(fn=memory)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(args.fn(args)))


if __name__ == "__main__":
    main()
