"""``lossmap train``: train a reference model on a reference data set and save the run.

``add_parser(subparsers)`` adds the subcommand; ``run(args)`` does the work and
returns the exit status. Errors a user can fix are raised as
:class:`~lossmap.errors.LossmapError` for the main command line to print.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import InputError, InputTypeError, MissingFileError
from ..seeding import seeded_rng
from .options import add_out

__all__ = ["DEFAULT_MODELS", "MODELS", "add_parser", "build_model", "run"]

#: The built-in ``--model`` names.
MODELS: tuple[str, ...] = ("fashion_cnn", "digits_cnn", "mlp")

#: ``--model`` when none is given, per ``--dataset``.
DEFAULT_MODELS: dict[str, str] = {
    "fashion_mnist": "fashion_cnn",
    "mnist": "fashion_cnn",
    "digits": "digits_cnn",
}

# Hidden layers of ``--model mlp``; the input size comes from the data.
_MLP_HIDDEN = (512, 512)
_NUM_CLASSES = 10


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``train`` parser.
    """
    p = subparsers.add_parser(
        "train",
        help="train a model with seeded SGD, saving θ0, θ̂, per-epoch checkpoints and history",
        description="Train with seeded SGD (cross-entropy) and save the run to --out: "
        "theta0/theta_hat.safetensors, checkpoints/epoch_NNN.safetensors, history.json, "
        "train.json.",
    )
    p.add_argument(
        "--dataset",
        choices=tuple(DEFAULT_MODELS),
        default="fashion_mnist",
        help="data set (default fashion_mnist)",
    )
    p.add_argument(
        "--data-root",
        dest="data_root",
        help="folder searched first for the IDX files (then $LOSSMAP_DATA, system, cache)",
    )
    p.add_argument(
        "--model",
        help="fashion_cnn | digits_cnn | mlp | MODULE:FUNCTION returning the nn.Module "
        "(default: fashion_cnn for fashion_mnist and mnist, digits_cnn for digits)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        help="dropout before the first linear layer of the CNNs (default 0; passed as "
        "dropout= to a MODULE:FUNCTION model only when given)",
    )
    p.add_argument("--epochs", type=int, default=25, help="passes over the data (default 25)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=512, help="default 512")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the model initialisation, batch order and dropout (default 0)",
    )
    p.add_argument("--limit", type=int, help="use only the first N training samples (quick runs)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, … (default cpu)")
    add_out(p, required=True, help="run folder to write, e.g. runs/fashion")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a --out that is not empty: an earlier run's files there are replaced, "
        "other files kept (default: refuse such a folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # SUPPRESS as default: `lossmap --debug train` keeps the main parser's value.
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return p


def _load_data(name: str, split: str, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import load

    try:
        return load(name, split, root)
    except FileNotFoundError as exc:
        hint = "" if name == "digits" else "\n(or run with --dataset digits, always available)"
        raise MissingFileError(f"{exc}{hint}") from None
    except ImportError as exc:
        raise InputError(str(exc)) from None
    except ValueError as exc:
        raise InputError(f"--dataset {name}: {exc}") from None


def build_model(
    name: str, dropout: float | None, sample: torch.Tensor, seed: int
) -> tuple[nn.Module, str]:
    """Build the ``--model`` with its initialisation (θ0) drawn from ``seed``.

    The built-in models get ``seed=seed``; a ``MODULE:FUNCTION`` is called
    inside :func:`lossmap.seeding.seeded_rng`, which seeds a fork of torch's
    global RNG. Either way θ0 is a function of ``seed`` (the same as after
    ``torch.manual_seed(seed)``) and the global RNG state is left untouched.

    Parameters
    ----------
    name : str
        A name of :data:`MODELS` or ``MODULE:FUNCTION``.
    dropout : float or None
        For the CNNs (None: 0); for ``MODULE:FUNCTION``, passed as ``dropout=``
        only when not None; not allowed with ``mlp``.
    sample : torch.Tensor
        One input sample, shape (1, ...): sizes the MLP's input layer.
    seed : int
        The initialisation seed.

    Returns
    -------
    (torch.nn.Module, str)
        The model and a short description of how it was built.
    """
    from .. import models

    if name in MODELS:
        if name == "mlp":
            if dropout:
                raise InputError("--dropout applies to the CNNs; --model mlp has no dropout")
            sizes = (sample[0].numel(), *_MLP_HIDDEN, _NUM_CLASSES)
            return models.mlp(sizes, seed=seed), f"mlp{sizes}"
        factory: Callable[..., Any] = getattr(models, name)
        drop = 0.0 if dropout is None else dropout
        if not 0.0 <= drop < 1.0:
            raise InputError(f"--dropout {drop} must lie in [0, 1), e.g. 0.2")
        return factory(dropout=drop, seed=seed), f"{name}(dropout={drop})"
    if ":" not in name:
        raise InputError(
            f"--model {name!r} is not one of {', '.join(MODELS)} nor MODULE:FUNCTION "
            "(e.g. mypkg.nets:make_net or path/to/nets.py:make_net)"
        )
    from .entry import call_loaded, load_entry

    factory = load_entry(name, what="--model")
    kwargs = {} if dropout is None else {"dropout": dropout}
    with seeded_rng(seed):
        model = call_loaded(factory, name, what="--model", **kwargs)
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            f"--model {name!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model, name


def run(args: argparse.Namespace) -> int:
    """Run ``lossmap train`` with parsed ``args``; print the final numbers; return 0.

    Parameters
    ----------
    args : argparse.Namespace
        From the parser :func:`add_parser` made.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    lossmap.errors.LossmapError
        For anything the user can fix (bad values, missing data, bad model).
    """
    from ..train.trainer import train
    from .outputs import check_out_folder

    check_out_folder(args.out)  # before any work: a file there, or a place nothing is written
    X_train, y_train = _load_data(args.dataset, "train", args.data_root)
    X_test, y_test = _load_data(args.dataset, "test", args.data_root)
    n_all = len(X_train)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit {args.limit} must be >= 1 (training samples to use)")
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
    model_name = args.model or DEFAULT_MODELS[args.dataset]
    model, built = build_model(model_name, args.dropout, X_train[:1], args.seed)
    meta = {
        "command": "lossmap train",
        "dataset": args.dataset,
        "model": model_name,
        "dropout": args.dropout,
        "built": built,
        "limit": args.limit,
        "train_available": n_all,
    }
    result = train(
        model,
        (X_train, y_train),
        (X_test, y_test),
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        device=args.device or "cpu",
        meta=meta,
    )
    h = result.history
    used = f"{len(X_train):,}" + (f" of {n_all:,}" if len(X_train) < n_all else "")
    print(
        f"trained {built} on {args.dataset} ({used} train, {len(X_test):,} test samples), "
        f"{args.epochs} epoch(s) in {sum(h['seconds']):.1f} s"
    )
    print(f"final train loss {h['train_loss'][-1]:.4f}  accuracy {h['train_accuracy'][-1]:.2%}")
    print(f"final test  loss {h['test_loss'][-1]:.4f}  accuracy {h['test_accuracy'][-1]:.2%}")
    print(
        f"files in {result.out}: theta0.safetensors, theta_hat.safetensors, "
        f"checkpoints/ ({len(result.checkpoints)} files), history.json, train.json"
    )
    return 0
