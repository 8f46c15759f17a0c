"""The machine, the measured matrix-multiply peak, and FLOP counts of forward passes."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

PEAK_N = 2048  # the peak is the rate of an N×N by N×N float32 torch.mm


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul(device: torch.device, repeats: int = 5, n: int = PEAK_N) -> dict:
    """Median time and rate of an n³ float32 matrix product (after two warm-up runs)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    for _ in range(2):
        torch.mm(a, b)
    sync(device)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        seconds.append(time.perf_counter() - t0)
    flops = 2 * n**3
    median = statistics.median(seconds)
    return {
        "n": n,
        "flops": flops,
        "seconds": seconds,
        "median_s": median,
        "gflops": flops / median / 1e9,
    }


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products and convolutions that ``fn()`` runs (torch's flop counter)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
