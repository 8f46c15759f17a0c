"""Token-exact metrics for language models and other dict-batch models (``lm.metrics``).

A metric is called ``f(outputs, batch)``: ``outputs`` is whatever the model returned (a
tensor, a tuple, a dict or a ``transformers`` ``ModelOutput``) and ``batch`` the dict it was
called with. The losses here return a pair ``(totals, counts)`` of 1-D tensors, one entry
per example: the summed token losses and the number of real tokens. A split's value is
``Σ totals / Σ counts`` over all of its batches, the exact mean over its tokens however
the batches are padded, and the per-example pairs give a standard error by the ratio
estimator. Nothing here imports ``transformers``.

>>> import torch
>>> from lossmap import metrics
>>> logits = torch.zeros(2, 4, 5)  # (B, T, V): uniform over 5 tokens
>>> batch = {"labels": torch.tensor([[1, 2, 3, 4], [1, 2, -100, -100]])}
>>> totals, counts = metrics.causal_lm_loss({"logits": logits}, batch)
>>> counts.tolist()  # next-token targets: 3 in the first row, 1 in the padded one
[3.0, 1.0]
>>> round(float(totals.sum() / counts.sum()), 4)  # ln 5
1.6094
"""


from .classification import classification_accuracy, classification_loss
from .model import model_loss
from .outputs import IGNORE_INDEX, logits_of
from .perplexities import TOKEN_LOSSES, is_token_loss, perplexity, perplexity_name
from .tokens import (
    causal_lm_loss,
    masked_lm_loss,
    masked_token_accuracy,
    sequence_accuracy,
    token_accuracy,
)

__all__ = [
    "IGNORE_INDEX",
    "TOKEN_LOSSES",
    "causal_lm_loss",
    "classification_accuracy",
    "classification_loss",
    "is_token_loss",
    "logits_of",
    "masked_lm_loss",
    "masked_token_accuracy",
    "model_loss",
    "perplexity",
    "perplexity_name",
    "sequence_accuracy",
    "token_accuracy",
]
