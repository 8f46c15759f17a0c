"""The ``lossmap curve`` command: a trained curve or an elastic band between two checkpoints.

``lossmap curve A B --model M:F --data M:F [--loss cross_entropy] -o curve.safetensors
[--kind bezier|polychain] [--bends 1] [--epochs 20] [--lr 0.05] [--batch-size 128]
[--seed 0] [--neb [--pivots 8] [--steps 200] [--spring 1] [--climbing] [--insert K]]``

Without ``--neb`` the bends are trained (``lm.curve``, Garipov et al. 2018);
with it a polygonal chain is relaxed by the nudged elastic band (``lm.neb``,
Draxler et al. 2018). The curve is written as safetensors (``lm.Curve.load``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from .options import add_out
from .outputs import add_overwrite, check_out_file


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``curve`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``curve`` parser; :func:`run` takes the namespace it parses.
    """
    p = subparsers.add_parser(
        "curve",
        help="train a low-loss curve (or relax an elastic band) between two checkpoints",
        description="Train the bends of a Bézier curve or polygonal chain between checkpoints "
        "A and B with the endpoints fixed (Garipov et al. 2018), or with --neb relax a nudged "
        "elastic band (Draxler et al. 2018); write the curve as safetensors.",
    )
    p.add_argument("a", metavar="A", help="the first checkpoint (t = 0)")
    p.add_argument("b", metavar="B", help="the second checkpoint (t = 1)")
    p.add_argument("--model", required=True, help="MODULE:FUNCTION returning the nn.Module")
    p.add_argument("--data", required=True,
                   help="MODULE:FUNCTION returning {split: (X, y) | DataLoader} (the train "
                        "split is used, else the first)")
    p.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy (default), mse, or MODULE:NAME of a loss")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow checkpoints that need pickle (only for files you trust)")
    add_out(p, required=True, help="the curve file to write, e.g. curve.safetensors")
    p.add_argument("--kind", choices=("bezier", "polychain"), default="bezier",
                   help="trained curve: bezier (default) or polychain")
    p.add_argument("--bends", type=int, default=1, help="trained curve: bends (default 1)")
    p.add_argument("--epochs", type=int, default=20, help="trained curve: epochs (default 20)")
    p.add_argument("--lr", type=float,
                   help="learning rate (default 0.05) or, with --neb, step size (default 0.05)")
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help="samples per step (default 128; 256 with --neb)")
    p.add_argument("--seed", type=int, default=0, help="seeds batches, t and dropout")
    p.add_argument("--neb", action="store_true", help="relax a nudged elastic band instead")
    p.add_argument("--pivots", type=int, default=8, help="--neb: movable pivots (default 8)")
    p.add_argument("--steps", type=int, default=200, help="--neb: steps (default 200)")
    p.add_argument("--spring", type=float, default=1.0, help="--neb: spring constant")
    p.add_argument("--climbing", action="store_true", help="--neb: climbing image")
    p.add_argument("--insert", type=int, default=0,
                   help="--neb: pivots AutoNEB-style insertion may add (default 0)")
    p.add_argument("--device", help="cpu, cuda, … (default: the model's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_overwrite(p, own=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    return p


def _model_at(text: str, path: str, what: str, trust_pickle: bool) -> Any:
    """A fresh model from ``--model`` holding the checkpoint ``path``'s tensors."""
    import torch

    from ..params import resolve_centre
    from .directions import checkpoint_of, load_model

    model = load_model(text)
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"--model {text!r} returned a {type(model).__name__}; "
                             "lossmap curve needs a torch.nn.Module")
    state = checkpoint_of(model, path, what=what, trust_pickle=trust_pickle)
    params, buffers = resolve_centre(model, state)
    with torch.no_grad():
        for name, t in model.named_parameters():
            t.copy_(params[name])
        for name, t in model.named_buffers():
            if name in buffers:
                t.copy_(buffers[name])
    return model


def run(args: argparse.Namespace) -> int:
    """Train (or relax) and write the curve; returns the exit status (0)."""
    from ..curves.fit import curve
    from ..curves.neb import neb
    from .directions import load_loss
    from .entry import call_entry

    out = check_out_file(args.out, overwrite=bool(getattr(args, "overwrite", False)),
                         own=False)
    if out.suffix != ".safetensors":
        raise InputError(f"-o {args.out!r}: a curve is written as safetensors, use "
                         "-o FILE.safetensors")
    for path, what in ((args.a, "A"), (args.b, "B")):
        if not Path(path).is_file():
            raise InputError(f"checkpoint {what} {path!r} does not exist: name a .safetensors "
                             "or torch state-dict file")
    trust = bool(args.trust_pickle)
    model_a = _model_at(args.model, args.a, "A", trust)
    model_b = _model_at(args.model, args.b, "B", trust)
    data = call_entry(args.data, what="--data")
    loss_fn = load_loss(args.loss, model=model_a)
    common = {"seed": args.seed, "device": args.device, "progress": not args.no_progress}
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    if args.lr is not None:
        common["lr"] = args.lr
    if args.neb:
        result = neb(model_a, model_b, loss_fn, data, pivots=args.pivots, steps=args.steps,
                     spring=args.spring, climbing=args.climbing, insert=args.insert, **common)
        top = result.meta["saddle"]
        print(f"elastic band: {len(result)} pivots, highest loss {top['value']:.6g} at "
              f"t={top['t']:.3f} ({result.meta['seconds']:.1f} s)")
    else:
        result = curve(model_a, model_b, loss_fn, data, kind=args.kind, bends=args.bends,
                       epochs=args.epochs, **common)
        hist = result.meta["history"]
        last = f", last epoch's mean loss {hist[-1]:.6g}" if hist else ""
        print(f"{args.kind} curve with {args.bends} bend(s): {result.meta['steps']} steps in "
              f"{result.meta['seconds']:.1f} s{last}")
    result = result.with_meta(checkpoints=[str(args.a), str(args.b)], model=args.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    print(f"wrote {out}")
    return 0
