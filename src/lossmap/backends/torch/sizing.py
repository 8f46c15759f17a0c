"""The evaluation batch size: fitted so the largest activation of a batch fits in cache."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

DEFAULT_BATCH = 1024
ACTIVATION_TARGET = 8 * 1024**2  # bytes of the largest layer output per batch (CPU)
COMPILED_ACTIVATION_TARGET = 16 * 1024**2  # the same with compile=True
MIN_BATCH, MAX_BATCH = 64, 1024  # on accelerators up to 64x more, within MAX_BATCH * 16
ACTIVATION_CAP = 8  # x the target: the largest activation of a batch at most this, even if
# that takes fewer than MIN_BATCH samples. A language model's logits are 51 MB per GPT-2
# sequence of 256 tokens: 16 sequences per batch took 1.66x the parameter bytes of GPT-2 small,
# and a 4-layer GPT-2 on 8 x 256 tokens took 1.09x the CPU time per point in batches of 8 as of 1.


def auto_batch_size(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    device: torch.device,
    *,
    compiled: bool = False,
    fused: nn.Module | None = None,
) -> int:
    """An evaluation batch whose largest activation fits in cache (CPU) or a memory slice.

    Measured on the example CNN (benchmarks/): batches of 128 ran 1.8x faster
    than 1024 on a 2-core CPU, while an MLP is fastest near 1024. The rule: the
    largest layer output of one batch takes about ``ACTIVATION_TARGET`` bytes.

    ``compiled`` (``compile=True``): element-wise layers fuse into the kernels
    around them and only the outputs of layers with weights (convolutions,
    matrix products) are written, so only those count; ``fused``, the reused
    first layer, is fused with what follows and not counted either. The target
    is then ``COMPILED_ACTIVATION_TARGET``: measured on the example CNN,
    compiled batches of 512 ran 14 % faster than 128, and 1,024 slower.

    The batch is at least ``MIN_BATCH`` samples, unless that many would make
    the largest activation exceed ``ACTIVATION_CAP`` times the target (64 MB on
    the CPU): then the largest power of two under that bound, at least 1. This
    bounds a language model's logits (batch, tokens, vocabulary) per batch,
    and with them the scan's memory peak; models whose largest output per
    sample is under target / ``MIN_BATCH`` × ``ACTIVATION_CAP`` (1 MB on the
    CPU, the MLPs and CNNs of the examples) get the batch they got before.
    """
    biggest = [0]

    def hook(mod, args, out):
        if compiled and (
            mod is fused or not any(True for _ in mod.parameters(recurse=False))
        ):
            return
        if isinstance(out, torch.Tensor):
            biggest[0] = max(biggest[0], out.nbytes // max(out.shape[0], 1) if out.dim() else 0)

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            functional_call(model, dict(state), (X.to(device),))
    except Exception:
        return DEFAULT_BATCH  # the shape check will explain what is wrong
    finally:
        for h in hooks:
            h.remove()
    target = COMPILED_ACTIVATION_TARGET if compiled else ACTIVATION_TARGET
    if device.type != "cpu":
        target *= 64
    return batch_for(biggest[0], target, MAX_BATCH if device.type == "cpu" else 16 * MAX_BATCH)


def batch_for(per_sample: int, target: int, top: int) -> int:
    """The batch for a largest activation of ``per_sample`` bytes (:func:`auto_batch_size`'s rule).

    Parameters
    ----------
    per_sample : int
        Bytes of the largest layer output per sample.
    target : int
        Bytes of that output per batch aimed at.
    top : int
        The largest batch.

    Returns
    -------
    int
        A power of two: ``target // per_sample`` rounded down, at least
        ``MIN_BATCH`` unless that many exceed ``ACTIVATION_CAP × target``
        (then as many as fit, at least 1), at most ``top``.

    Examples
    --------
    >>> batch_for(64 * 1024, 8 * 1024**2, 1024)  # an example CNN's 64 KB: 128 samples
    128
    >>> batch_for(1024**2, 8 * 1024**2, 1024)  # 1 MB: the floor of MIN_BATCH samples
    64
    >>> batch_for(256 * 50257 * 4, 8 * 1024**2, 1024)  # GPT-2 logits of 256 tokens: one sequence
    1
    """
    per_sample = max(per_sample, 1)

    def pow2(n: int) -> int:  # the largest power of two <= n, at least 1
        return 2 ** int(np.log2(max(n, 1)))

    floor = min(MIN_BATCH, pow2(ACTIVATION_CAP * target // per_sample))
    return int(min(top, max(floor, pow2(target // per_sample))))
