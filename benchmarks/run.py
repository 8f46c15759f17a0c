"""lossmap speed and memory benchmark: lossmap vs brute-force loops vs loss-landscapes.

    python benchmarks/run.py [--quick | --full] [--device cpu|cuda] [--repeats N]
                             [--out benchmarks/results/NAME.json] [--only WORKLOAD ...]

Prints a table per workload and writes JSON (see benchmarks/README.md). Within
each repeat the methods run one after another (A B C, A B C, ...), so machine
noise hits all of them alike; ratios are taken pair by pair, repeat by repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
with contextlib.suppress(ImportError):  # a checkout without an installed package: use its src/
    import lossmap  # noqa: F401
if "lossmap" not in sys.modules:
    sys.path.insert(0, str(HERE.parent / "src"))

import lossmap as lm  # noqa: E402
from lossmap.backends.torch import firstlayer  # noqa: E402
from lossmap.data import fashion_mnist  # noqa: E402
from lossmap.models import count_parameters, fashion_cnn, mlp  # noqa: E402

import hardware  # noqa: E402
import methods as M  # noqa: E402
import peers  # noqa: E402

WORKLOADS = ("mlp", "cnn", "original", "memory")

# Sizes per mode. "default" is the setting; "quick" is a smoke test.
SIZES = {
    "default": {
        "mlp_samples": 10_000,
        "mlp_grid": (-1.0, 1.0, 21),
        "cnn_samples": 2048,
        "cnn_grid": (-1.0, 1.0, 21),
        "original_samples": 512,
        "original_grid": (-0.3, 0.3, 51),
        "memory_sizes": (4096, 4096, 4096, 4096, 10),
        "memory_samples": 64,
        "memory_points": 5,
    },
    "quick": {
        "mlp_samples": 1000,
        "mlp_grid": (-1.0, 1.0, 5),
        "cnn_samples": 256,
        "cnn_grid": (-1.0, 1.0, 5),
        "original_samples": 128,
        "original_grid": (-0.3, 0.3, 5),
        "memory_sizes": (1024, 1024, 1024, 10),
        "memory_samples": 64,
        "memory_points": 5,
    },
}
SIZES["full"] = SIZES["default"]
WARMUP_GRID = (-1.0, 1.0, 2)  # per axis, for the untimed warm-up call of each method


@dataclass
class Context:
    """What every workload needs: options, device, the measured peak, the peer's state."""

    mode: str
    sizes: dict
    device: torch.device
    threads: int
    repeats: int
    peak_gflops: float
    ll_skip: str | None  # why loss-landscapes is not run, None when it is
    tmp: Path
    compile: bool = False  # also time lm.scan(compile=True)
    autocast: str | None = None  # also time lm.scan(autocast=...)


# -- data and models ---------------------------------------------------------------


