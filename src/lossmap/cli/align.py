"""The ``lossmap align`` command: permute model B's hidden units to match model A's.

``lossmap align A B -o B_aligned.safetensors --model M:F [--method weights|activations]
[--data M:F [--split NAME] [--samples N]] [--max-iter K] [--seed S]``

``--data`` is needed by activation matching; with weight matching it gives
the inputs on which the copy is checked to compute B's function (else random
inputs of the shape the model's first layer takes).

Loads the two checkpoints into two instances of ``--model``, runs
:func:`lossmap.align.align` and writes the aligned copy of B as safetensors
(parameters and buffers, as ``model.state_dict()``); the permutation of each
group of units is stored in the file's metadata (``perms``, JSON). Prints the
groups found, the parameter distance from A before and after, and the time.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, InputTypeError
from .options import add_out
from .outputs import add_overwrite, check_out_file

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``align`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``align`` parser; :func:`run` takes the namespace it parses.
    """
    p = subparsers.add_parser(
        "align",
        help="permute model B's hidden units to match model A (Git Re-Basin)",
        description="Write a copy of checkpoint B whose hidden units are permuted to match "
        "checkpoint A: the same function as B, in A's unit order (weight matching, or "
        "activation matching on --data). The permutation structure is read off the model's "
        "torch.fx graph.",
    )
    p.add_argument("a", metavar="A", help="checkpoint of the reference model (.safetensors "
                                          "or torch state dict)")
    p.add_argument("b", metavar="B", help="checkpoint of the model to align")
    add_out(p, required=True, help="the aligned copy of B, FILE.safetensors")
    p.add_argument("--model", required=True,
                   help="MODULE:FUNCTION returning the nn.Module of both checkpoints")
    p.add_argument("--method", choices=("weights", "activations"), default="weights",
                   help="weight matching (default, no data) or activation matching (--data)")
    p.add_argument("--data", help="MODULE:FUNCTION returning {split: (X, y) | DataLoader}: "
                                  "the inputs of --method activations; with weights, the "
                                  "inputs on which the aligned copy's function is checked")
    p.add_argument("--split", help="the split of --data (default train, else the first)")
    p.add_argument("--samples", type=int,
                   help="a fixed random subset of the split (default all of it)")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=100,
                   help="weight matching: the most rounds of coordinate descent (default 100)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weight-matching order and of --samples (default 0)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow checkpoints that need pickle (only for files you trust)")
    add_overwrite(p)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    """Align and write; returns the exit status (0). Bad input raises InputError."""
    from ..align import align, permutations
    from ..data.splits import as_split
    from .entry import call_entry

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise InputError(f"-o {args.out!r}: the aligned model is written as safetensors, use "
                         "-o FILE.safetensors")
    check_out_file(out, overwrite=bool(getattr(args, "overwrite", False)) or _ours(out))
    if args.method == "activations" and not args.data:
        raise InputError("--method activations needs --data MODULE:FUNCTION (the inputs whose "
                         "activations are matched)")
    if not args.data and (args.split or args.samples is not None):
        raise InputError("--split and --samples choose inputs of --data: add --data "
                         "MODULE:FUNCTION, or drop them")
    model_a = _model(args, args.a, "A")
    model_b = _model(args, args.b, "B", not_this=model_a)
    data = None
    if args.data:
        splits = call_entry(args.data, what="--data")
        if not isinstance(splits, dict) or not splits:
            raise InputError(f"--data {args.data!r} must return a dict of splits "
                             "{name: (X, y) | DataLoader}")
        name = args.split or ("train" if "train" in splits else next(iter(splits)))
        if name not in splits:
            raise InputError(f"--split {name!r} is not a split of --data ({', '.join(splits)})")
        split = as_split(splits[name], name, samples=args.samples, seed=args.seed)
        data = (split.X, split.y)
    t0 = time.perf_counter()
    aligned = align(model_a, model_b, method=args.method, data=data, max_iter=args.max_iter,
                    seed=args.seed)
    perms = permutations(aligned)
    seconds = time.perf_counter() - t0
    before, after = _distance(model_a, model_b), _distance(model_a, aligned)
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in perms.values())
    units = sum(len(p) for p in perms.values())
    meta = {"lossmap": "align", "method": args.method, "a": str(args.a), "b": str(args.b),
            "perms": json.dumps({k: v.tolist() for k, v in perms.items()})}
    _save(out, aligned, meta)
    groups = f"{len(perms)} group{'' if len(perms) == 1 else 's'}"
    print(f"aligned {args.b} to {args.a} ({args.method}): {groups}, "
          f"{moved} of {units} units moved, {seconds:.2f} s")
    print(f"  parameter distance to A  {before:.6g} -> {after:.6g}")
    print(f"wrote {out}")
    return 0


def _model(args: argparse.Namespace, path: str, what: str,
           not_this: nn.Module | None = None) -> nn.Module:
    """A fresh instance of --model holding checkpoint ``path``."""
    from .. import params as P
    from .directions import checkpoint_of, load_model

    model = load_model(args.model)
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"--model {args.model!r} returned a {type(model).__name__}: "
                             "align works on PyTorch models (torch.nn.Module)")
    if model is not_this:  # the function returns one cached instance: use a copy
        model = copy.deepcopy(model)
    state = checkpoint_of(model, path, what=what, trust_pickle=bool(args.trust_pickle))
    params, buffers = P.resolve_centre(model, state)
    with torch.no_grad():
        for name, t in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items():
            t.copy_((params | buffers)[name])
    return model


def _distance(a: nn.Module, b: nn.Module) -> float:
    pb = dict(b.named_parameters())
    return float(sum(((p.detach().double() - pb[k].detach().double()) ** 2).sum()
                     for k, p in a.named_parameters()) ** 0.5)


def _save(out: Path, model: nn.Module, meta: dict[str, str]) -> None:
    from ..files import cpu_copies, write_state

    out.parent.mkdir(parents=True, exist_ok=True)
    # atomic: never half a file where the result goes
    write_state(out, cpu_copies(model.state_dict().items()), meta)


def _ours(path: Path) -> bool:
    """An existing file that ``lossmap align`` wrote (replaced without --overwrite)."""
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("lossmap") == "align"
    except Exception:  # not safetensors, unreadable: not ours
        return False
