"""Perplexity, and the rule for where a report shows it: beside a token loss."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: The losses whose value is a mean per token: a report shows their perplexity beside them.
TOKEN_LOSSES = frozenset({"causal_lm_loss", "masked_lm_loss", "model_loss"})


def perplexity(loss: Any) -> Any:
    """``exp(loss)``: the perplexity of a mean token cross-entropy (nats).

    Parameters
    ----------
    loss : float, ndarray or Tensor
        Mean token loss(es); NaN (a point not computed) stays NaN.

    Returns
    -------
    float, ndarray or Tensor
        Same kind as ``loss``.

    Examples
    --------
    >>> from lossmap.metrics import perplexity
    >>> round(perplexity(2.0794415), 3)  # uniform over 8 tokens
    8.0
    """
    if isinstance(loss, torch.Tensor):
        return torch.exp(loss)
    if isinstance(loss, np.ndarray):
        return np.exp(loss)
    return math.exp(loss) if loss < 709.0 else math.inf


def is_token_loss(fn: Callable | str) -> bool:
    """Whether a loss or metric (or its name) is a mean per token, so perplexity applies.

    The rule for reports and ``Surface``: beside a variable whose metric
    ``is_token_loss``, show ``perplexity(value)`` named :func:`~lossmap.metrics.perplexity_name`.
    A function of your own opts in with ``fn.token_loss = True``.

    Parameters
    ----------
    fn : callable or str
        The metric (a ``functools.partial`` is unwrapped) or its name.

    Returns
    -------
    bool

    Examples
    --------
    >>> from lossmap import metrics
    >>> metrics.is_token_loss(metrics.causal_lm_loss), metrics.is_token_loss("accuracy")
    (True, False)
    """
    if isinstance(fn, str):
        return fn in TOKEN_LOSSES
    while isinstance(fn, functools.partial):
        fn = fn.func
    return bool(getattr(fn, "token_loss", False)) or getattr(fn, "__name__", None) in TOKEN_LOSSES


def perplexity_name(variable: str) -> str:
    """The name of the perplexity shown beside a token-loss variable.

    Parameters
    ----------
    variable : str
        A surface variable, ``"<split>_<metric>"``.

    Returns
    -------
    str
        ``"<split>_perplexity"`` for ``"<split>_loss"``, else ``variable + "_perplexity"``.

    Examples
    --------
    >>> from lossmap.metrics import perplexity_name
    >>> perplexity_name("train_loss"), perplexity_name("val_mlm")
    ('train_perplexity', 'val_mlm_perplexity')
    """
    if variable.endswith("_loss"):
        return variable[: -len("loss")] + "perplexity"
    return variable + "_perplexity"
