"""loss-landscapes in its own virtual environment, and the subprocess runs of ``worker.py``.

loss-landscapes is never imported by lossmap or copied into the repository:
the benchmark installs the released package into ``benchmarks/.venvs/ll``
(git-ignored) with the same torch version as the project, CPU build only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
LL_VENV = HERE / ".venvs" / "ll"
LL_VERSION = "3.0.6"


def ll_python() -> Path:
    return LL_VENV / "bin" / "python"


def _torch_release() -> str:
    """The project's torch version without a local tag: '2.13.0+cpu' -> '2.13.0'."""
    return torch.__version__.split("+")[0]


def ll_status() -> str | None:
    """None when the venv is usable, else why not."""
    if not ll_python().exists():
        return f"no virtual environment at {LL_VENV} (a run without --quick creates it)"
    probe = (
        "import importlib.metadata as m, torch, loss_landscapes; "
        "print(m.version('loss-landscapes'), torch.__version__, torch.version.cuda)"
    )
    out = subprocess.run([ll_python(), "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"{LL_VENV} is broken: {out.stderr.strip().splitlines()[-1:]}"
    version, torch_version, cuda = out.stdout.split()
    if version != LL_VERSION or torch_version.split("+")[0] != _torch_release():
        return (
            f"{LL_VENV} has loss-landscapes {version} with torch {torch_version}; "
            f"expected {LL_VERSION} with torch {_torch_release()}: delete it to rebuild"
        )
    if cuda != "None":
        return f"{LL_VENV} has a CUDA torch build ({cuda}); delete it to rebuild with the CPU one"
    return None


def _pip(*args: str) -> None:
    cmd = [str(ll_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    print("  $ pip install", " ".join(args), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{out.stderr.strip()[-2000:]}")


def ensure_ll_venv() -> str | None:
    """Create the loss-landscapes venv if it is missing; None when usable, else why not.

    torch is pinned to the project's release with the ``+cpu`` local tag, so
    pip takes the CPU wheel or fails; it never pulls a CUDA build. The
    package goes in with ``--no-deps`` (its metadata asks for nothing torch
    does not already give, except numpy, installed on its own).
    """
    if ll_status() is None:
        return None
    print(f"creating {LL_VENV} (loss-landscapes {LL_VERSION}) ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LL_VENV)], check=True)
        _pip(f"torch=={_torch_release()}+cpu")
        _pip("numpy")
        _pip("--no-deps", f"loss-landscapes=={LL_VERSION}")
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        return f"could not create {LL_VENV}: {exc}"
    return ll_status()


def run_worker(python: Path | str, args: list[str], threads: int, timeout: float | None = None):
    """Run ``worker.py`` under ``python``; its JSON answer as a dict."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = [str(python), str(WORKER), "--threads", str(threads), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