def images(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first n Fashion-MNIST images of a split, or random ones where the files are missing."""
    try:
        X, y = fashion_mnist(split)
        return X[:n].contiguous(), y[:n].contiguous(), f"Fashion-MNIST {split}"
    except FileNotFoundError:
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        X = torch.rand(n, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        return X, y, "random images (Fashion-MNIST files not found)"


def seeded(build: Callable[[], nn.Module], device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return build().to(device).eval()


# -- measuring -----------------------------------------------------------------------


def measure(methods: dict[str, Callable[[tuple], M.Run]], axes, ctx: Context) -> dict:
    """Warm each method up once on a tiny grid, then run them interleaved ``repeats`` times."""
    warm_axes = [WARMUP_GRID] * len(axes)
    for name, fn in methods.items():
        if getattr(fn, "no_warmup", False):
            log(f"    {name}: no warm-up (a fresh process per run)")
        else:
            fn(warm_axes)
            log(f"    warmed up {name}")
    runs: dict[str, list[M.Run]] = {name: [] for name in methods}
    for r in range(ctx.repeats):
        for name, fn in methods.items():
            run = fn(axes)
            runs[name].append(run)
            log(f"    repeat {r + 1}/{ctx.repeats}  {name:<22} {run.seconds:9.3f} s")
    return runs


def summarize(runs: dict[str, list[M.Run]], flops: dict[str, int], ctx: Context) -> dict:
    """Per method: raw seconds, median, and the achieved rate on the FLOPs it does."""
    out = {}
    for name, rs in runs.items():
        secs = [r.seconds for r in rs]
        med = statistics.median(secs)
        entry = {"seconds": secs, "median_s": med, "min_s": min(secs), "max_s": max(secs)}
        if flops.get(name):
            gflops = flops[name] / med / 1e9
            entry |= {
                "flops": flops[name],
                "gflops": gflops,
                "fraction_of_peak": gflops / ctx.peak_gflops,
            }
        if rs[-1].info:
            entry["info"] = rs[-1].info
        out[name] = entry
    return out


def paired_ratios(runs: dict[str, list[M.Run]], ref: str = "lossmap") -> dict:
    """time(other) / time(ref), repeat by repeat (each pair ran back to back)."""
    out = {}
    for name, rs in runs.items():
        if name == ref:
            continue
        per = [o.seconds / r.seconds for o, r in zip(rs, runs[ref], strict=True)]
        out[f"{name}/{ref}"] = {"per_repeat": per, "median": statistics.median(per)}
    return out


def agreement(runs: dict[str, list[M.Run]], ref: str = "lossmap") -> dict:
    """Largest |loss difference| between each method and lossmap on the same points."""
    base = runs[ref][-1].values
    return {
        name: float(abs(rs[-1].values - base).max())
        for name, rs in runs.items()
        if name != ref and rs[-1].values is not None
    }


# -- FLOPs and the hardware bound -----------------------------------------------------


def forward_flops(model: nn.Module, data: dict, device: torch.device) -> int:
    """FLOPs of one forward pass of the model over every split."""
    return sum(hardware.count_flops(lambda X=X: model(X.to(device))) for X, _ in data.values())


def first_layer_flops(model: nn.Module, data: dict, device: torch.device) -> int:
    """FLOPs of the first layer over every split (0 when lossmap's reuse does not apply)."""
    state = dict(model.state_dict())
    first = firstlayer.detect(model, state, next(iter(data.values()))[0][:2].to(device))
    if first is None:
        return 0
    return sum(
        hardware.count_flops(lambda X=X: first.output(X.to(device), state))
        for X, _ in data.values()
    )


def lossmap_flops(brute: int, first: int, points: int, ndim: int, info: dict) -> int:
    """FLOPs of the work lossmap does: the first layer once per direction term when reused."""
    if not info.get("reuses_first_layer"):
        return brute * points
    per_point = brute - first
    terms = (1 + ndim) * first  # Y_c, Y_1, ..., Y_ndim
    if not info.get("first_layer_cached"):
        terms *= math.ceil(points / max(info.get("chunk", 1), 1))  # once per chunk
    return per_point * points + terms


def bound(model, data, axes, runs, ctx: Context) -> tuple[dict, dict[str, int]]:
    """The hardware bound of the lossmap run, and the FLOPs each method does."""
    points, ndim = M.n_points(axes), len(axes)
    brute = forward_flops(model, data, ctx.device)
    first = first_layer_flops(model, data, ctx.device)
    flops = {name: brute * points for name in runs}  # the loops: one full forward per point
    for name, rs in runs.items():
        if name.startswith("lossmap"):
            flops[name] = lossmap_flops(brute, first, points, ndim, rs[-1].info)
    lossmap_secs = statistics.median(r.seconds for r in runs["lossmap"])
    bound_s = flops["lossmap"] / (ctx.peak_gflops * 1e9)
    return {
        "forward_flops_per_point": brute,
        "first_layer_flops_per_point": first,
        "brute_force_flops": brute * points,
        "lossmap_flops": flops["lossmap"],
        "first_layer_reused": bool(runs["lossmap"][-1].info.get("reuses_first_layer")),
        "peak_gflops": ctx.peak_gflops,
        "bound_s": bound_s,
        "lossmap_median_s": lossmap_secs,
        "achieved_gflops": flops["lossmap"] / lossmap_secs / 1e9,
        "fraction_of_peak": bound_s / lossmap_secs,
    }, flops


# -- the methods, bound to a workload's model and data --------------------------------


def lossmap_methods(model, data, dirs, ctx: Context) -> dict[str, Callable]:
    """lossmap as users run it; with --full also its strategy variants."""
    out = {"lossmap": partial(M.lossmap_scan, model, data, dirs, device=ctx.device)}
    if ctx.mode == "full":
        out["lossmap[vmap]"] = partial(
            M.lossmap_scan, model, data, dirs, device=ctx.device, strategy="vmap"
        )
        out["lossmap[loop]"] = partial(
            M.lossmap_scan, model, data, dirs, device=ctx.device, strategy="loop"
        )
        out["lossmap[no-reuse]"] = partial(
            M.lossmap_scan, model, data, dirs, device=ctx.device, reuse_first_layer=False
        )
    if ctx.compile:
        out["lossmap[compile]"] = partial(
            M.lossmap_scan, model, data, dirs, device=ctx.device, compile=True
        )
    if ctx.autocast:
        out[f"lossmap[{ctx.autocast}]"] = partial(
            M.lossmap_scan, model, data, dirs, device=ctx.device, autocast=ctx.autocast
        )
    return out


def loop_method(fn, model, data, dirs, ctx: Context) -> Callable:
    return lambda axes: fn(model, data, dirs, axes, ctx.device)


def ll_plane_method(model, X, y, ctx: Context) -> Callable:
    """loss-landscapes' random_plane in its venv; time only (its directions differ)."""
    model_path, data_path = ctx.tmp / "ll_model.pt", ctx.tmp / "ll_data.pt"
    torch.save(model.cpu(), model_path)
    model.to(ctx.device)
    torch.save({"X": X.cpu(), "y": y.cpu()}, data_path)

    def run(axes) -> M.Run:
        lo, hi, n = axes[0]
        args = ["ll-plane", str(model_path), str(data_path), "--steps", str(n)]
        # In 3.0.6 the plane spans ±‖c‖/(2·distance) per direction: 1/(hi-lo) spans ±‖c‖.
        args += ["--distance", str(1.0 / (hi - lo))]
        answer = peers.run_worker(peers.ll_python(), args, ctx.threads)
        return M.Run(answer["seconds"], None, {"points": answer["points"]})

    run.no_warmup = True  # a fresh process each time; its own first forward is in the time
    return run


# -- workloads ------------------------------------------------------------------------


def timing_workload(title, model, data, axes, methods, ctx: Context, notes=()) -> dict:
    """Shared tail of the timed workloads: measure, summarize, bound, agreement."""
    log(f"== {title}")
    runs = measure(methods, axes, ctx)
    info, flops = bound(model, data, axes, runs, ctx)
    return {
        "title": title,
        "params": count_parameters(model),
        "samples": {name: len(y) for name, (_, y) in data.items()},
        "grid": [list(a) for a in axes],
        "points": M.n_points(axes),
        "methods": summarize(runs, flops, ctx),
        "ratios": paired_ratios(runs),
        "agreement_max_abs_loss_diff": agreement(runs),
        "bound": info,
        "notes": list(notes),
    }


def workload_mlp(ctx: Context) -> dict:
    """MLP 784-512-512-10 on 10k samples, 21×21 plane: lossmap vs plain loop vs loss-landscapes."""
    s = ctx.sizes
    model = seeded(mlp, ctx.device)
    X, y, source = images("train", s["mlp_samples"])
    data = {"train": (X, y)}
    dirs = lm.random_directions(model, 2, seed=0)
    axes = [s["mlp_grid"]] * 2
    methods = lossmap_methods(model, data, dirs, ctx)
    methods["plain_loop"] = loop_method(M.plain_loop, model, data, dirs, ctx)
    notes = [f"data: {source}"]
    if ctx.ll_skip is None:
        methods["loss_landscapes"] = ll_plane_method(model, X, y, ctx)
        notes.append(
            "loss_landscapes: random_plane, same points and samples, its own (uniform [0,1)) "
            "directions and snake-order grid: time only, not comparable values"
        )
    else:
        notes.append(f"loss_landscapes skipped: {ctx.ll_skip}")
    title = f"mlp: MLP 784-512-512-10, {len(y):,} samples, plane {axes[0][2]}×{axes[1][2]}"
    return timing_workload(title, model, data, axes, methods, ctx, notes) | {"data": source}


def workload_cnn(ctx: Context) -> dict:
    """fashion_cnn on 2,048 test images, 21×21 plane: lossmap vs plain loop vs Li-style loop."""
    s = ctx.sizes
    model = seeded(fashion_cnn, ctx.device)
    X, y, source = images("test", s["cnn_samples"])
    data = {"test": (X, y)}
    dirs = lm.random_directions(model, 2, seed=0)
    axes = [s["cnn_grid"]] * 2
    methods = lossmap_methods(model, data, dirs, ctx)
    methods["plain_loop"] = loop_method(M.plain_loop, model, data, dirs, ctx)
    methods["li_style_loop"] = loop_method(M.li_style_loop, model, data, dirs, ctx)
    title = f"cnn: fashion_cnn, {len(y):,} test images, plane {axes[0][2]}×{axes[1][2]}"
    notes = [f"data: {source}", "li_style_loop: p.data = ... per point, DataLoader(batch 128)"]
    return timing_workload(title, model, data, axes, methods, ctx, notes) | {"data": source}


def workload_original(ctx: Context) -> dict:
    """The original setting: one 512-sample train and one test batch, 51×51 on [-0.3, 0.3]²."""
    s = ctx.sizes
    model = seeded(fashion_cnn, ctx.device)
    n = s["original_samples"]
    Xtr, ytr, source = images("train", n)
    Xte, yte, _ = images("test", n)
    data = {"train": (Xtr, ytr), "test": (Xte, yte)}
    dirs = lm.random_directions(model, 2, seed=0)
    axes = [s["original_grid"]] * 2
    methods = lossmap_methods(model, data, dirs, ctx)
    methods["plain_loop"] = loop_method(M.plain_loop, model, data, dirs, ctx)
    title = (
        f"original: fashion_cnn, {n} train + {n} test samples, "
        f"plane {axes[0][2]}×{axes[1][2]} on [{axes[0][0]}, {axes[0][1]}]²"
    )
    notes = [f"data: {source}"]
    return timing_workload(title, model, data, axes, methods, ctx, notes) | {"data": source}


def workload_memory(ctx: Context) -> dict:
    """Peak RSS of a 5-point line through a ~50M-parameter MLP, each run in a fresh process."""
    s = ctx.sizes
    sizes = s["memory_sizes"]
    params = count_parameters(mlp(sizes))
    title = (
        f"memory: MLP {'-'.join(map(str, sizes))} ({params:,} parameters), "
        f"{s['memory_samples']} samples, line of {s['memory_points']} points"
    )
    log(f"== {title}")
    pythons = {"lossmap": sys.executable}
    notes = [
        "each figure from a fresh process; RSS from /proc/self/status (VmRSS, and VmHWM reset "
        "after model and data are built); extra = peak - RSS with model and data"
    ]
    if ctx.ll_skip is None:
        pythons["loss_landscapes"] = str(peers.ll_python())
        notes.append("loss_landscapes: random_line (filter normalization, deepcopy_model=False)")
    else:
        notes.append(f"loss_landscapes skipped: {ctx.ll_skip}")
    if ctx.device.type != "cpu":
        notes.append("host memory, measured on the CPU whatever --device says")
    args = ["memory", "--sizes", ",".join(map(str, sizes))]
    args += ["--samples", str(s["memory_samples"]), "--points", str(s["memory_points"])]
    raw: dict[str, list[dict]] = {name: [] for name in pythons}
    for r in range(ctx.repeats):
        for name, python in pythons.items():
            method = name.replace("_", "-")
            answer = peers.run_worker(python, [*args, "--method", method], ctx.threads)
            raw[name].append(answer)
            peak, extra = answer["rss_peak_mb"], answer["extra_mb"]
            log(f"    repeat {r + 1}/{ctx.repeats}  {name:<22} peak {peak:8.1f} MiB", end="")
            log(f"  extra {extra:8.1f} MiB")
    keys = ("rss_peak_mb", "extra_mb", "extra_over_model", "footprint_over_model_data", "seconds")
    summary = {
        name: {
            **{k: statistics.median(a[k] for a in answers) for k in keys},
            "model_mb": answers[0]["model_mb"],
            "data_mb": answers[0]["data_mb"],
            "rss_import_mb": statistics.median(a["rss_import_mb"] for a in answers),
            "runs": answers,
        }
        for name, answers in raw.items()
    }
    return {"title": title, "params": params, "methods": summary, "notes": notes}


WORKLOAD_FNS = {
    "mlp": workload_mlp,
    "cnn": workload_cnn,
    "original": workload_original,
    "memory": workload_memory,
}


# -- output ---------------------------------------------------------------------------


def log(msg: str, end: str = "\n") -> None:
    print(msg, file=sys.stderr, flush=True, end=end)


def timing_table(w: dict) -> str:
    head = f"{'method':<22} {'median s':>10} {'min s':>9} {'max s':>9} {'× lossmap':>10}"
    head += f" {'GFLOP/s':>9} {'% peak':>7}"
    lines = [w["title"], head]
    for name, m in w["methods"].items():
        ratio = w["ratios"].get(f"{name}/lossmap", {}).get("median", 1.0)
        rate = f"{m['gflops']:9.1f} {100 * m['fraction_of_peak']:6.1f}%" if "gflops" in m else ""
        lines.append(
            f"{name:<22} {m['median_s']:10.3f} {m['min_s']:9.3f} {m['max_s']:9.3f} "
            f"{ratio:9.2f}× {rate}"
        )
    b = w["bound"]
    lines.append(
        f"bound: lossmap does {b['lossmap_flops'] / 1e9:,.1f} GFLOP (brute force "
        f"{b['brute_force_flops'] / 1e9:,.1f}; first layer reused: {b['first_layer_reused']}); "
        f"at the {b['peak_gflops']:.1f} GFLOP/s matmul peak ≥ {b['bound_s']:.3f} s; "
        f"achieved {b['achieved_gflops']:.1f} GFLOP/s = {100 * b['fraction_of_peak']:.1f} % of peak"
    )
    if w["agreement_max_abs_loss_diff"]:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in w["agreement_max_abs_loss_diff"].items())
        lines.append(f"max |loss − lossmap's| on the same points: {diffs}")
    lines += [f"note: {n}" for n in w["notes"]]
    return "\n".join(lines)


def memory_table(w: dict) -> str:
    head = f"{'method':<22} {'peak MiB':>9} {'extra MiB':>10} {'extra/model':>12}"
    head += f" {'(peak-import)/(model+data)':>27}"
    lines = [w["title"], head]
    for name, m in w["methods"].items():
        lines.append(
            f"{name:<22} {m['rss_peak_mb']:9.1f} {m['extra_mb']:10.1f} "
            f"{m['extra_over_model']:11.2f}× {m['footprint_over_model_data']:26.2f}×"
        )
    first = next(iter(w["methods"].values()))
    lines.append(f"model {first['model_mb']:.1f} MiB, data {first['data_mb']:.2f} MiB")
    lines += [f"note: {n}" for n in w["notes"]]
    return "\n".join(lines)


def report(result: dict) -> str:
    m, p = result["machine"], result["peak_matmul"]
    lines = [
        f"lossmap benchmark ({result['mode']}, {result['repeats']} repeats) on {m['cpu_model']}, "
        f"{m['cores']} cores, {m['torch_threads']} threads, torch {m['torch']}, "
        f"device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}, {m['date']}",
        f"matmul peak ({p['n']}³ float32): {p['gflops']:.1f} GFLOP/s (median of "
        f"{len(p['seconds'])}; {result['peak_matmul_end']['gflops']:.1f} again at the end)",
    ]
    for name, w in result["workloads"].items():
        lines.append("")
        lines.append(memory_table(w) if name == "memory" else timing_table(w))
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: a smoke test")
    size.add_argument(
        "--full",
        action="store_true",
        help="also time lossmap's strategy variants (vmap, loop, "
        "no first-layer reuse) beside the default",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--repeats", type=int, help="repeats per method (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/MODE-DEVICE.json)"
    )
    p.add_argument(
        "--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)"
    )
    p.add_argument(
        "--grid",
        type=int,
        help="points per axis for every plane workload (same ranges and samples; the per-point "
        "work is unchanged, so ratios stay comparable and lossmap's one-time costs weigh more)",
    )
    p.add_argument("--no-ll", action="store_true", help="never run loss-landscapes")
    p.add_argument("--compile", action="store_true",
                   help="also time lm.scan(compile=True) (compiled in the untimed warm-up)")
    p.add_argument("--autocast", choices=("bfloat16", "float16"),
                   help="also time lm.scan(autocast=...) (meant for GPUs)")
    p.add_argument(
        "--setup-ll", action="store_true", help="only create the loss-landscapes venv, then exit"
    )
    return p.parse_args(argv)


def ll_skip_reason(args: argparse.Namespace, mode: str, device: torch.device) -> str | None:
    """Why loss-landscapes will not run (None: it will); creates its venv when needed."""
    if args.no_ll:
        return "--no-ll given"
    if device.type != "cpu":
        return "loss-landscapes 3.0.6 draws directions with torch.rand on the CPU: CPU only"
    if mode == "quick":
        return peers.ll_status()
    return peers.ensure_ll_venv()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.setup_ll:
        reason = peers.ensure_ll_venv()
        print(reason or f"loss-landscapes {peers.LL_VERSION} ready in {peers.LL_VENV}")
        sys.exit(1 if reason else 0)
    mode = "quick" if args.quick else "full" if args.full else "default"
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    ll_skip = ll_skip_reason(args, mode, device)
    peak = hardware.peak_matmul(device)
    sizes = dict(SIZES[mode])
    if args.grid:
        for key in ("mlp_grid", "cnn_grid", "original_grid"):
            lo, hi, _ = sizes[key]
            sizes[key] = (lo, hi, args.grid)
    with tempfile.TemporaryDirectory(prefix="lossmap-bench-") as tmp:
        ctx = Context(
            mode=mode,
            sizes=sizes,
            device=device,
            threads=args.threads,
            repeats=args.repeats or (1 if args.quick else 3),
            peak_gflops=peak["gflops"],
            ll_skip=ll_skip,
            tmp=Path(tmp),
            compile=args.compile,
            autocast=args.autocast,
        )
        result = {
            "schema": "lossmap-benchmark/1",
            "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
            "mode": mode,
            "grid_override": args.grid,
            "repeats": ctx.repeats,
            "machine": hardware.machine_info(device),
            "peak_matmul": peak,
            "loss_landscapes": {"version": peers.LL_VERSION, "skipped": ll_skip},
            "workloads": {},
        }
        for name in args.only or WORKLOADS:
            result["workloads"][name] = WORKLOAD_FNS[name](ctx)
    result["peak_matmul_end"] = hardware.peak_matmul(device)
    out = args.out or HERE / "results" / f"{mode}-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
